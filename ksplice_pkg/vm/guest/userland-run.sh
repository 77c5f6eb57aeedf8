#!/bin/sh
# ExecStart of ksplice-lab.service in the lab's Debian image: unpack the test's files from the
# input disk, run its script as root after the boot finished, report back and power off.
. /usr/local/lib/ksplice-lab/lib.sh
export LAB=/run/ksplice-lab OUT=/run/ksplice-lab/out
mkdir -p "$OUT" "$LAB/files"
if in=$(lab_disk ksplice-in); then
    tar -xf "$in" -C "$LAB"
fi
cd "$LAB/files" || lab_finish 125
sh -c ". /usr/local/lib/ksplice-lab/lib.sh; . $LAB/script" > /dev/ttyS0 2>&1
lab_finish $?
