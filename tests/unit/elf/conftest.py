"""The objects the ELF tests read and write: built by gcc here, from C written in the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.tools import compile_c

# A little of everything a kernel object holds: weak, common, static and static-local symbols,
# strings in mergeable sections, a jump table (R_X86_64_64 into text), function pointers in
# rodata, a pointer into the middle of an array, a .cold part, an __init function.
RICH_SOURCE = r"""
extern int printk(const char *fmt, ...);
extern int exported_counter;
struct ops { int (*fn)(int); const char *name; };
static int calls;
int shared_table[4] = {1, 2, 3, 4};
int zeroed[16];
int *middle = &shared_table[2];
int common_var __attribute__((common));
__attribute__((weak)) int hook(int x) { return x + 1; }
static int helper(int x) { return x * 3 + calls++; }
static int square(int x) { return x * x; }
const struct ops ops_table[] = { { square, "square" }, { hook, "hook" } };
int dispatch(int i, int x) { return ops_table[i].fn(x); }
int classify(int x)
{
	switch (x) {
	case 0: return printk("zero\n");
	case 1: return printk("one %d\n", x);
	case 2: return hook(x);
	case 3: return square(x) + 5;
	case 4: return printk("four\n") + 4;
	case 5: return printk("five\n") * 5;
	case 6: return helper(x);
	default: return -1;
	}
}
int log_it(int x)
{
	static int seen;
	printk("log_it %d %d\n", x, ++seen);
	return helper(x) + exported_counter;
}
__attribute__((cold, noinline)) void report(int x) { printk("cold %d\n", x); }
int maybe(int x)
{
	if (__builtin_expect(x < 0, 0)) {
		report(x);
		printk("neg %d\n", x);
	}
	return x;
}
__attribute__((section(".init.text"))) int setup(void) { return log_it(1); }
"""


@pytest.fixture(params=["plain", "debug"])
def rich_object(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The rich source compiled without and with debug info (.rela.debug_* sections)."""
    extra = ("-g",) if request.param == "debug" else ()
    return compile_c(tmp_path, RICH_SOURCE, "rich", extra)


@pytest.fixture
def plain_rich_object(tmp_path: Path) -> Path:
    """The rich source compiled without debug info."""
    return compile_c(tmp_path, RICH_SOURCE, "rich")
