"""`build --from OLD_SOURCE`: a new upload of the kernel source package, made into one
cumulative update for the kernel built from the older upload, with a report of what a
livepatch cannot carry.

The pipeline, in order: trees (both sources unpacked) -> changes (the two trees compared, file
by file and hunk by hunk) -> scope (what the target's configuration builds) -> derive (the
"after" tree of the accepted hunks, compiled and diffed until nothing left out is still
reached) -> the update (create's back half) -> report. changelog.py reads the upload's
changelog and its CVE ids.
"""
