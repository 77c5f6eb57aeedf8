"""Hostile updates: an update tarball can come from anyone, so nothing it holds may reach
rpmbuild, rpm or dpkg as anything but data.

Each hostile text is put through the real tools: rpmbuild parses the generated spec (a `%(...)` or
Lua payload there would create the marker file), then `rpm -qp` and `dpkg-deb` read back what a
package manager would see. Manifests are built directly, not read from a tarball, so that these
tests do not depend on what the tarball reader already refuses.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import pytest
from click.testing import CliRunner

from ksplice_pkg.cli import main
from ksplice_pkg.errors import CommandError
from ksplice_pkg.manifest import PatchedEntry
from ksplice_pkg.package import PackageFormat, build_packages
from ksplice_pkg.package.contents import UpdateContents, UpdateFile
from ksplice_pkg.package.deb import build_deb, control
from ksplice_pkg.package.naming import Flavour, PackagePlan, PackagingError, plan
from ksplice_pkg.package.rpm import build_rpm, spec
from ksplice_pkg.run import run as real_run
from tests.unit.package.conftest import (
    EPOCH,
    MAINTAINER,
    RELEASE,
    MakeUpdate,
    build,
    manifest_for,
)

UPDATES = f"/usr/lib/ksplice-pkg/updates/{RELEASE}"
SHIPPED = ["description", "ksplice_fix1.ko", "manifest.json", "patch"]


def _update(
    module: bytes,
    /,
    update_id: str = "fix1",
    extra: tuple[UpdateFile, ...] = (),
    leave_out: tuple[str, ...] = (),
    **changes: object,
) -> UpdateContents:
    manifest = replace(manifest_for(update_id, module), **changes)  # type: ignore[arg-type]
    files = [
        UpdateFile(manifest.module, module, 0o644),
        UpdateFile("manifest.json", manifest.to_json().encode(), 0o644),
        UpdateFile("description", b"whatever the tarball says\n", 0o644),
        UpdateFile("patch", b"--- a/x\n+++ b/x\n", 0o644),
        *extra,
    ]
    kept = sorted((f for f in files if f.path not in leave_out), key=lambda f: f.path)
    return UpdateContents(manifest, tuple(kept), Path(f"ksplice-{update_id}.tar.gz"))


def _rpm(update: UpdateContents, out: Path, maintainer: str = MAINTAINER) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    return build_rpm(update, out, EPOCH, maintainer)


def _deb(update: UpdateContents, out: Path, maintainer: str = MAINTAINER) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    return build_deb(update, out, EPOCH, maintainer)


BUILDERS: dict[str, Callable[[UpdateContents, Path], Path]] = {"rpm": _rpm, "deb": _deb}


def _rpm_query(rpm: Path, *args: str) -> str:
    return subprocess.run(
        ["rpm", "-qp", *args, rpm], capture_output=True, text=True, check=True
    ).stdout


# How `rpm -q --scripts --triggers --filetriggers` introduces each script: "postinstall
# scriptlet (using /bin/sh):", "triggerin scriptlet (using /bin/sh) -- bash", ...
_SCRIPT_HEADER = re.compile(r"^\S+ (scriptlet|program) \(using .*\)", re.MULTILINE)
# Every script tag rpm knows, also those that --scripts leaves out in some versions.
_OTHER_SCRIPT_TAGS = ("PREIN", "POSTUN", "PRETRANS", "POSTTRANS", "VERIFYSCRIPT")


def assert_only_our_scriptlets(rpm: Path) -> None:
    scripts = _rpm_query(rpm, "--scripts", "--triggers", "--filetriggers")
    assert [m.group(0) for m in _SCRIPT_HEADER.finditer(scripts)] == [
        "postinstall scriptlet (using /bin/sh)",
        "preuninstall scriptlet (using /bin/sh)",
    ], scripts
    assert "ksplice-pkg apply fix1" in scripts and "ksplice-pkg undo fix1" in scripts
    others = _rpm_query(rpm, "--qf", "|".join(f"%{{{t}}}" for t in _OTHER_SCRIPT_TAGS))
    assert others == "|".join(["(none)"] * len(_OTHER_SCRIPT_TAGS))


def assert_only_shipped_files_rpm(rpm: Path) -> None:
    files = _rpm_query(rpm, "--qf", "[%{FILENAMES}\n]").splitlines()
    assert files == [UPDATES, f"{UPDATES}/fix1", *(f"{UPDATES}/fix1/{n}" for n in SHIPPED)]


def assert_only_shipped_files_deb(deb: Path) -> None:
    listing = subprocess.run(
        ["dpkg-deb", "--fsys-tarfile", deb], capture_output=True, check=True
    ).stdout
    names = subprocess.run(
        ["tar", "-tf", "-"], input=listing, capture_output=True, check=True
    ).stdout.decode()
    shipped = [n for n in names.splitlines() if n.startswith(f".{UPDATES}/fix1/")]
    assert shipped == [f".{UPDATES}/fix1/"] + [f".{UPDATES}/fix1/{n}" for n in SHIPPED]


def _deb_control_members(deb: Path) -> list[str]:
    tar = subprocess.run(["dpkg-deb", "--ctrl-tarfile", deb], capture_output=True, check=True)
    names = subprocess.run(["tar", "-tf", "-"], input=tar.stdout, capture_output=True, check=True)
    return sorted(n.removeprefix("./") for n in names.stdout.decode().split() if n != "./")


def _deb_field_names(deb: Path) -> list[str]:
    fields = subprocess.run(["dpkg-deb", "-f", deb], capture_output=True, text=True, check=True)
    return [line.split(":", 1)[0] for line in fields.stdout.splitlines() if line[:1] != " "]


DEB_FIELDS = [
    "Package",
    "Version",
    "Architecture",
    "Maintainer",
    "Installed-Size",
    "Depends",
    "Provides",
    "Section",
    "Priority",
    "Description",
]

# One line of printable text each, as the manifest allows a description to be; `{marker}` is a
# file that a payload run by rpmbuild would create. Line-start payloads come first: rpm
# recognises sections after expanding %% (so `%%pre` starts one), case-insensitively, and
# conditionals and %include even after leading blanks.
HOSTILE_DESCRIPTIONS = [
    "%(touch {marker})",
    '%{{lua:os.execute("touch {marker}")}}',
    "%[1+1] %[%(touch {marker})]",
    "%{{expand:%%(touch {marker})}}",
    "%{{shrink:%(touch {marker})}}",
    "%{{quote:%(touch {marker})}}",
    "%pre",
    "%%pre",
    "%PRE",
    " %pre",
    "%pretrans -p <lua>",
    "%posttrans",
    "%preuntrans",
    "%postuntrans",
    "%triggerin -- bash",
    "%triggerun -- bash",
    "%filetriggerin -- /usr",
    "%transfiletriggerin -- /",
    "%verifyscript",
    "%package -n evil",
    "%files",
    "%changelog",
    "%description -n other",
    "%install",
    "%global payload %(touch {marker})",
    "%define payload 1",
    "%if 0",
    "%endif",
    "%else",
    "%include /etc/passwd",
    "%{{include:/etc/passwd}}",
    "# not a comment",
    "ends in a backslash \\",
    "braces %{{ and %( unclosed",
    "100% literal, 50%% too, %%%%",
    "Ünïcødé ✓ 修正 — “quoted” \N{GREEK SMALL LETTER ALPHA}",
]


@pytest.mark.parametrize("template", HOSTILE_DESCRIPTIONS)
def test_hostile_description_stays_literal_text(
    module_ko: bytes, tmp_path: Path, template: str
) -> None:
    marker = tmp_path / "marker"
    text = template.format(marker=marker)
    update = _update(module_ko, description=text)
    rpm = BUILDERS["rpm"](update, tmp_path / "rpm")
    deb = BUILDERS["deb"](update, tmp_path / "deb")
    assert not marker.exists()
    assert_only_our_scriptlets(rpm)
    assert_only_shipped_files_rpm(rpm)
    expected = f"Update fix1: {text.strip()}\n\nPatched functions: cmdline_proc_show."
    assert _rpm_query(rpm, "--qf", "%{DESCRIPTION}") == expected
    summary = f"Live kernel update fix1 for Linux {RELEASE}"
    assert _rpm_query(rpm, "--qf", "%{SUMMARY}\n%{PACKAGER}\n") == f"{summary}\n{MAINTAINER}\n"
    changelog = _rpm_query(rpm, "--changelog")
    assert changelog.splitlines()[1:] == [f"- {summary} ({RELEASE})", ""]

    description = subprocess.run(
        ["dpkg-deb", "-f", deb, "Description"], capture_output=True, text=True, check=True
    ).stdout
    deb_lines = [f" {line}" if line else " ." for line in expected.split("\n")]
    assert description == "\n".join([summary, *deb_lines]) + "\n"
    assert _deb_field_names(deb) == DEB_FIELDS
    assert _deb_control_members(deb) == ["control", "md5sums", "postinst", "prerm"]
    assert_only_shipped_files_deb(deb)


# Tarball members that are not the manifest's four files: once they were the %files list.
HOSTILE_MEMBERS = [
    "%(touch {marker})",
    '%{{lua:os.execute("touch {marker}")}}',
    "%[1+1]",
    "%include /etc/passwd",
    "%{{expand:%%(touch {marker})}}",
    "sub/%(touch {marker})",
    "ksplice_other.ko",
    "extra",
]


@pytest.mark.parametrize("fmt", sorted(BUILDERS))
def test_only_the_files_the_manifest_names_are_shipped(
    module_ko: bytes, tmp_path: Path, fmt: str
) -> None:
    marker = tmp_path / "marker"
    extra = tuple(UpdateFile(t.format(marker=marker), b"x", 0o644) for t in HOSTILE_MEMBERS)
    package = BUILDERS[fmt](_update(module_ko, extra=extra), tmp_path / "out")
    assert not marker.exists()
    if fmt == "rpm":
        assert_only_shipped_files_rpm(package)
        assert_only_our_scriptlets(package)
    else:
        assert_only_shipped_files_deb(package)


@pytest.mark.parametrize("fmt", sorted(BUILDERS))
@pytest.mark.parametrize("missing", ["description", "patch", "ksplice_fix1.ko", "manifest.json"])
def test_an_update_without_one_of_its_files_is_refused(
    module_ko: bytes, tmp_path: Path, fmt: str, missing: str
) -> None:
    with pytest.raises(PackagingError, match=re.escape(missing)):
        BUILDERS[fmt](_update(module_ko, leave_out=(missing,)), tmp_path / "out")
    assert not any((tmp_path / "out").iterdir())


INJECTION = "\n%pre\ntouch /tmp/pwned\n"

# Manifest values that no valid manifest holds: each is refused, naming what is wrong.
REFUSED = [
    pytest.param({"description": f"Fix{INJECTION}"}, "description", id="description-newline"),
    pytest.param({"description": "Fix\r%pre"}, "description", id="description-cr"),
    pytest.param({"description": "Fix\x00"}, "description", id="description-nul"),
    pytest.param({"description": "Fix\tthis"}, "description", id="description-tab"),
    pytest.param({"description": "\x1b[2J"}, "description", id="description-escape"),
    pytest.param({"description": "a\u2028%pre"}, "description", id="description-u2028"),
    pytest.param({"description": "a\x85%pre"}, "description", id="description-nel"),
    pytest.param({"description": "x" * 1001}, "description", id="description-long"),
    pytest.param({"kernel_release": f"6.1{INJECTION}"}, "kernel release", id="release-newline"),
    pytest.param({"kernel_release": "6.1 %(id)"}, "kernel release", id="release-macro"),
    pytest.param({"kernel_release": "-6.1"}, "kernel release", id="release-dash"),
    pytest.param({"kernel_release": "6" * 65}, "kernel release", id="release-long"),
    pytest.param({"module": "evil.ko"}, "module", id="module-other"),
    pytest.param({"module": f"ksplice_fix1.ko{INJECTION}"}, "module", id="module-newline"),
    pytest.param({"module_name": "ksplice_fix1;reboot"}, "module", id="module-name-shell"),
    pytest.param(
        {"patched": [PatchedEntry("vmlinux", f"f{INJECTION}", 0)]}, "function", id="fn-newline"
    ),
    pytest.param({"patched": [PatchedEntry("vmlinux", "f%(id)", 0)]}, "function", id="fn-macro"),
    pytest.param({"patched": [PatchedEntry("vmlinux", "1f", 0)]}, "function", id="fn-digit"),
    pytest.param(
        {"patched": [PatchedEntry(f"vmlinux{INJECTION}", "f", 0)]}, "object", id="object-newline"
    ),
    pytest.param({"patched": [PatchedEntry("ext4 fs", "f", 0)]}, "object", id="object-space"),
    pytest.param({"depends_on": [f"base{INJECTION}"]}, "depends_on", id="depends-newline"),
    pytest.param({"depends_on": ["Base"]}, "depends_on", id="depends-case"),
    pytest.param({"created": "٢٠٢٦-11-20T10:11:12Z"}, "created", id="created-digits"),
]


@pytest.mark.parametrize("fmt", sorted(BUILDERS))
@pytest.mark.parametrize(("changes", "named"), REFUSED)
def test_values_no_manifest_may_hold_are_refused(
    module_ko: bytes, tmp_path: Path, fmt: str, changes: dict[str, object], named: str
) -> None:
    with pytest.raises(PackagingError, match=named):
        BUILDERS[fmt](_update(module_ko, **changes), tmp_path / "out")  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", sorted(BUILDERS))
@pytest.mark.parametrize("update_id", [f"fix1{INJECTION}", "Fix1", "fix-1", "a" * 33])
def test_an_invalid_id_is_refused(
    module_ko: bytes, tmp_path: Path, fmt: str, update_id: str
) -> None:
    with pytest.raises(PackagingError, match="id"):
        BUILDERS[fmt](_update(module_ko, update_id), tmp_path / "out")


# The writers check again what they are given, whatever made it: a line break in a one-line
# value or a text line that rpm would read as a directive never reaches a spec or control file.


def _plan(module: bytes, flavour: Flavour, **change: str) -> PackagePlan:
    return replace(plan(manifest_for("fix1", module), module, flavour, "t"), **change)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        {"summary": f"Summary{INJECTION}"},
        {"description": f"Text{INJECTION}"},
        {"description": "Text\n %include /etc/passwd"},
        {"description": "Text\n# dropped by rpm"},
        {"description": "Text\r%pre"},
        {"name": "name\nRequires: evil"},
        {"version": "1\n%pre"},
    ],
)
def test_the_spec_writer_refuses_what_rpm_would_interpret(
    module_ko: bytes, tmp_path: Path, change: dict[str, str]
) -> None:
    with pytest.raises(PackagingError):
        spec(_plan(module_ko, Flavour.RPM, **change), tmp_path, tmp_path / "f", MAINTAINER, EPOCH)


def test_the_spec_writer_refuses_a_maintainer_on_two_lines(
    module_ko: bytes, tmp_path: Path
) -> None:
    package = _plan(module_ko, Flavour.RPM)
    with pytest.raises(PackagingError, match="Packager"):
        spec(package, tmp_path, tmp_path / "f", f"A <a@example.org>{INJECTION}", EPOCH)


@pytest.mark.parametrize(
    "change",
    [
        {"summary": "Summary\nDepends: evil"},
        {"description": "Text\rDepends: evil"},
        {"description": "Text\x85Depends: evil"},
        {"name": "name\nDepends: evil"},
    ],
)
def test_the_control_writer_refuses_line_breaks(module_ko: bytes, change: dict[str, str]) -> None:
    with pytest.raises(PackagingError):
        control(_plan(module_ko, Flavour.DEB, **change), 1, MAINTAINER)
    with pytest.raises(PackagingError, match="Maintainer"):
        control(_plan(module_ko, Flavour.DEB), 1, "A <a@example.org>\nDepends: evil")


# The maintainer comes from the command line or DEBFULLNAME/DEBEMAIL: one line, `Name <email>`.

BAD_MAINTAINERS = [
    "A <a@example.org>\nDepends: evil",
    "A <a@example.org>\n%pre\ntouch /tmp/pwned",
    "A <a@example.org>\r",
    "A\x00 <a@example.org>",
    "nobody",
    "<a@example.org>",
    "A <a example.org>",
    "A <a@example.org> trailing",
    " A <a@example.org>",
]


@pytest.mark.parametrize("fmt", list(PackageFormat))
@pytest.mark.parametrize("maintainer", BAD_MAINTAINERS)
def test_a_malformed_maintainer_is_refused(
    make_update: MakeUpdate, tmp_path: Path, fmt: PackageFormat, maintainer: str
) -> None:
    out = tmp_path / "out"
    with pytest.raises(PackagingError, match="maintainer"):
        build_packages([make_update("fix1")], fmt, out, maintainer=maintainer)
    assert not out.exists() or not any(out.iterdir())


def test_the_cli_says_how_to_give_a_maintainer(make_update: MakeUpdate, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "package",
            "--format=deb",
            "-o",
            str(tmp_path),
            "--maintainer",
            "A <a@example.org>\nDepends: evil",
            str(make_update("fix1")),
        ],
    )
    assert result.exit_code == 1, result.output
    assert "maintainer" in result.output and "hint:" in result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.glob("*.deb")) == []


def test_an_unusual_maintainer_is_kept_literally(module_ko: bytes, tmp_path: Path) -> None:
    maintainer = "Jörg #1 100% %(id) %{lua:x} Müller-Łukasz <j%x@example.org>"
    update = _update(module_ko)
    rpm = _rpm(update, tmp_path / "rpm", maintainer)
    deb = _deb(update, tmp_path / "deb", maintainer)
    assert _rpm_query(rpm, "--qf", "%{PACKAGER}") == maintainer
    assert maintainer in _rpm_query(rpm, "--changelog").splitlines()[0]
    assert (
        subprocess.run(
            ["dpkg-deb", "-f", deb, "Maintainer"], capture_output=True, text=True, check=True
        ).stdout
        == f"{maintainer}\n"
    )


# A failed run leaves nothing in the output directory: no truncated package under its final
# name, no temporary file, and no package of the run's earlier updates.


def _failing_second_build(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """dpkg-deb or rpmbuild fails on its second run, after writing part of its output."""
    calls = []

    def run(cmd: list[object], **kwargs: object) -> object:
        calls.append(cmd)
        if len(calls) == 2:
            Path(str(cmd[-1])).write_bytes(b"!<arch>\ntruncated")
            raise CommandError(f"`{cmd[0]}` was killed by SIGKILL")
        return real_run(cmd, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(f"ksplice_pkg.package.{module}.run", run)


@pytest.mark.parametrize("fmt", list(PackageFormat))
def test_a_failed_run_leaves_nothing_in_the_output_dir(
    make_update: MakeUpdate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: PackageFormat
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "unrelated").write_text("kept")
    _failing_second_build(monkeypatch, fmt.value)
    with pytest.raises(CommandError):
        build([make_update("fix1"), make_update("fix2")], fmt, out)
    assert sorted(p.name for p in out.iterdir()) == ["unrelated"]


def test_a_failed_run_keeps_the_package_it_would_have_replaced(
    make_update: MakeUpdate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    tarballs = [make_update("fix1"), make_update("fix2")]
    first = build(tarballs, PackageFormat.DEB, out)
    before = {p: p.read_bytes() for p in first}
    _failing_second_build(monkeypatch, "deb")
    with pytest.raises(CommandError):
        build(tarballs, PackageFormat.DEB, out)
    assert {p: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("fmt", list(PackageFormat))
def test_an_output_dir_that_fills_up_is_left_as_it_was(
    make_update: MakeUpdate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: PackageFormat
) -> None:
    """The first package is in place when copying the second one fails half way."""
    copies = []
    real_copy = shutil.copyfileobj

    def copy(src: BinaryIO, dst: BinaryIO, length: int = 0) -> None:
        copies.append(src)
        if len(copies) == 2:
            dst.write(src.read(100))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_copy(src, dst)

    monkeypatch.setattr(shutil, "copyfileobj", copy)
    out = tmp_path / "out"
    with pytest.raises(PackagingError, match="No space left on device"):
        build([make_update("fix1"), make_update("fix2")], fmt, out)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("fmt", list(PackageFormat))
def test_a_successful_run_leaves_only_the_packages(
    make_update: MakeUpdate, tmp_path: Path, fmt: PackageFormat
) -> None:
    out = tmp_path / "out"
    built = build([make_update("fix1"), make_update("fix2")], fmt, out)
    assert sorted(out.iterdir()) == sorted(built)
    assert {p.stat().st_mode & 0o777 for p in built} == {0o644}
