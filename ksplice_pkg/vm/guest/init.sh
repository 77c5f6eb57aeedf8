#!/bin/busybox sh
# PID 1 of the lab's initramfs: set up a minimal system, load the listed modules, run the test
# script, hand its files back on the output disk and its exit status on the second serial port.
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /tmp /out /run
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
export PATH=/sbin:/bin:/usr/sbin:/usr/bin HOME=/root OUT=/out LAB=/lab
. /lab/lib.sh

while read -r module; do
    insmod "/lab/modules/$module" || echo "lab: insmod $module failed"
done < /lab/modules.order

mode=$(sed -n 's/.*ksplice.lab=\([a-z]*\).*/\1/p' /proc/cmdline)
if [ "$mode" = userland ]; then
    # Boot the Debian system on the root disk; its ksplice-lab.service runs the script.
    root=$(lab_disk ksplice-root) || { echo "lab: no root disk"; poweroff -f; }
    mkdir -p /newroot
    mount -t ext4 "$root" /newroot
    umount /tmp
    exec switch_root /newroot /lib/systemd/systemd
fi

cd /lab/files
sh -c ". /lab/lib.sh; . /lab/script"
lab_finish $?
