"""`ksplice-pkg create` against the real Debian kernel source, proven in the real kernel.

Each test: build an update from a patch, check the behaviour before loading, after the patching
transition, and after disabling and removing the module. The refusal tests check that create
stops, with a message that names the problem, on patches a livepatch cannot carry.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ksplice_pkg.distro.debian import KernelArtifacts
from ksplice_pkg.errors import KspliceError, RefusedError
from tests.lab.updates import (
    build_update,
    object_functions,
    object_symbol_names,
    relocation_targets,
    static_program,
    try_update,
    vmlinux_kallsyms,
)


def kallsyms_names(kallsyms: Path) -> set[str]:
    return {e.name for e in vmlinux_kallsyms(kallsyms)}


PROC_CMDLINE_PATCH = """\
--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ -6,6 +6,7 @@
 
 static int cmdline_proc_show(struct seq_file *m, void *v)
 {
+	seq_puts(m, "ksplice: ");
 	seq_puts(m, saved_command_line);
 	seq_putc(m, '\\n');
 	return 0;
"""


def test_string_change_in_proc_show(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    update = build_update(artifacts, kallsyms, PROC_CMDLINE_PATCH, tmp_path, "cmdline")
    assert update.patched_names == ["cmdline_proc_show"]
    assert update.manifest["verification"] == "run-pre"
    # saved_command_line is not exported: reached through a klp relocation.
    assert update.manifest["klp_relocations"] == 1
    before, patched, restored, _ = try_update(artifacts, update, "cat /proc/cmdline")
    assert patched == "ksplice: " + before
    assert restored == before


# /proc/loadavg also shows pid_max, a global of kernel/pid.c that vmlinux does not export.
LOADAVG_PID_MAX_PATCH = """\
--- a/fs/proc/loadavg.c
+++ b/fs/proc/loadavg.c
@@ -17,12 +17,13 @@
 
 	get_avenrun(avnrun, FIXED_1/200, 0);
 
-	seq_printf(m, "%lu.%02lu %lu.%02lu %lu.%02lu %u/%d %d\\n",
+	seq_printf(m, "%lu.%02lu %lu.%02lu %lu.%02lu %u/%d %d/%d\\n",
 		LOAD_INT(avnrun[0]), LOAD_FRAC(avnrun[0]),
 		LOAD_INT(avnrun[1]), LOAD_FRAC(avnrun[1]),
 		LOAD_INT(avnrun[2]), LOAD_FRAC(avnrun[2]),
 		nr_running(), nr_threads,
-		idr_get_cursor(&task_active_pid_ns(current)->idr) - 1);
+		idr_get_cursor(&task_active_pid_ns(current)->idr) - 1,
+		pid_max);
 	return 0;
 }
 
"""


def test_reference_to_unexported_global(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    symvers = (artifacts.target_dir / "Module.symvers").read_text()
    assert "\tpid_max\t" not in symvers  # the premise: no ordinary relocation can reach it
    update = build_update(artifacts, kallsyms, LOADAVG_PID_MAX_PATCH, tmp_path, "pidmax")
    assert update.patched_names == ["loadavg_proc_show"]
    klp_relocations = update.manifest["klp_relocations"]
    assert isinstance(klp_relocations, int) and klp_relocations >= 1
    # pid_max is unique in vmlinux: sympos 0.
    assert ".klp.sym.vmlinux.pid_max,0" in object_symbol_names(update.ko)
    # A value no boot would pick, so the field can only come from the live variable.
    before, patched, restored, _ = try_update(
        artifacts,
        update,
        "echo 54321 > /proc/sys/kernel/pid_max\ncat /proc/loadavg",
    )
    assert len(before.split()) == 5 and "54321" not in before
    assert patched.split()[4].endswith("/54321"), patched
    assert len(restored.split()) == 5 and "54321" not in restored


# collect_sigign_sigcatch() also reports SIGSYS as ignored. The helper is plain `static`; GCC
# inlines it into both of its callers (through task_sig() into proc_pid_status()).
SIGIGN_INLINED_HELPER_PATCH = """\
--- a/fs/proc/array.c
+++ b/fs/proc/array.c
@@ -256,6 +256,7 @@
 		else if (k->sa.sa_handler != SIG_DFL)
 			sigaddset(sigcatch, i);
 	}
+	sigaddset(sigign, SIGSYS);
 }
 
 static inline void task_sig(struct seq_file *m, struct task_struct *p)
"""
SIGSYS_BIT = 1 << (31 - 1)


def test_change_to_inlined_static_helper(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    update = build_update(artifacts, kallsyms, SIGIGN_INLINED_HELPER_PATCH, tmp_path, "sigign")
    # The truth, from the compiler's output and the target's symbols: the helper (and task_sig)
    # exist in neither, their callers exist in both.
    pre = object_functions(update.pre_object("fs/proc/array.o"))
    target = kallsyms_names(kallsyms)
    for inlined in ("collect_sigign_sigcatch", "task_sig"):
        assert not any(n.split(".")[0] == inlined for n in pre | target), inlined
    callers = ["do_task_stat", "proc_pid_status"]
    assert set(callers) <= pre and set(callers) <= target
    # The patched callers may call a new out-of-line clone of the grown helper: that is a new
    # function, not one the update replaces.
    assert update.patched_names == callers

    # Field 33 of /proc/PID/stat is sigignore.
    check = "grep SigIgn /proc/self/status\ncut -d' ' -f33 /proc/self/stat"
    outputs = try_update(artifacts, update, check)[:3]
    (status_before, stat_before), (status_patched, stat_patched), (status_restored, _) = [
        (int(text.split()[1], 16), int(text.split()[2])) for text in outputs
    ]
    assert not status_before & SIGSYS_BIT
    assert status_patched == status_before | SIGSYS_BIT  # through proc_pid_status
    assert stat_patched == stat_before | SIGSYS_BIT  # through do_task_stat
    assert status_restored == status_before
    assert outputs[2] == outputs[0]


# /proc/version gains a line, written by a new (noinline, so really separate) function.
NEW_FUNCTION_PATCH = """\
--- a/fs/proc/version.c
+++ b/fs/proc/version.c
@@ -7,12 +7,18 @@
 #include <linux/utsname.h>
 #include "internal.h"
 
+static noinline void version_proc_note(struct seq_file *m)
+{
+	seq_puts(m, "ksplice: new function\\n");
+}
+
 static int version_proc_show(struct seq_file *m, void *v)
 {
 	seq_printf(m, linux_proc_banner,
 		utsname()->sysname,
 		utsname()->release,
 		utsname()->version);
+	version_proc_note(m);
 	return 0;
 }
 
"""


def test_new_function(artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path) -> None:
    update = build_update(artifacts, kallsyms, NEW_FUNCTION_PATCH, tmp_path, "newfn")
    assert "version_proc_note" in object_functions(update.post_object("fs/proc/version.o"))
    assert update.patched_names == ["version_proc_show"]
    assert update.manifest["new_functions"] == ["version_proc_note"]
    before, patched, restored, _ = try_update(artifacts, update, "cat /proc/version")
    assert before.startswith("Linux version ")
    assert patched == before + "ksplice: new function\n"
    assert restored == before


# drop_caches_sysctl_handler() keeps `static int stfu`: once 4 was written, it stops logging.
# The patch logs a short line instead while stfu is set.
STATIC_LOCAL_PATCH = """\
--- a/fs/drop_caches.c
+++ b/fs/drop_caches.c
@@ -70,6 +70,8 @@
 			pr_info("%s (%d): drop_caches: %d\\n",
 				current->comm, task_pid_nr(current),
 				sysctl_drop_caches);
+		} else {
+			pr_info("drop_caches: %d (quiet)\\n", sysctl_drop_caches);
 		}
 		stfu |= sysctl_drop_caches & 4;
 	}
"""


def test_static_local_keeps_its_state(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    update = build_update(artifacts, kallsyms, STATIC_LOCAL_PATCH, tmp_path, "stfu")
    assert update.patched_names == ["drop_caches_sysctl_handler"]
    assert update.manifest["new_functions"] == []
    # Each run writes 4 (sets stfu), then 1; dmesg -c shows what that logged since the last run.
    check = """
echo 4 > /proc/sys/vm/drop_caches
echo 1 > /proc/sys/vm/drop_caches
dmesg -c | grep -o 'drop_caches: .*' || true
"""
    before, patched, restored, result = try_update(artifacts, update, check)
    # Before: the first write of 4 still logs, and sets the flag in the original variable.
    assert before == "drop_caches: 4\n", result.console[-2000:]
    # Patched: the flag set before the load is seen at once. A copy of the variable would
    # start at 0 and log the first write in the original format.
    assert patched == "drop_caches: 4 (quiet)\ndrop_caches: 1 (quiet)\n"
    # Restored: the original code, the same variable, still set.
    assert restored == ""


# Five comment lines at the top of kernel/params.c move the pr_debug, BUG_ON, WARN_ON_ONCE and
# printk(__LINE__) sites below them; one real change: boolean parameters read back in lower case.
LINE_SHIFT_PATCH = """\
--- a/kernel/params.c
+++ b/kernel/params.c
@@ -3,6 +3,11 @@
  * Helpers for initial module or kernel cmdline parsing
  * Copyright (C) 2001 Rusty Russell.
  */
+
+/*
+ * Lines added here move every line below, and with them the __LINE__ that the
+ * pr_debug, BUG_ON and WARN_ON_ONCE sites further down put into the object.
+ */
 #include <linux/ctype.h>
 #include <linux/device.h>
 #include <linux/err.h>
@@ -326,7 +331,7 @@
 int param_get_bool(char *buffer, const struct kernel_param *kp)
 {
 	/* Y and N chosen as being relatively non-coder friendly */
-	return sprintf(buffer, "%c\\n", *(bool *)kp->arg ? 'Y' : 'N');
+	return sprintf(buffer, "%c\\n", *(bool *)kp->arg ? 'y' : 'n');
 }
 EXPORT_SYMBOL(param_get_bool);
 
"""


def test_line_shift_is_not_a_change(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    update = build_update(artifacts, kallsyms, LINE_SHIFT_PATCH, tmp_path, "lines")
    # The premise: line numbers reach the object. Each pr_debug has a dynamic debug descriptor
    # that holds its line, each BUG/WARN a __bug_table entry that holds its line, and
    # param_sysfs_init() prints __LINE__. Compiled without line stabilisation, this patch
    # changes four descriptors (refused as changed data) and that __init function too.
    pre = update.pre_object("kernel/params.o")
    assert relocation_targets(pre, "__dyndbg")
    assert relocation_targets(pre, "__bug_table")
    assert update.patched_names == ["param_get_bool"]
    assert update.manifest["new_functions"] == []
    before, patched, restored, _ = try_update(
        artifacts, update, "cat /sys/module/printk/parameters/time"
    )
    assert before in ("Y\n", "N\n")
    assert patched == before.lower()
    assert restored == before


# getdents64() fills the caller's buffer in filldir64() with unsafe_put_user(): each store has
# an exception table entry in filldir64 itself. (put_user() would not do: on x86-64 it calls
# __put_user_N, whose exception table entries stay in vmlinux.) The patch hides one name.
EXCEPTION_TABLE_PATCH = """\
--- a/fs/readdir.c
+++ b/fs/readdir.c
@@ -320,6 +320,8 @@
 	buf->error = verify_dirent_name(name, namlen);
 	if (unlikely(buf->error))
 		return false;
+	if (namlen == 14 && !memcmp(name, "ksplice-hidden", 14))
+		return true;
 	buf->error = -EINVAL;	/* only used if we fail.. */
 	if (reclen > buf->count)
 		return false;
"""

GETDENTS_PROGRAM = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

int main(int argc, char **argv)
{
	static char buf[1 << 16];
	long n, off;
	int fd = open(argv[1], O_RDONLY | O_DIRECTORY);
	/* In the user range, so access_ok() passes; the first store faults. */
	void *readonly = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (fd < 0 || readonly == MAP_FAILED)
		return 1;
	n = syscall(SYS_getdents64, fd, buf, sizeof(buf));
	for (off = 0; off < n; off += ((struct linux_dirent64 *)(buf + off))->d_reclen) {
		const char *name = ((struct linux_dirent64 *)(buf + off))->d_name;

		if (!strncmp(name, "ksplice-", 8))
			printf("%s\n", name);
	}
	lseek(fd, 0, SEEK_SET);
	n = syscall(SYS_getdents64, fd, readonly, 4096);
	printf("read-only buffer: getdents64=%ld %s\n", n, n < 0 ? strerror(errno) : "");
	return 0;
}
"""


def test_exception_table_fixup(artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path) -> None:
    program = static_program(tmp_path, "getdents", GETDENTS_PROGRAM)
    update = build_update(artifacts, kallsyms, EXCEPTION_TABLE_PATCH, tmp_path, "extable")
    assert update.patched_names == ["filldir64"]
    assert ".text.filldir64" in relocation_targets(update.post_object("fs/readdir.o"), "__ex_table")
    check = """
mkdir -p /tmp/dir && touch /tmp/dir/ksplice-hidden /tmp/dir/ksplice-shown
./getdents /tmp/dir | sort
"""
    before, patched, restored, _ = try_update(artifacts, update, check, {"getdents": program})
    # The fault in the patched copy must be fixed up by its own exception table entry: an
    # entry missing from the module makes it an oops instead.
    efault = "read-only buffer: getdents64=-1 Bad address\n"
    assert before == "ksplice-hidden\nksplice-shown\n" + efault
    assert patched == "ksplice-shown\n" + efault
    assert restored == before


# __set_task_comm() renames "ksplice-old" to "ksplice-new", just before its task_rename
# tracepoint: a static branch (jump label), off until the event is enabled in tracefs.
JUMP_LABEL_PATCH = """\
--- a/fs/exec.c
+++ b/fs/exec.c
@@ -1233,6 +1233,8 @@
 
 void __set_task_comm(struct task_struct *tsk, const char *buf, bool exec)
 {
+	if (!exec && !strcmp(buf, "ksplice-old"))
+		buf = "ksplice-new";
 	task_lock(tsk);
 	trace_task_rename(tsk, buf);
 	strscpy_pad(tsk->comm, buf, sizeof(tsk->comm));
"""


def test_tracepoint_in_patched_function(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    update = build_update(artifacts, kallsyms, JUMP_LABEL_PATCH, tmp_path, "tracepoint")
    assert update.patched_names == ["__set_task_comm"]
    sites = relocation_targets(update.post_object("fs/exec.o"), "__jump_table")
    assert ".text.__set_task_comm" in sites
    # The event is enabled after the load, so the static key's flip must reach the module's
    # copy of the branch; writing /proc/PID/comm calls __set_task_comm(..., false).
    check = """
t=/sys/kernel/tracing
[ -e $t/trace ] || mount -t tracefs tracefs $t
echo > $t/trace
echo 1 > $t/events/task/task_rename/enable
sh -c 'echo -n ksplice-old > /proc/$$/comm; read comm < /proc/$$/comm; echo $comm'
echo 0 > $t/events/task/task_rename/enable
grep -o 'newcomm=ksplice-[a-z]*' $t/trace || true
"""
    before, patched, restored, _ = try_update(artifacts, update, check)
    assert before == "ksplice-old\nnewcomm=ksplice-old\n"
    assert patched == "ksplice-new\nnewcomm=ksplice-new\n"
    assert restored == before


# getcpu(2) reports CPU numbers from 1000 up.
SYSCALL_PATCH = """\
--- a/kernel/sys.c
+++ b/kernel/sys.c
@@ -2686,7 +2686,7 @@
 	int cpu = raw_smp_processor_id();
 
 	if (cpup)
-		err |= put_user(cpu, cpup);
+		err |= put_user(cpu + 1000, cpup);
 	if (nodep)
 		err |= put_user(cpu_to_node(cpu), nodep);
 	return err ? -EFAULT : 0;
"""

GETCPU_PROGRAM = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
	unsigned int cpu = ~0u, node = ~0u;
	/* The syscall itself: the C library would answer from the vDSO. */
	long ret = syscall(SYS_getcpu, &cpu, &node, NULL);

	printf("%ld %u %u\n", ret, cpu, node);
	return 0;
}
"""


def test_syscall(artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path) -> None:
    program = static_program(tmp_path, "getcpu", GETCPU_PROGRAM)
    update = build_update(artifacts, kallsyms, SYSCALL_PATCH, tmp_path, "getcpu")
    # SYSCALL_DEFINE's __do_sys_getcpu is inlined into the native and the 32-bit entry points.
    wrappers = ["__ia32_sys_getcpu", "__x64_sys_getcpu"]
    pre = object_functions(update.pre_object("kernel/sys.o"))
    assert "__do_sys_getcpu" not in pre and set(wrappers) <= pre
    assert set(wrappers) <= kallsyms_names(kallsyms)
    assert update.patched_names == wrappers
    outputs = try_update(artifacts, update, "./getcpu", {"getcpu": program})[:3]
    (ret_b, cpu_b, node_b), (ret_p, cpu_p, node_p), (ret_r, cpu_r, node_r) = [
        [int(f) for f in text.split()] for text in outputs
    ]
    assert (ret_b, node_b, ret_p, node_p, ret_r, node_r) == (0, 0, 0, 0, 0, 0)
    assert cpu_b in (0, 1) and cpu_r in (0, 1)
    assert cpu_p in (1000, 1001)


# /proc/crypto's c_start() skips the first algorithm. vmlinux has three static c_start
# functions (/proc/cpuinfo, /proc/consoles, /proc/crypto).
SYMPOS_PATCH = """\
--- a/crypto/proc.c
+++ b/crypto/proc.c
@@ -20,7 +20,7 @@
 static void *c_start(struct seq_file *m, loff_t *pos)
 {
 	down_read(&crypto_alg_sem);
-	return seq_list_start(&crypto_alg_list, *pos);
+	return seq_list_start(&crypto_alg_list, *pos + 1);
 }
 
 static void *c_next(struct seq_file *m, void *p, loff_t *pos)
"""


def crypto_c_start_sympos(kallsyms: Path) -> int:
    """The kernel's sympos for crypto/proc.c's c_start, from kallsyms alone: that unit's four
    seq_file functions sit next to each other there, and c_show is its alone."""
    entries = [e for e in vmlinux_kallsyms(kallsyms) if e.type in "tT"]
    unit = {"c_start", "c_next", "c_stop", "c_show"}
    (show,) = [i for i, e in enumerate(entries) if e.name == "c_show"]
    lo = hi = show
    while entries[lo - 1].name in unit:
        lo -= 1
    while entries[hi + 1].name in unit:
        hi += 1
    (ours,) = [e.address for e in entries[lo : hi + 1] if e.name == "c_start"]
    same_name = [e.address for e in entries if e.name == "c_start"]
    assert len(same_name) > 1
    return same_name.index(ours) + 1


def test_function_with_several_local_definitions(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    sympos = crypto_c_start_sympos(kallsyms)
    assert sympos > 1
    update = build_update(artifacts, kallsyms, SYMPOS_PATCH, tmp_path, "sympos")
    assert update.manifest["patched"] == [
        {"object": "vmlinux", "name": "c_start", "sympos": sympos}
    ]
    check = """
grep -c '^name' /proc/crypto
grep -c '^processor' /proc/cpuinfo
wc -l < /proc/consoles
for f in /sys/kernel/livepatch/*/vmlinux/*,*; do
    if [ -e "$f" ]; then echo "${f##*/}"; fi
done
"""
    before, patched, restored, _ = try_update(artifacts, update, check)
    algorithms, cpus, consoles = (int(n) for n in before.split())
    assert (algorithms, cpus) > (1, 1) and consoles >= 1
    # Only /proc/crypto changed: the kernel bound the patch to the c_start it was meant for.
    assert patched == f"{algorithms - 1}\n{cpus}\n{consoles}\nc_start,{sympos}\n"
    assert restored == before


# Refusals.

CHANGED_DATA_PATCH = """\
--- a/kernel/pid.c
+++ b/kernel/pid.c
@@ -59,7 +59,7 @@
 	}, }
 };
 
-int pid_max = PID_MAX_DEFAULT;
+int pid_max = PID_MAX_DEFAULT * 2;
 
 #define RESERVED_PIDS		300
 
"""

INIT_CODE_PATCH = """\
--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ -13,7 +13,7 @@
 
 static int __init proc_cmdline_init(void)
 {
-	proc_create_single("cmdline", 0, NULL, cmdline_proc_show);
+	proc_create_single("cmdline", 0444, NULL, cmdline_proc_show);
 	return 0;
 }
 fs_initcall(proc_cmdline_init);
"""

COMMENT_ONLY_PATCH = """\
--- a/fs/drop_caches.c
+++ b/fs/drop_caches.c
@@ -1,6 +1,6 @@
 // SPDX-License-Identifier: GPL-2.0
 /*
- * Implement the manual drop-all-pagecache function
+ * Implement the manual drop-all-pagecache function (/proc/sys/vm/drop_caches)
  */
 
 #include <linux/pagemap.h>
"""

# __do_sys_waitid, like every SYSCALL_DEFINE body, is `static inline`, hence notrace; GCC did
# not inline it, so the change stays in a function that ftrace cannot redirect.
NO_FENTRY_PATCH = """\
--- a/kernel/entry/common.c
+++ b/kernel/entry/common.c
@@ -119,6 +119,8 @@
 	instrumentation_begin();
 	local_irq_enable();
 	ret = __syscall_enter_from_user_work(regs, syscall);
+	if (syscall == -12345)
+		ret = -1;
 	instrumentation_end();
 
 	return ret;
"""

# Made against another version of fs/proc/cmdline.c: its context is not in this tree.
NOT_APPLYING_PATCH = """\
--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ -6,6 +6,7 @@
 
 static int cmdline_proc_show(struct seq_file *m, void *v)
 {
+	seq_puts(m, "ksplice: ");
 	seq_puts(m, boot_command_line);
 	seq_putc(m, '\\n');
 	return 0;
"""


SOURCE = "<the source tree>"  # stands for the target's source tree, a fixture


@pytest.mark.parametrize(
    ("update_id", "patch", "error", "names"),
    [
        pytest.param(
            "piddata",
            CHANGED_DATA_PATCH,
            RefusedError,
            ["kernel/pid.o", "pid_max"],
            id="changed-initialised-data",
        ),
        pytest.param(
            "initfn",
            INIT_CODE_PATCH,
            RefusedError,
            ["fs/proc/cmdline.o", "proc_cmdline_init"],
            id="changed-init-code",
        ),
        pytest.param(
            "nofentry",
            NO_FENTRY_PATCH,
            RefusedError,
            ["kernel/entry/common.o", "syscall_enter_from_user_mode"],
            id="changed-notrace-function",
        ),
        pytest.param("comment", COMMENT_ONLY_PATCH, RefusedError, [], id="comment-only"),
        # Not something a livepatch cannot do: a patch for another tree, the user's input error.
        pytest.param("noapply", NOT_APPLYING_PATCH, KspliceError, [SOURCE], id="does-not-apply"),
    ],
)
def test_refused(
    artifacts: KernelArtifacts,
    kallsyms: Path,
    tmp_path: Path,
    update_id: str,
    patch: str,
    error: type[KspliceError],
    names: list[str],
) -> None:
    with pytest.raises(KspliceError) as e:
        build_update(artifacts, kallsyms, patch, tmp_path, update_id)
    assert type(e.value) is error, e.value
    for name in names:
        assert (str(artifacts.source_tree) if name == SOURCE else name) in e.value.message
    assert not list(tmp_path.iterdir())  # no update was written


def test_two_files_make_one_update(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    """Two compilation units, one livepatch: both patched at once, one klp object (vmlinux)."""
    update = build_update(
        artifacts, kallsyms, PROC_CMDLINE_PATCH + NEW_FUNCTION_PATCH, tmp_path, "twofiles"
    )
    assert update.patched_names == ["cmdline_proc_show", "version_proc_show"]
    check = "cat /proc/cmdline /proc/version; ls /sys/kernel/livepatch/*/ 2>/dev/null || true"
    before, patched, restored, _ = try_update(artifacts, update, check)
    assert "ksplice: " not in before
    assert "ksplice: console=" in patched
    assert "ksplice: new function\n" in patched
    assert "vmlinux" in patched.split()
    assert restored.splitlines()[:2] == before.splitlines()[:2]


def test_patch_adding_only_uncalled_code_is_refused(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    patch = """\
--- a/fs/proc/version.c
+++ b/fs/proc/version.c
@@ -7,6 +7,11 @@
 #include <linux/utsname.h>
 #include "internal.h"
 
+noinline void ksplice_unused_helper(struct seq_file *m)
+{
+	seq_puts(m, "never called\\n");
+}
+
 static int version_proc_show(struct seq_file *m, void *v)
 {
 	seq_printf(m, linux_proc_banner,
"""
    with pytest.raises(RefusedError, match=r"\bksplice_unused_helper\b"):
        build_update(artifacts, kallsyms, patch, tmp_path, "onlynew")
    assert not list(tmp_path.glob("*.tar.gz"))


# SYSCALL_DEFINE's body (__do_sys_newuname) is a static inline, hence notrace; here GCC keeps it
# out of line, shared by the two syscall wrappers. The update carries the new body and patches
# the wrappers, which have ftrace entries.
NEWUNAME_PATCH = """\
--- a/kernel/sys.c
+++ b/kernel/sys.c
@@ -1303,6 +1303,7 @@
 	down_read(&uts_sem);
 	memcpy(&tmp, utsname(), sizeof(tmp));
 	up_read(&uts_sem);
+	strscpy(tmp.sysname, "Ksplice", sizeof(tmp.sysname));
 	if (copy_to_user(name, &tmp, sizeof(tmp)))
 		return -EFAULT;
 
"""


def test_syscall_body_without_ftrace_entry_is_patched_through_its_callers(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    update = build_update(artifacts, kallsyms, NEWUNAME_PATCH, tmp_path, "newuname")
    # The premise: the body is a function of its own without a __fentry__ call.
    pre = update.pre_object("kernel/sys.o")
    assert "__do_sys_newuname" in object_functions(pre)
    body_targets = relocation_targets(pre, ".text.__do_sys_newuname")
    assert body_targets and "__fentry__" not in body_targets
    assert update.patched_names == ["__ia32_sys_newuname", "__x64_sys_newuname"]
    assert update.manifest["new_functions"] == ["__do_sys_newuname"]
    before, patched, restored, _ = try_update(artifacts, update, "uname -s")
    assert (before, patched, restored) == ("Linux\n", "Ksplice\n", "Linux\n")


# WARN_ON_ONCE puts an entry in __bug_table whose file name is reached through an assembler
# label (.LCn) that stays in the symbol table, and a once-flag in .data..once.
WARN_PATCH = """\\
--- a/kernel/fork.c
+++ b/kernel/fork.c
@@ -801,6 +801,7 @@
 {
 	BUG_ON(mm == &init_mm);
 	WARN_ON_ONCE(mm == current->mm);
+	WARN_ON_ONCE(!mm);
 	WARN_ON_ONCE(mm == current->active_mm);
 	mm_free_pgd(mm);
 	destroy_context(mm);
"""


def test_function_with_warn_sites(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    update = build_update(artifacts, kallsyms, WARN_PATCH, tmp_path, "warn")
    assert update.patched_names == ["__mmdrop"]
    # The module carries one __bug_table entry per WARN/BUG site of the new __mmdrop: the
    # running one's sites (counted in the pre object) plus the added one.
    pre_sites = relocation_targets(update.pre_object("kernel/fork.o"), "__bug_table")
    carried = relocation_targets(update.ko, "__bug_table")
    assert carried.count(".text.__mmdrop") == pre_sites.count(".text.__mmdrop") + 1
    # __mmdrop runs for every exiting process: exercise it while patched.
    check = "for i in 1 2 3 4 5 6 7 8; do sh -c true; done; echo ok; grep -c . /proc/modules"
    before, patched, restored, result = try_update(artifacts, update, check)
    assert before.startswith("ok\n") and patched.startswith("ok\n") and restored.startswith("ok\n")
    assert "WARNING:" not in result.console


# alloc_hpa() of the built-in CXL core calls alloc_free_mem_region(), which vmlinux exports in
# the CXL symbol namespace (EXPORT_SYMBOL_NS_GPL). A module using it must MODULE_IMPORT_NS(CXL),
# or modpost refuses it. The patch only changes an error code next to that call.
NAMESPACED_EXPORT_PATCH = """\
--- a/drivers/cxl/core/region.c
+++ b/drivers/cxl/core/region.c
@@ -465,7 +465,7 @@
 
 	div64_u64_rem(size, (u64)SZ_256M * p->interleave_ways, &remainder);
 	if (remainder)
-		return -EINVAL;
+		return -EDOM;
 
 	res = alloc_free_mem_region(cxlrd->res, size, SZ_256M,
 				    dev_name(&cxlr->dev));
"""


def test_namespaced_export_premise(artifacts: KernelArtifacts) -> None:
    symvers = (artifacts.target_dir / "Module.symvers").read_text().splitlines()
    (line,) = [ln for ln in symvers if ln.split("\t")[1:3] == ["alloc_free_mem_region", "vmlinux"]]
    assert line.split("\t")[4] == "CXL"


def test_code_calling_a_namespaced_export(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    update = build_update(artifacts, kallsyms, NAMESPACED_EXPORT_PATCH, tmp_path, "cxlns")
    # An ordinary relocation to the export, resolved by the module loader.
    assert "alloc_free_mem_region" in object_symbol_names(update.ko)
