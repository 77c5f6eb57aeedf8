"""A kernel in miniature for run-pre: two units that each have a static show_stat and a static
counter (same names, different code), and two units with identical copies of one function."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unit.tools import PRINTK, link_vmlinux

UNITS = {
    "a": PRINTK
    + """
static int counter;
static int __attribute__((noinline)) show_stat(int x) { return x * 3 + counter++; }
int a_entry(int x) { printk("a %d\\n", x); return show_stat(x) + 1; }
""",
    "b": """
static int counter;
static int __attribute__((noinline)) show_stat(int x) { return x * 5 - counter--; }
int b_entry(int x) { return show_stat(x) - 1; }
""",
    # The same static inline out of line in two units: byte for byte the same code.
    "c": "static int __attribute__((noinline)) twin(int x) { return x ^ 0x1234; }\n"
    "int c_entry(int x) { return twin(x) + 1; }\n",
    "d": "static int __attribute__((noinline)) twin(int x) { return x ^ 0x1234; }\n"
    "int d_entry(int x) { return twin(x) + 2; }\n",
}


@dataclass(frozen=True)
class Kernel:
    directory: Path
    vmlinux: Path
    system_map: Path

    def unit(self, name: str) -> Path:
        return self.directory / f"{name}.o"

    def addresses(self, name: str) -> list[int]:
        """The addresses of name in `nm -n` order."""
        return [
            int(line.split()[0], 16)
            for line in self.system_map.read_text().splitlines()
            if line.split()[2] == name
        ]


@pytest.fixture(scope="session")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Kernel:
    directory = tmp_path_factory.mktemp("kernel")
    vmlinux, system_map = link_vmlinux(directory, UNITS)
    return Kernel(directory, vmlinux, system_map)
