"""How kbuild compiles x86-64 kernel code, as far as object layout goes: one section per
function and object, no PIC, the kernel code model, ftrace entries recorded in __mcount_loc.
Shared by the unit tests that compile small objects with gcc."""

KERNEL_CFLAGS = [
    "-O2",
    "-ffunction-sections",
    "-fdata-sections",
    "-fno-pic",
    "-mcmodel=kernel",
    "-fno-asynchronous-unwind-tables",
    "-pg",
    "-mfentry",
    "-mrecord-mcount",
]
