"""The target kernel's Module.symvers: every exported symbol with its CRC, owner and namespace.

Format (Linux 5.9+): `0x<crc>\t<name>\t<module or vmlinux>\t<EXPORT_SYMBOL[_GPL]>\t<namespace>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.target.files import read_text_input

_LINE = re.compile(
    r"0x(?P<crc>[0-9a-fA-F]{1,8})\t(?P<name>[^\t\s]+)\t(?P<module>[^\t\s]+)"
    r"\t(?P<export>EXPORT_SYMBOL(?:_GPL)?)(?:\t(?P<namespace>[^\t\s]*))?"
)


@dataclass(frozen=True)
class Export:
    crc: int
    name: str
    module: str  # "vmlinux" or the module's path without .ko, e.g. drivers/net/virtio_net
    gpl: bool
    namespace: str  # "" when not exported into a namespace


@dataclass(frozen=True)
class Symvers:
    path: Path
    exports: tuple[Export, ...]

    @classmethod
    def load(cls, path: Path) -> Symvers:
        hint = (
            "give the Module.symvers of the target kernel (Debian: the "
            "linux-headers-<release> package, /usr/src/linux-headers-<release>/Module.symvers)"
        )
        text = read_text_input(path, "a Module.symvers", hint)
        exports = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            m = _LINE.fullmatch(line.rstrip("\r"))
            if m is None:
                raise KspliceError(
                    f"{path}:{lineno}: not a Module.symvers line: {line[:80]!r}", hint=hint
                )
            exports.append(
                Export(
                    crc=int(m["crc"], 16),
                    name=m["name"],
                    module=m["module"],
                    gpl=m["export"].endswith("_GPL"),
                    namespace=m["namespace"] or "",
                )
            )
        if not any(e.module == "vmlinux" for e in exports):
            raise KspliceError(f"{path} lists no symbol that vmlinux exports", hint=hint)
        return cls(path, tuple(exports))

    def vmlinux_exports(self) -> dict[str, Export]:
        return {e.name: e for e in self.exports if e.module == "vmlinux"}
