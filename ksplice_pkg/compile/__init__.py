"""Stage 2, compiling: the target's kbuild prepared like the target kernel (kbuild), the pre and
post objects an update compares (objects), and the optional full build for header changes
(prebuild)."""
