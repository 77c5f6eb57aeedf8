"""Reading built packages back the way a package manager sees them: python-debian for .deb,
rpmfile for .rpm."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import rpmfile
from debian.debfile import DebFile


@dataclass(frozen=True)
class DebInfo:
    control: dict[str, str]
    scripts: dict[str, str]
    files: dict[str, bytes]  # path without the leading ./ -> contents, regular files only


def read_deb(path: Path) -> DebInfo:
    deb = DebFile(str(path))
    try:
        control = dict(deb.debcontrol())
        scripts = {
            name: str(deb.control.get_content(name, encoding="utf-8"))
            for name in ("preinst", "postinst", "prerm", "postrm")
            if deb.control.has_file(name)
        }
        tar = deb.data.tgz()
        files = {}
        for member in tar.getmembers():
            if member.isfile():
                extracted = tar.extractfile(member)
                assert extracted is not None
                files[member.name.removeprefix("./")] = extracted.read()
    finally:
        deb.close()
    return DebInfo(control, scripts, files)


def _list(value: object) -> list[object]:
    # rpmfile gives a one-element tag as a scalar, several as a list.
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# RPMSENSE_* comparison bits of the *flags tags.
_LESS, _GREATER, _EQUAL = 0x02, 0x04, 0x08


def _relations(headers: dict[str, object], kind: str) -> list[str]:
    names = _list(headers.get(f"{kind}name", headers.get(f"{kind}s")))
    flags = _list(headers.get(f"{kind}flags"))
    versions = _list(headers.get(f"{kind}version"))
    out = []
    for i, name in enumerate(names):
        flag = int(flags[i]) if i < len(flags) else 0  # type: ignore[call-overload]
        op = ""
        if flag & _LESS:
            op += "<"
        if flag & _GREATER:
            op += ">"
        if flag & _EQUAL:
            op += "="
        text = _text(name)
        if op and i < len(versions) and _text(versions[i]):
            text += f" {op} {_text(versions[i])}"
        out.append(text)
    return out


@dataclass(frozen=True)
class RpmInfo:
    headers: dict[str, object]
    requires: list[str]
    provides: list[str]
    conflicts: list[str]
    obsoletes: list[str]
    files: dict[str, bytes]

    def tag(self, name: str) -> str:
        return _text(self.headers[name])


def read_rpm(path: Path) -> RpmInfo:
    with rpmfile.open(str(path)) as rpm:
        headers = {k: v for k, v in rpm.headers.items() if isinstance(k, str)}
        files = {}
        for member in rpm.getmembers():
            extracted = rpm.extractfile(member)
            files[member.name.removeprefix(".")] = extracted.read()
    return RpmInfo(
        headers,
        requires=[r for r in _relations(headers, "require") if not r.startswith("rpmlib(")],
        provides=_relations(headers, "provide"),
        conflicts=_relations(headers, "conflict"),
        obsoletes=_relations(headers, "obsolete"),
        files=files,
    )
