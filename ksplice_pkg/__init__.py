"""ksplice-pkg: rebootless kernel updates, built the ksplice way and shipped as distro packages.

The build side (a maintainer's machine), one subpackage per stage, in pipeline order:

    source/   the patch (file, --diffext, --git) applied to a hard-link copy of the tree
    build/    the target's kbuild prepared like the target kernel; pre and post objects
    diff/     which functions changed, which are new, which data the patch adds
    runpre/   the pre code proven to be the target kernel's; sympos from evidence
    module/   changed code extracted, linked with a klp_patch, klp relocations written
    update/   manifest.json and ksplice-<id>.tar.gz

`create.py` runs them in that order; `config.py` turns options into its configuration.
Supporting layers: `elf/` (our ELF model, reader, writer, object queries, the vmlinux image),
`target/` (the target kernel's files and symbol map), `distro/` (distro inputs: Debian's
kernel fetched, source and kernel packages unpacked, `ksplice-pkg build`),
`vm/` (the lab: the real kernel in qemu).

`manifest.py` is the contract with the runtime side (apply, undo, view, reapply), which runs on
production machines and imports nothing of the build side.
"""

__version__ = "0.1.0"
