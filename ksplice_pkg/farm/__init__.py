"""Hotpatch source packages for build farms: `ksplice-pkg source-package` writes what `build`
was asked for as a Debian source package or a source RPM, whose build runs `ksplice-pkg build`
in the farm's clean chroot, against the target kernel's packages installed there."""
