#!/bin/sh
# ExecStart of ksplice-lab.service in the lab's Debian image: unpack the test's files from the
# input disk, run its script as root after the boot finished, report back and power off: at
# once (poweroff -f), or by a clean shutdown when the test asked for one ($LAB/poweroff says
# "clean"), as an administrator's `systemctl poweroff` does it.
. /usr/local/lib/ksplice-lab/lib.sh
export LAB=/run/ksplice-lab OUT=/run/ksplice-lab/out
mkdir -p "$OUT" "$LAB/files"
if in=$(lab_disk ksplice-in); then
    tar -xf "$in" -C "$LAB"
fi
cd "$LAB/files" || lab_finish 125
sh -c ". /usr/local/lib/ksplice-lab/lib.sh; . $LAB/script" > /dev/ttyS0 2>&1
status=$?
if [ "$(cat "$LAB/poweroff" 2>/dev/null)" = clean ]; then
    lab_report $status
    systemctl poweroff
else
    lab_finish $status
fi
