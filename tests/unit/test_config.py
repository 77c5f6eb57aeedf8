"""The create configuration (ksplice_pkg.config): options checked against each other before
anything is read, the patch loaded from whichever input was given, the id and description."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksplice_pkg.config import Mode, create_config, work_dir_for
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.manifest import ID_RE
from ksplice_pkg.target.files import TargetFiles, TargetSpec
from tests.unit.tools import small_tree

PATCH = "--- a/kernel/b.c\n+++ b/kernel/b.c\n@@ -3 +3 @@\n-\treturn 2;\n+\treturn 3;\n"


@pytest.fixture
def target(tmp_path: Path) -> TargetFiles:
    files = tmp_path / "target"
    files.mkdir()
    for name in ("System.map", ".config", "Module.symvers"):
        (files / name).write_text("")
    return TargetSpec(files, release="6.1.0-56-cloud-amd64").resolve()


def test_patch_text_makes_an_update_config(tmp_path: Path, target: TargetFiles) -> None:
    source = small_tree(tmp_path / "src")
    cfg = create_config(source, target, cache=tmp_path / "cache", patch=PATCH, jobs=3)
    assert cfg.mode is Mode.UPDATE
    assert cfg.patch == PATCH
    assert ID_RE.fullmatch(cfg.id)
    assert cfg.jobs == 3
    # A bare diff has no subject line: the description names the release.
    assert "6.1.0-56-cloud-amd64" in cfg.description
    assert cfg.work_dir == work_dir_for(tmp_path / "cache", source)


def test_mail_subject_is_the_description(tmp_path: Path, target: TargetFiles) -> None:
    source = small_tree(tmp_path / "src")
    mail = "Subject: proc: show the ksplice prefix\n\n" + PATCH
    patch_file = tmp_path / "fix.patch"
    patch_file.write_text(mail)
    cfg = create_config(source, target, cache=tmp_path, patch_file=patch_file, update_id="fix1")
    assert (cfg.description, cfg.id, cfg.patch) == ("proc: show the ksplice prefix", "fix1", mail)


def test_prebuild_needs_no_patch(tmp_path: Path, target: TargetFiles) -> None:
    cfg = create_config(small_tree(tmp_path / "src"), target, cache=tmp_path, prebuild=True)
    assert (cfg.mode, cfg.patch) == (Mode.PREBUILD, "")


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
        create_config(small_tree(tmp_path / "src"), missing, cache=tmp_path, **options)  # type: ignore[arg-type]
    assert all(name in e.value.message for name in names), e.value.message
