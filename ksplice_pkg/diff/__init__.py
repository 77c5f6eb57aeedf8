"""Stage 3, the differ: which functions of each unit changed, which are new, which data the patch
adds, and the statics each side's numbering pairs up (compare, data, callers; unit is the entry)."""
