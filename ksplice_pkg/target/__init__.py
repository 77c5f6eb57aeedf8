"""The target kernel: the running distro kernel an update is built for.

`symbols` reads its symbol map (System.map or a copy of /proc/kallsyms), `vmlinux` its binary, and
`verify` is ksplice's run-pre check: the pre-patch object code must equal the target binary's bytes,
and the values at its relocation sites say which same-named symbol each reference means (sympos).
"""
