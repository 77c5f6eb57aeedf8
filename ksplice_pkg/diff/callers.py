"""Changed code livepatch cannot redirect (no ftrace entry) reached through its callers."""

from __future__ import annotations

from ksplice_pkg.diff.compare import UnitDiff, is_init_section, match_function
from ksplice_pkg.elf.model import ElfObject
from ksplice_pkg.elf.query import callers, functions, has_ftrace_entry
from ksplice_pkg.errors import RefusedError


def patch_through_callers(unit: str, pre: ElfObject, post: ElfObject, d: UnitDiff) -> None:
    """A changed function without an ftrace entry (a SYSCALL_DEFINE body GCC kept out of line,
    a static inline, notrace code) cannot be redirected; when it is file-local, its callers can:
    the update carries the new copy and patches every caller to call it."""
    pre_funcs, post_funcs = functions(pre), functions(post)
    pending = [n for n in d.changed if not n.endswith(".cold")]
    while pending:
        name = pending.pop()
        pre_name = d.pre_names.get(name, name)
        if pre_name not in pre_funcs or has_ftrace_entry(pre, pre_funcs[pre_name]):
            continue
        if not post.symbols[post_funcs[name].symbol].is_local:
            raise RefusedError(
                f"{unit}: {pre_name} has no ftrace entry (__fentry__ call): livepatch cannot "
                "redirect it, and it is global, so callers elsewhere would keep the old code",
                hint="it is notrace or in a noinstr section; patch its callers instead",
            )
        why = d.changed.pop(name)
        d.pre_names.pop(name, None)
        d.new_functions.append(name)
        for caller in callers(post, name):
            section = post.sections[post_funcs[caller].section].name
            # Each function is moved once: callers that call each other (a recursive descent
            # parser of notrace code) would otherwise hand each other back for ever.
            if caller in d.changed or caller in d.new_functions or is_init_section(section):
                continue
            d.changed[caller] = f"calls {name}, which has no ftrace entry ({why})"
            d.pre_names[caller] = match_function(pre_funcs, caller) or caller
            pending.append(caller)
