"""Special sections: per-site tables the kernel walks (exception fixups, jump labels, BUG sites,
alternatives, static calls, return thunks, ORC unwind data, ftrace call sites...).

An update carries exactly the entries whose first relocation points into code it includes.
Entry sizes are the target kernel's own: they are read by compiling a probe against the target
tree (sizeof of each entry type), since they change between kernel versions.
"""

from __future__ import annotations

import json
import shutil

from ksplice_pkg.compile.kbuild import PreparedTree
from ksplice_pkg.elf.model import ElfObject
from ksplice_pkg.elf.reader import read_object
from ksplice_pkg.log import logger
from ksplice_pkg.run import run

# Tables whose entries are one fixed-width field per site, whatever the kernel version.
FIXED_SIZES = {
    "__mcount_loc": 8,  # unsigned long address of the fentry call
    ".return_sites": 4,  # s32 PC-relative, objtool
    ".retpoline_sites": 4,
    ".call_sites": 4,
    ".ibt_endbr_seal": 4,
    ".smp_locks": 4,
    ".orc_unwind_ip": 4,
}

# section -> (headers to include, C type of one entry, config guard or "")
_PROBES = {
    "__ex_table": ("linux/uaccess.h", "struct exception_table_entry", ""),
    "__jump_table": ("linux/jump_label.h", "struct jump_entry", "CONFIG_JUMP_LABEL"),
    "__bug_table": ("linux/bug.h", "struct bug_entry", "CONFIG_GENERIC_BUG"),
    ".altinstructions": ("asm/alternative.h", "struct alt_instr", ""),
    ".static_call_sites": (
        "linux/static_call.h",
        "struct static_call_site",
        "CONFIG_HAVE_STATIC_CALL_INLINE",
    ),
    ".parainstructions": ("asm/paravirt_types.h", "struct paravirt_patch_site", "CONFIG_PARAVIRT"),
    ".orc_unwind": ("asm/orc_types.h", "struct orc_entry", "CONFIG_UNWINDER_ORC"),
}

# The ORC tables are parallel arrays: entry i of .orc_unwind belongs to entry i of _ip.
PARALLEL = {".orc_unwind": ".orc_unwind_ip"}

_CACHE = ".ksplice-entry-sizes.json"


def entry_sizes(tree: PreparedTree, jobs: int) -> dict[str, int]:
    """Entry size of every special section this target kernel has, probed once per tree."""
    cache = tree.objdir / _CACHE
    if cache.is_file():
        cached: dict[str, int] = json.loads(cache.read_text())
        return cached
    probe = tree.objdir / ".ksplice-probe"
    shutil.rmtree(probe, ignore_errors=True)
    probe.mkdir()
    names: dict[str, str] = {}
    for i, (section, (headers, ctype, guard)) in enumerate(_PROBES.items()):
        name = f"probe{i}"
        names[name] = section
        includes = "".join(f"#include <{h}>\n" for h in headers.split())
        body = f"const unsigned long ksplice_entry_size = sizeof({ctype});\n"
        if guard:
            body = f"#ifdef {guard}\n{body}#endif\n"
        (probe / f"{name}.c").write_text(f"#include <linux/module.h>\n{includes}{body}")
    (probe / "Kbuild").write_text(f"obj-m := {' '.join(n + '.o' for n in names)}\n")
    # -k: a type this kernel lacks fails its own probe only.
    run(
        [*tree.make_args(jobs), "-k", f"M={probe}", *(f"{n}.o" for n in names)],
        check=False,
    )
    sizes = dict(FIXED_SIZES)
    for name, section in names.items():
        obj_path = probe / f"{name}.o"
        if not obj_path.is_file():
            logger.debug("no entry type for %s in this kernel", section)
            continue
        value = _read_constant(read_object(obj_path), "ksplice_entry_size")
        if value is not None:
            sizes[section] = value
    shutil.rmtree(probe, ignore_errors=True)
    cache.write_text(json.dumps(sizes, indent=1, sort_keys=True))
    return sizes


def _read_constant(obj: ElfObject, name: str) -> int | None:
    sym = obj.symbol_named(name)
    if sym is None or not sym.is_defined:
        return None
    data = obj.sections[sym.shndx].data[sym.value : sym.value + 8]
    return int.from_bytes(data, "little") if len(data) == 8 else None
