"""Stage 4, run-pre: prove the pre-patch code is the target kernel's (verify), gather what the
target binary says each referenced symbol is (evidence), and refuse what cannot be patched
(changed)."""
