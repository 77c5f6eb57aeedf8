"""The runtime runs as root: an id, a manifest or an update directory chosen by someone else
must never make it delete, write or load anything it chose (the hardening issue's findings 1, 2,
6 and 8, and the low ones of the runtime)."""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from ksplice_pkg.cli import main
from ksplice_pkg.errors import IntegrityError
from ksplice_pkg.manifest import InvalidNameError, ManifestError
from ksplice_pkg.runtime.apply import staged_module
from ksplice_pkg.runtime.bundle import load_installed, open_update
from ksplice_pkg.runtime.errors import NotFoundError
from ksplice_pkg.runtime.install import install
from ksplice_pkg.runtime.lock import locked
from ksplice_pkg.runtime.store import Store, write_json
from ksplice_pkg.runtime.view import format_update
from ksplice_pkg.tarball import read_directory
from tests.unit.runtime.conftest import manifest, update_dir

MODULE = b"\x7fELF module bytes"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A directory of someone else's, with a file, that no command may touch."""
    d = tmp_path / "victim"
    d.mkdir()
    (d / "keep").write_text("precious")
    (tmp_path / "victim.json").write_text("{}")
    return d


def _intact(victim: Path) -> bool:
    return (victim / "keep").read_text() == "precious" and victim.with_suffix(".json").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["undo", "{victim}"],
        ["undo", "../../../{victim}"],
        ["undo", ".."],
        ["undo", "--defer", "{victim}"],
        ["uninstall", "{victim}"],
        ["uninstall", "abc", "--kernel-release", "{victim}/.."],
        ["uninstall", "victim", "--kernel-release", ".."],
        ["view", "../victim"],
    ],
)
def test_an_id_that_is_a_path_touches_nothing(
    store: Store, victim: Path, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stores' directories sit beside the victim: `..` from any of them reaches it.
    monkeypatch.chdir(victim.parent)
    argv = [a.format(victim=victim) for a in args]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == InvalidNameError.exit_code, result.output
    assert "is not" in result.output
    assert _intact(victim)


def test_path_builders_refuse_what_is_not_an_id(store: Store, victim: Path) -> None:
    for bad in (str(victim), "..", "a/b", "", "A", "a" * 33, "x\n"):
        with pytest.raises(InvalidNameError):
            store.applied_dir(bad)
        with pytest.raises(InvalidNameError):
            store.quarantine_file(bad)
        with pytest.raises(InvalidNameError):
            store.installed_dir("6.1.0-1-amd64", bad)
    for release in ("/", "..", "../x", "/etc", "a/b", "-x", ".x", "a b"):
        with pytest.raises(InvalidNameError):
            store.installed_dir(release, "etc")
    assert _intact(victim)


@pytest.mark.parametrize("release", ["/", "/x", "../../x", "..", "x/../..", "a\nb", "%{lua:x}"])
def test_a_manifest_release_that_is_a_path_is_refused(
    tmp_path: Path, store: Store, release: str
) -> None:
    m = manifest("etc", module_data=MODULE, release=release)
    d = update_dir(tmp_path / "src", m, MODULE)
    with pytest.raises(ManifestError, match="kernel release"):
        install(store, open_update(str(d), store, "6.1.0-1-amd64"))
    assert not store.updates_dir.exists()


def test_an_id_never_names_a_planted_directory(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = "6.1.0-1-amd64"
    planted = tmp_path / "world-writable"
    update_dir(planted, manifest("abc", module_data=MODULE, release=release), MODULE).rename(
        planted / "abc"
    )
    monkeypatch.chdir(planted)
    with pytest.raises(NotFoundError, match=r"write \./abc"):
        open_update("abc", store, release)
    # Said as a path, it is one.
    assert open_update("./abc", store, release).manifest.id == "abc"


def test_install_copies_only_the_update_and_never_follows_links(
    tmp_path: Path, store: Store
) -> None:
    secret = tmp_path / "root-only"
    secret.write_text("shadow")
    secret.chmod(0o600)
    m = manifest("abc", module_data=MODULE)
    d = update_dir(tmp_path / "src", m, MODULE)
    (d / "extra").symlink_to(secret)
    (d / "sub").mkdir()
    where = install(store, open_update(str(d), store, m.kernel_release))[1]
    assert sorted(p.name for p in where.iterdir()) == sorted(
        ["manifest.json", m.module, "description", "patch"]
    )
    # The module itself a link to a root-only file: refused, not copied.
    (d / "patch").unlink()
    (d / "patch").symlink_to(secret)
    with pytest.raises(IntegrityError, match="not a plain file"):
        open_update(str(d), store, m.kernel_release)


@pytest.fixture
def umask_000() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_runtime_trees_ignore_the_callers_umask(
    tmp_path: Path, store: Store, umask_000: None
) -> None:
    m = manifest("abc", module_data=MODULE)
    where = install(store, open_update(str(update_dir(tmp_path / "src", m, MODULE)), store, "x"))[1]
    store.record_applied(m, "installed", 1.0)
    write_json(store.guard_file, {})
    with locked(store.lock_file, 1):
        pass
    for path in [store.updates_dir, where.parent, where, store.applied_dir("abc"), store.state_dir]:
        assert path.stat().st_mode & 0o777 == 0o755, path
    for path in [*where.iterdir(), store.guard_file, store.applied_dir("abc") / "record.json"]:
        assert path.stat().st_mode & 0o777 == 0o644, path
    assert store.lock_file.stat().st_mode & 0o777 == 0o600


def test_an_installed_update_others_can_write_is_not_loaded(tmp_path: Path, store: Store) -> None:
    m = manifest("abc", module_data=MODULE)
    where = install(store, open_update(str(update_dir(tmp_path / "src", m, MODULE)), store, "x"))[1]
    assert load_installed(store, m.kernel_release, "abc").manifest == m
    (where / m.module).chmod(0o666)
    with pytest.raises(IntegrityError, match="writable by others"):
        load_installed(store, m.kernel_release, "abc")
    (where / m.module).chmod(0o644)
    where.chmod(0o777)
    with pytest.raises(IntegrityError, match="writable by others"):
        load_installed(store, m.kernel_release, "abc")


def test_the_loaded_module_is_the_checked_one(tmp_path: Path, store: Store) -> None:
    """apply DIR hashes the module and loads the same bytes: a swap of the file in between
    (its directory may be anyone's) changes nothing."""
    m = manifest("abc", module_data=MODULE)
    d = update_dir(tmp_path / "src", m, MODULE)
    bundle = open_update(str(d), store, m.kernel_release)
    (d / m.module).write_bytes(b"\x7fELF evil")
    with staged_module(store, bundle) as staged:
        assert staged.read_bytes() == MODULE
        assert staged.stat().st_mode & 0o777 == 0o600
        assert staged.parent.parent.stat().st_mode & 0o777 == 0o700
    assert list((store.run_dir / "staging").iterdir()) == []


def _tar(tmp_path: Path, directory: Path) -> Path:
    out = tmp_path / "u.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        tar.add(directory, arcname=directory.name)
    return out


def test_view_file_of_a_tampered_module_says_so(tmp_path: Path, store: Store) -> None:
    m = manifest("abc", module_data=MODULE)
    d = update_dir(tmp_path / "src", m, MODULE + b"!")
    for ref in (d, _tar(tmp_path, d)):
        result = CliRunner().invoke(main, ["view", "--file", str(ref)])
        assert result.exit_code == IntegrityError.exit_code, result.output
        assert "sha256" in result.output


def test_view_shows_control_characters_escaped(store: Store) -> None:
    from ksplice_pkg.runtime.view import UpdateState

    state = UpdateState("abc", "failed", reason="\x1b[2J\x07gone\r")
    text = format_update(state)
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text
    assert "\\x1b[2J" in text


def test_an_error_naming_a_hostile_path_is_printed_escaped(store: Store) -> None:
    result = CliRunner().invoke(main, ["apply", "/nonexistent/\x1b]0;owned\x07.tar.gz"])
    assert result.exit_code == NotFoundError.exit_code
    assert "\x1b" not in result.output and "\\x1b" in result.output


def test_read_directory_reads_only_the_updates_own_files(tmp_path: Path) -> None:
    m = manifest("abc", module_data=MODULE)
    d = update_dir(tmp_path, m, MODULE)
    (d / "junk").write_bytes(b"x" * 10)
    update = read_directory(d)
    assert sorted(update.files) == sorted(["manifest.json", m.module, "description", "patch"])


def test_state_listings_skip_names_that_are_not_ids(store: Store) -> None:
    store.record_deferred_undo("abc")
    (store.run_dir / "deferred-undo" / "..json").write_text(json.dumps({"at": 1}))
    (store.run_dir / "deferred-undo" / "a b.json").write_text(json.dumps({"at": 1}))
    assert store.deferred_undos() == ["abc"]
