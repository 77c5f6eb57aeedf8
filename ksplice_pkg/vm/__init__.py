"""The lab: boot the real target kernel under qemu and run scripts in it.

`run_script` boots the kernel on a generated busybox initramfs (a few seconds): the demo and
`fetch --kallsyms` use it. The full Debian userland with systemd as PID 1, which only the tests
boot, is the lab's own: tests/lab/userland.py.
"""
