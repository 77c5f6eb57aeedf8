"""The lab: boot the real target kernel under qemu and run scripts in it.

Two guests: `run_script` boots the kernel on a generated busybox initramfs (a few seconds) and
`userland.run_userland` boots a full Debian system with systemd as PID 1 (package and boot tests).
"""
