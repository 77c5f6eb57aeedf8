"""Run-pre against a module's .ko, on objects gcc builds here from C.

The "pre object" is compiled as create compiles it (one section per function, KERNEL_CFLAGS);
the ".ko" is the same source compiled as a distro module is, without -ffunction-sections, so
calls between its functions are resolved by the assembler inside one .text: the shapes
run-pre must compare and read evidence from.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ksplice_pkg.elf.model import ElfObject
from ksplice_pkg.elf.reader import read_object
from ksplice_pkg.errors import RunPreMismatchError
from ksplice_pkg.runpre.evidence import ModuleEvidence, pre_function
from ksplice_pkg.runpre.ko import verify_in_module
from ksplice_pkg.target.modules import ModuleBinary
from tests.unit.tools import compile_object

SOURCE = """
extern int printk(const char *fmt, ...);
static int counter;
int shared_total;

static __attribute__((noinline)) int helper(int x)
{
    counter += x;
    return counter * 3;
}

int entry(int x)
{
    shared_total += helper(x);
    printk("entry %d\\n", x);
    return shared_total;
}
"""


def _ko(tmp_path: Path, source: str = SOURCE, extra: tuple[str, ...] = ()) -> ModuleBinary:
    return ModuleBinary("mymod", compile_object(tmp_path, "ko", source, False, list(extra)))


def _pre(tmp_path: Path, source: str = SOURCE) -> ModuleEvidence:
    ko = _ko(tmp_path)
    pre = read_object(compile_object(tmp_path, "pre", source, True, []))
    return ModuleEvidence("mymod/t.o", pre, ko)


def test_pre_code_matches_the_ko_and_evidence_names_module_symbols(tmp_path: Path) -> None:
    evidence = _pre(tmp_path)
    match = evidence.verify("entry")
    assert match.sympos == 0
    ko = evidence.ko
    seen = {
        ko.obj.symbols[match.references[r.offset]].name
        for r in pre_function(evidence.pre, "entry").relocs
        if r.offset in match.references
    }
    assert {"helper", "shared_total", "printk"} <= seen, seen
    # The call to helper is resolved inside the .ko's .text (no relocation there): its
    # displacement still names helper. shared_total and printk come from the .ko's relocations.
    for name in ("helper", "shared_total", "printk"):
        index = evidence.lookup(name)
        assert index is not None, name
        assert ko.obj.symbols[index].name == name
    printk = evidence.lookup("printk")
    assert printk is not None and ko.obj.symbols[printk].shndx == 0  # undefined: external
    # counter is referenced only by helper: found by verifying helper on demand.
    counter = evidence.lookup("counter")
    assert counter is not None and ko.obj.symbols[counter].name == "counter"


def test_changed_code_is_a_mismatch_naming_module_and_function(tmp_path: Path) -> None:
    ko = _ko(tmp_path, SOURCE.replace("counter * 3", "counter * 5"))
    pre = read_object(compile_object(tmp_path, "pre", SOURCE, True, []))
    with pytest.raises(RunPreMismatchError) as e:
        verify_in_module(ko, pre_function(pre, "helper"))
    assert "mymod" in e.value.message and "helper" in e.value.message


def test_function_missing_from_the_ko_is_a_mismatch(tmp_path: Path) -> None:
    ko = _ko(tmp_path, SOURCE.replace("int entry(", "int other_entry("))
    pre = read_object(compile_object(tmp_path, "pre", SOURCE, True, []))
    with pytest.raises(RunPreMismatchError) as e:
        verify_in_module(ko, pre_function(pre, "entry"))
    assert "mymod" in e.value.message and "entry" in e.value.message


# The shapes the stable upload's refusals showed in ch.ko, st.ko, hv_vmbus.ko and kvm-intel.ko:
# a loop's end pointer one past an array (`cmp $lun+16`, which is where the next variable starts
# in the .ko's one .bss), and a test of a one-byte flag with an immediate (`cmpb $0, flag(%rip)`,
# whose addend is off by 5, not 4, so it reads as the flag before it).
ADJACENT = """
extern void use(int);
static int debug;
static int lun[4];
static _Bool second_flag;
static _Bool first_flag;

void walk(void)
{
    for (int *p = lun; p < lun + 4; p++)
        use(*p + debug);
}

void set_flags(int a, int b)
{
    first_flag = a;
    second_flag = b;
    lun[a & 3] = b;
    debug = a;
}

int flagged(void)
{
    if (second_flag)
        use(7);
    if (first_flag)
        use(3);
    return 1;
}
"""
NO_SSE = ("-mno-sse", "-mno-mmx", "-mno-sse2")  # as the kernel: no vectorised loop


def _adjacent(tmp_path: Path, ko_source: str) -> tuple[ModuleBinary, ElfObject]:
    ko = _ko(tmp_path, ko_source, NO_SSE)
    pre = read_object(compile_object(tmp_path, "pre", ADJACENT, True, list(NO_SSE)))
    return ko, pre


@pytest.mark.parametrize("function", ["walk", "flagged"])
def test_a_reference_past_a_symbol_is_the_same_place_not_the_next_symbol(
    tmp_path: Path, function: str
) -> None:
    ko, pre = _adjacent(tmp_path, ADJACENT)
    fn = pre_function(pre, function)
    match = verify_in_module(ko, fn)
    named = {r.symbol for r in fn.relocs if r.symbol} - {"__fentry__", "use"}
    assert named, "the test needs the pre code to name what it references"
    seen = {ko.obj.symbols[i].name for i in match.references.values()}
    assert named <= seen, (named, seen)


def test_a_reference_to_the_neighbouring_flag_is_still_a_mismatch(tmp_path: Path) -> None:
    # The same bytes testing the other flag: the place check must not accept a neighbour.
    swapped = ADJACENT.replace("if (second_flag)", "if (FIRST)").replace(
        "if (first_flag)", "if (second_flag)"
    )
    ko, pre = _adjacent(tmp_path, swapped.replace("if (FIRST)", "if (first_flag)"))
    with pytest.raises(RunPreMismatchError) as e:
        verify_in_module(ko, pre_function(pre, "flagged"))
    assert "not to" in e.value.message
