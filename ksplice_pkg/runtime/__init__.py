"""The runtime side: apply, undo, view and boot-time reapply of updates on a live system.

It runs on production machines and at boot, so it imports nothing of the build side (no ELF
reader, no compiler, no kbuild, no python-debian): the standard library, click, the manifest,
sysfs, /proc and kmod. One module per job:

- errors.py   the failures a user can cause, each with its own exit code
- store.py    the installed tree and the state files (what is applied, quarantined, superseded)
- bundle.py   an update as given on the command line: tarball, directory or installed id
- kernel.py   the running kernel: release and GNU build-id
- sysfs.py    /sys/kernel/livepatch, /proc/<pid>/patch_state, insmod and rmmod
- lock.py     one runtime command at a time
- order.py    dependency order (graphlib) and what a failure takes down with it
- guard.py    the crash-loop guard: updates loaded in a boot that did not survive
- apply.py, undo.py, view.py, reapply.py, install.py: the commands
- cli.py      the click commands and the classic ksplice-apply/-undo/-view entry points
"""
