# Shell helpers for lab scripts, sourced in both guests (busybox sh and Debian's dash).

# lab_disk SERIAL: the /dev node of the virtio disk qemu was given with that serial.
lab_disk() {
    tries=0
    while [ $tries -lt 100 ]; do
        for d in /sys/block/vd*; do
            [ -e "$d/serial" ] || continue
            if [ "$(cat "$d/serial")" = "$1" ]; then
                echo "/dev/${d##*/}"
                return 0
            fi
        done
        tries=$((tries + 1))
        sleep 0.1
    done
    return 1
}

# lab_report STATUS: hand $OUT back on the output disk and STATUS on ttyS1.
lab_report() {
    if out=$(lab_disk ksplice-out); then
        (cd "$OUT" && tar -cf "$out" .)
    fi
    echo "ksplice-lab-status $1" > /dev/ttyS1
    sync
}

# lab_finish STATUS: lab_report, then power off at once (no shutdown of the services).
lab_finish() {
    lab_report "$1"
    poweroff -f
}

# lab_cut MARKER: print MARKER on the console, where the host watches for it to kill qemu (a
# power cut at this point), and block until it does.
lab_cut() {
    echo "$1" > /dev/ttyS0
    while :; do sleep 60; done
}

# klp_wait_transition PATCH [SECONDS]: wait until the patch's transition is over.
klp_wait_transition() {
    t=0
    limit=$(( ${2:-60} * 10 ))
    while [ -e "/sys/kernel/livepatch/$1/transition" ] &&
          [ "$(cat "/sys/kernel/livepatch/$1/transition")" != 0 ]; do
        t=$((t + 1))
        if [ $t -ge "$limit" ]; then
            echo "lab: livepatch $1 still in transition after ${2:-60} s"
            return 1
        fi
        sleep 0.1
    done
}

# klp_disable PATCH: disable the patch, wait for its transition and for its sysfs directory
# to go away (the kernel frees it asynchronously), so the module can be removed.
klp_disable() {
    echo 0 > "/sys/kernel/livepatch/$1/enabled" || return 1
    t=0
    while [ -d "/sys/kernel/livepatch/$1" ]; do
        t=$((t + 1))
        if [ $t -ge 600 ]; then
            echo "lab: livepatch $1 still present 60 s after disabling"
            return 1
        fi
        sleep 0.1
    done
}
