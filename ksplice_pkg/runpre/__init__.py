"""Stage 4, run-pre: prove the pre-patch code is the target kernel's (verify; a module's .ko:
module), gather what the target binary says each referenced symbol is (evidence), refuse what
cannot be patched (changed); unit puts them together for one unit of vmlinux or of a module."""
