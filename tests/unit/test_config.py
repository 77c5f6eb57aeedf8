"""The create configuration (ksplice_pkg.config): options checked against each other before
anything is read, then assembled with what the first stage read (the patch from whichever input
was given) into the id and description."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksplice_pkg.config import Mode, create_config, create_options, work_dir_for
from ksplice_pkg.create import gather, gather_prebuild
from ksplice_pkg.errors import InternalError, KspliceError
from ksplice_pkg.manifest import ID_RE
from ksplice_pkg.target.files import TargetFiles, TargetSpec
from tests.unit.tools import small_tree

PATCH = b"--- a/kernel/b.c\n+++ b/kernel/b.c\n@@ -3 +3 @@\n-\treturn 2;\n+\treturn 3;\n"
RELEASE = "6.1.0-56-cloud-amd64"


@pytest.fixture
def target(tmp_path: Path) -> TargetSpec:
    files = tmp_path / "target"
    files.mkdir()
    for name in ("System.map", ".config", "Module.symvers"):
        (files / name).write_text("")
    return TargetSpec(files, release=RELEASE)


def test_patch_bytes_make_an_update_config(tmp_path: Path, target: TargetSpec) -> None:
    source = small_tree(tmp_path / "src")
    options = create_options(source, target, cache=tmp_path / "cache", patch=PATCH, jobs=3)
    assert options.mode is Mode.UPDATE
    cfg = gather(options)
    assert cfg.patch == PATCH
    assert ID_RE.fullmatch(cfg.id)
    assert cfg.jobs == 3
    # A bare diff has no subject line: the description names the release.
    assert RELEASE in cfg.description
    assert cfg.work_dir == work_dir_for(tmp_path / "cache", source)


def test_a_relative_cache_dir_gives_absolute_work_dirs(
    tmp_path: Path, target: TargetSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = small_tree(tmp_path / "src")
    monkeypatch.chdir(tmp_path)
    cfg = gather(create_options(source, target, cache=Path("cache"), patch=PATCH))
    assert cfg.work_dir.is_absolute()
    assert cfg.work_dir == work_dir_for(tmp_path / "cache", source)


def test_config_only_assembles_what_it_is_given(tmp_path: Path) -> None:
    # No file is read: the tree and the target's files are whatever the first stage made.
    options = create_options(
        tmp_path / "no-such-src", TargetSpec(), cache=tmp_path, patch=PATCH, update_id="fix1"
    )
    target = TargetFiles(tmp_path / "map", tmp_path / "config", tmp_path / "symvers", None, RELEASE)
    cfg = create_config(options, tmp_path / "tree", target, (), PATCH)
    assert (cfg.source, cfg.target, cfg.id) == (tmp_path / "tree", target, "fix1")


def test_mail_subject_is_the_description(tmp_path: Path, target: TargetSpec) -> None:
    source = small_tree(tmp_path / "src")
    mail = b"Subject: proc: show the ksplice prefix\n\n" + PATCH
    patch_file = tmp_path / "fix.patch"
    patch_file.write_bytes(mail)
    options = create_options(
        source, target, cache=tmp_path, patch_file=patch_file, update_id="fix1"
    )
    cfg = gather(options)
    assert (cfg.description, cfg.id, cfg.patch) == ("proc: show the ksplice prefix", "fix1", mail)


def test_prebuild_has_no_patch_and_its_own_config(tmp_path: Path, target: TargetSpec) -> None:
    source = small_tree(tmp_path / "src")
    options = create_options(source, target, cache=tmp_path, prebuild=True)
    assert (options.mode, options.patch) == (Mode.PREBUILD, None)
    cfg = gather_prebuild(options)
    assert cfg.work_dir == work_dir_for(tmp_path, source)
    with pytest.raises(InternalError):
        gather(options)


def test_work_dir_is_one_per_source_tree(tmp_path: Path) -> None:
    a, b = small_tree(tmp_path / "a"), small_tree(tmp_path / "b")
    assert work_dir_for(tmp_path, a) == work_dir_for(tmp_path, tmp_path / "." / "a")
    assert work_dir_for(tmp_path, a) != work_dir_for(tmp_path, b)


@pytest.mark.parametrize(
    ("options", "names"),
    [
        pytest.param({}, ["--patch", "--diffext", "--git", "--prebuild"], id="no-input"),
        pytest.param(
            {"patch": PATCH, "prebuild": True}, ["--patch", "--prebuild"], id="two-inputs"
        ),
        pytest.param({"patch": PATCH, "update_id": "Bad-Id"}, ["Bad-Id"], id="bad-id"),
        pytest.param({"patch": PATCH, "jobs": 0}, ["-j"], id="no-jobs"),
    ],
)
def test_bad_options_are_refused_before_the_target_is_read(
    tmp_path: Path, options: dict[str, object], names: list[str]
) -> None:
    # A target whose files do not exist: the option is what is reported, not the target.
    missing = TargetSpec(tmp_path / "no-such-dir")
    with pytest.raises(KspliceError) as e:
        create_options(small_tree(tmp_path / "src"), missing, cache=tmp_path, **options)  # type: ignore[arg-type]
    assert all(name in e.value.message for name in names), e.value.message


def test_cve_ids_reach_the_config_and_others_are_refused(
    tmp_path: Path, target: TargetSpec
) -> None:
    source = small_tree(tmp_path / "src")
    cves = ("CVE-2024-26581", "CVE-2023-4623")
    options = create_options(source, target, cache=tmp_path / "cache", patch=PATCH, cves=cves)
    assert gather(options).cves == cves
    for bad in ("CVE-24-1", "cve-2024-26581", "CVE-2024-26581\n%pre", "../x"):
        with pytest.raises(KspliceError, match="not a CVE id"):
            create_options(source, target, cache=tmp_path / "cache", patch=PATCH, cves=[bad])


def test_sign_key_and_cert_go_together(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ksplice_pkg.cli import main

    key = tmp_path / "key.pem"
    key.write_text("")
    result = CliRunner().invoke(main, ["create", "--prebuild", "--sign-key", str(key), "."])
    assert result.exit_code == 1
    assert "--sign-key and --sign-cert go together" in result.output
