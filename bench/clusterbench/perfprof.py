"""Where the cycles of a benchmark run go: `perf record -a -g` (cpu-clock
sampling; this machine's virtual CPUs have no hardware counters) over the
run, then every sample between T0 and the last host done is put in one
category by its call chain and in one process group by its PID, and the
report gives CPU seconds per GB delivered for each, user and kernel apart.

How a sample gets its category: its frames are walked from the leaf up.
Frames that only say "interrupts were re-enabled here" or "a lock was
taken" (and generic allocators) are skipped, so their time goes to the code
that called them; the first frame whose symbol matches a category decides.
A user-space frame that matches nothing ends the walk ("other user code",
named by its binary), as its callers would be a guess without frame
pointers; a kernel frame that matches nothing is skipped. Idle is a sample
of the idle task whose first frame is a halt or idle loop.

Process groups: the PIDs the harness started (agents, tracker, registry,
clients, ...) by name; the kernel's own threads (softirq, workers);
interrupts taken while a CPU was idle; perf itself; and every other process
on the machine, which is reported but left out of the per-byte breakdown.

Standalone: perfprof.py report PERF_DATA --t0 MONO --t1 MONO --bytes N
[--pids GROUP=PID,PID ...] prints the Markdown report of a recording.
"""

import argparse
import collections
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

PERF = "perf"

# (key, label, symbol regex). Order matters only when one symbol matches
# two patterns (page faults before the page cache: filemap_map_pages).
CATEGORIES = [
    ("hash", "hashing (SHA-256, SHA-1, XXH3)",
     r"sha1|sha256|sha512|SHA1|SHA256|SHA512|XXH|xxh|blake2|md5_|crc32|EVP_Digest|EVP_update|"
     r"ossl_sha|_hashlib"),
    ("copy", "memcpy / copy_user / memset",
     r"memcpy|memmove|mempcpy|memset|copy_user|copy_to_user|copy_from_user|_copy_to_iter|"
     r"_copy_from_iter|copyin|copyout|rep_movs|rep_stos|copy_page|copy_mc|__copy|clear_user|"
     r"csum_partial_copy|fault_in_readable|fault_in_iov|copy_folio|copy_page_from_iter|"
     r"copy_page_to_iter|^copy_splice_read"),
    ("emul", "tbf / ifb / veth / bridge, device layer",
     r"^tbf_|^ifb|^veth|^br_|^__br_|mirred|^tcf_|^__tcf_|^tc_|^__tc_|qdisc|^sch_|^pfifo|^fq_|"
     r"dev_queue_xmit|dev_hard_start_xmit|^netif_|^__netif|^napi|^__napi|net_rx_action|"
     r"process_backlog|enqueue_to_backlog|dev_forward_skb|^gro_|^dev_gro|^skb_gro|"
     r"^inet_gro|^tcp_gro|^tcp4_gro|^validate_xmit|^netdev_|^rps_|^eth_type_trans|^nf_|^nft_|"
     r"^ipt_|^ebt_"),
    ("tcp", "TCP/IP stack, sockets, loopback",
     r"^tcp|^__tcp|^ip_|^__ip|^ipv4|^inet|^__inet|^sock_|^__sock|^sk_|^__sk_|^skb_|^__skb|"
     r"^kfree_skb|^consume_skb|^__kfree_skb|alloc_skb|^release_sock|^lock_sock|"
     r"^__release_sock|^__sys_send|^__sys_recv|^__sys_connect|^__sys_accept|^__sys_shutdown|"
     r"^__sys_setsockopt|^sys_sendmsg|^__sys_sendmsg|^___sys_sendmsg|^sys_recvmsg|"
     r"^__sys_recvmsg|^neigh_|^dst_|^loopback_|^raw_|^udp|^__udp|^csum_|^__csum|^net_|"
     r"^__x64_sys_send|^__x64_sys_recv|^__x64_sys_connect|^__x64_sys_accept|^sockfd_|"
     r"^security_sock|^bpf_skops|^__cgroup_bpf|^tso_|^__tso"),
    ("mm", "page faults, mmap, munmap",
     r"exc_page_fault|handle_mm_fault|do_user_addr_fault|do_anonymous_page|^do_fault|"
     r"do_wp_page|do_munmap|do_vmi_munmap|do_mmap|mmap_region|vm_mmap|^unmap_|^zap_|^tlb_|"
     r"madvise|__mmput|exit_mmap|mprotect|^__x64_sys_brk|^do_brk|^__x64_sys_mmap|"
     r"^__x64_sys_munmap|^ksys_mmap|filemap_map_pages|^set_pte|^flush_tlb|^native_flush_tlb|"
     r"folio_zero_user|clear_huge_page|vma_alloc_folio|alloc_anon_folio|^do_huge_pmd"),
    ("loop", "libuv / epoll (event loop)",
     r"^uv_|^uv__|^ep_|epoll|^do_epoll|eventfd|timerfd|^__x64_sys_poll|^do_sys_poll|^do_poll|"
     r"^do_select|^__pollwait|^poll_"),
    ("sched", "scheduler, wake-ups, futex",
     r"schedule|finish_task_switch|pick_next|try_to_wake_up|^ttwu|enqueue_|dequeue_|"
     r"update_curr|update_load|^psi_|select_task_rq|wake_up|autoremove_wake|default_wake|"
     r"set_next_entity|put_prev|context_switch|switch_mm|__switch_to|^hrtimer|^tick_|"
     r"^sched_|futex|^__wake|^wake_q|^check_preempt|^resched|^update_rq|^reweight|"
     r"^nohz|^__update_idle|^pthread_cond|^pthread_mutex|___pthread_cond|"
     r"___pthread_mutex|__lll_lock|^take_gil|^drop_gil|^PyCOND|^PyMUTEX|^do_nanosleep|"
     r"^__x64_sys_nanosleep|^clock_nanosleep|^__x64_sys_clock_nanosleep"),
    ("fs", "page cache / filesystem (tmpfs), sendfile/splice",
     r"shmem|filemap|folio|page_cache|pagecache|generic_perform_write|generic_file|"
     r"fallocate|^ext4_|^xfs_|^iomap|truncate|^__fput|^do_sys_open|^do_filp_open|^path_|"
     r"link_path_walk|^d_alloc|^dput|^lookup_|splice|sendfile|mark_page_accessed|^lru_|"
     r"^__lru|workingset|find_lock_entries|^xas_|^xa_|^mapping_|touch_atime|fsnotify|"
     r"^vfs_fsync|^vfs_unlink|^vfs_rename|statx|__mark_inode_dirty|^file_|^generic_write|"
     r"^simple_|^inode_|^iput|^evict|^do_unlinkat|^do_renameat|^filp_|^vfs_fallocate|"
     r"^page_cache_|^release_pages|^delete_from_page|^do_truncate|^__do_sys_(?:open|close|"
     r"stat|fstat|newfstat|unlink|rename)|^__x64_sys_(?:openat|close|newfstat|fstat|statx|"
     r"unlink|rename|fallocate|ftruncate|pread64|pwrite64|fsync|fdatasync)|^do_iter_write|"
     r"^do_iter_read|^vfs_iter"),
    ("py", "Python interpreter (host clients)",
     r"^_?Py|^_PyEval|^PyEval|^_Py|^Py_|^PyObject|^list_|^dict_|^long_|^bytes_|^unicode_|"
     r"^method_|^cfunction_|^slot_|^object_|^type_|^frame_|^builtin_|^sock_recv_into|"
     r"^_buffered|^buffered_|^_io_|^bufferedreader"),
    ("sys", "syscall and interrupt entry / exit",
     r"entry_SYSCALL|do_syscall_64|syscall_exit|syscall_return|exit_to_user_mode|"
     r"x64_sys_call|^__fdget|^fput$|^fdget|^__fget|syscall_enter|^audit|seccomp|"
     r"^irqentry|^__irqentry|^pvm_(?:user|kernel)_event|^pvm_syscall|^pvm_.*entry|"
     r"^error_entry|^restore_regs|^asm_exc|^asm_common|^common_interrupt|^__sysvec|^sysvec_"),
]
# Frames without a symbol (stripped libraries) get their category from the
# library they are in.
DSO_CATEGORIES = [("hash", re.compile(r"^libcrypto|^libxxhash|^libssl")),
                  ("loop", re.compile(r"^libuv")),
                  ("py", re.compile(r"^python3|^libpython"))]
CAT_LABEL = dict((k, label) for k, label, _ in CATEGORIES)
CAT_LABEL.update({"other_k": "other kernel", "other_u": "other user code", "idle": "idle"})
# Report order.
CAT_ORDER = ["hash", "copy", "tcp", "emul", "fs", "loop", "sched", "mm", "sys", "py", "other_k",
             "other_u"]
_CAT_RE = [(k, re.compile(rx)) for k, _, rx in CATEGORIES]

# Frames whose time belongs to their caller: interrupt re-enabling (on this
# hypervisor a cpu-clock sample taken with interrupts off lands on the
# instruction that turns them on again), locks, preemption points, generic
# allocators and refcounts, and unresolved frames.
TRANSPARENT = re.compile(
    r"^\[unknown\]$|irq_enable|irq_restore|irqrestore|^__raw_callee_save|^_raw_spin|"
    r"^_raw_read|^_raw_write|^queued_spin|^queued_read|^queued_write|^native_queued|"
    r"^__pv_queued|^pv_wait|^pv_kick|^__local_bh_enable|^local_bh_enable|^__do_softirq|"
    r"^handle_softirqs|^do_softirq|^irq_exit|^__irq_exit|^preempt_count|^__rcu_read|"
    r"^rcu_read|^kmem_cache_|^kmalloc|^__kmalloc|^kfree|^kvfree|^kvmalloc|^__kvmalloc|"
    r"slab|^__kmem|^alloc_pages|^__alloc_pages|^get_page_from_freelist|^rmqueue|"
    r"^free_pages|^free_unref|^__free_pages|^free_pcppages|^__free_one_page|^clear_page|"
    r"^memcg|^mem_cgroup|^__mem_cgroup|^__mod_memcg|^mod_memcg|^page_counter|^try_charge|"
    r"^obj_cgroup|^refill_obj|^__refill_stock|^__mod_lruvec|^mod_lruvec|^__count_memcg|"
    r"^__mod_node_page|^__mod_zone|^pcpu_|^__percpu|^percpu_|^refcount|^__refcount|"
    r"^get_random|^ktime_get|^read_tsc|^pvclock|^kvm_clock|^lock_timer|^mutex_|"
    r"^__mutex|^down_|^up_|^rwsem|^__might|^might_|^__cond_resched|^_cond_resched|"
    r"^__x86_return_thunk|^__x86_indirect|^srso_|^entry_untrain|^retbleed|^__fentry|"
    r"^__virt_addr_valid|^check_heap_object|^__check_object_size|^check_stack_object|"
    r"^__check_heap_object|^strnlen|^strlen|^__strlen|^_int_malloc|^_int_free|^malloc$|"
    r"^free$|^cfree|^__libc_malloc|^__libc_free|^malloc_consolidate|^unlink_chunk|"
    r"^tcache_|^__GI___libc_malloc|^__GI___libc_free|^PyMem_|^_PyMem|^PyObject_Malloc|"
    r"^PyObject_Free|^_PyObject_Malloc|^_PyObject_Free|^pymalloc|^_PyObject_GC_")
IDLE = re.compile(r"halt|default_idle|cpu_idle|do_idle|mwait|intel_idle|acpi_idle|poll_idle|"
                  r"cpuidle|^pvm_safe_halt")
KERNEL_THREADS = re.compile(r"^(ksoftirqd|kworker|migration|rcu_|kcompactd|kswapd|khugepaged|"
                            r"watchdog|cpuhp|irq/|kthreadd|oom_reaper|writeback|jbd2|"
                            r"kauditd|khungtaskd|ksmd)")


class Recorder:
    """perf record -a -g over a run: start() before the clients are started,
    stop() after the last one is done, analyze() after."""

    def __init__(self, path, freq=997):
        self.path = path
        self.freq = freq
        self.proc = None
        self.pids = {}  # pid -> group
        self.offset = None  # time.time() - time.monotonic()
        self.error = None

    def start(self):
        self.log = open(self.path + ".log", "w")
        # CLOCK_MONOTONIC timestamps, so the run's window can be cut out.
        self.offset = time.time() - time.monotonic()
        self.proc = subprocess.Popen([PERF, "record", "-a", "-g", "-e", "cpu-clock", "-F",
                                      str(self.freq), "-k", "CLOCK_MONOTONIC", "--no-buildid",
                                      "--no-buildid-cache", "-o", self.path],
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.t_start = time.time()

    def label(self, group, proc):
        self.pids[proc.pid] = group

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def analyze(self, run, size, title, keep=False):
        """Writes the Markdown report next to the recording; returns its path.
        The recording is removed unless keep; what `perfprof.py report` needs
        to read it again goes into run["perf"]."""
        out = self.path[:-len(".data")] + ".md" if self.path.endswith(".data") else \
            self.path + ".md"
        t0, t1 = run["cpu_window"]
        hosts = sum(1 for t in run["complete"].values() if t)
        groups = collections.defaultdict(list)
        for pid, group in sorted(self.pids.items()):
            groups[group].append(str(pid))
        run["perf"] = {"data": os.path.basename(self.path) if keep else None,
                       "t0_mono": t0 - self.offset, "t1_mono": t1 - self.offset,
                       "bytes": hosts * size, "freq": self.freq,
                       "pids": ["%s=%s" % (g, ",".join(p)) for g, p in sorted(groups.items())]}
        try:
            if self.proc is None or self.proc.returncode not in (0, -signal.SIGINT, 130):
                raise RuntimeError("perf record exited %s: %s" % (
                    self.proc and self.proc.returncode, _tail(self.path + ".log")))
            samples = read_samples(self.path, t0 - self.offset, t1 - self.offset)
            text = markdown(title, summarize(samples, self.pids), hosts * size, t1 - t0,
                            self.freq, "recorded from %.2f s before T0" % (t0 - self.t_start))
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            text = "# Where the cycles go: %s\n\nprofile failed: %s\n" % (title, e)
        with open(out, "w") as f:
            f.write(text)
        if not keep:
            for p in (self.path, self.path + ".log", self.path + ".old"):
                if os.path.exists(p):
                    os.unlink(p)
        return out


def _tail(path, n=10):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:]).strip()
    except OSError:
        return "(no log)"


def read_samples(path, t0, t1):
    """Yields (pid, comm, period_ns, [(symbol, dso, is_kernel), ...] leaf
    first) for every sample with t0 <= time <= t1 (CLOCK_MONOTONIC)."""
    err_file = tempfile.TemporaryFile(mode="w+")  # warnings must not block the pipe
    p = subprocess.Popen([PERF, "script", "-i", path, "-F", "comm,pid,tid,time,period,ip,sym,dso",
                          "--no-inline"], stdout=subprocess.PIPE, stderr=err_file,
                         text=True, errors="replace")
    head, frames = None, []
    hdr = re.compile(r"^(.*?)\s+(\d+)/(\d+)\s+(\d+\.\d+):\s+(\d+)")
    frm = re.compile(r"^\s+([0-9a-f]+)\s+(.*?)\s+\((.*)\)\s*$")

    def flush():
        if head and t0 <= head[2] <= t1:
            return (head[0], head[1], head[3], frames)
        return None

    for line in p.stdout:
        if not line.strip():
            continue
        if not line[0].isspace():
            s = flush()
            if s:
                yield s
            m = hdr.match(line)
            head = (int(m.group(2)), m.group(1).strip(), float(m.group(4)), int(m.group(5))) \
                if m else None
            frames = []
            continue
        m = frm.match(line)
        if m:
            addr, sym, dso = m.groups()
            sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
            kernel = dso.startswith("[kernel") or len(addr) == 16 and addr.startswith("ffff")
            frames.append((sym, os.path.basename(dso), kernel))
    s = flush()
    if s:
        yield s
    status = p.wait()
    err_file.seek(0)
    err = err_file.read()
    err_file.close()
    if status != 0:
        raise RuntimeError("perf script failed: %s" % err[-500:])


def classify(frames, comm):
    """(category, the frame that decided it) of one sample."""
    first = None
    for sym, dso, kernel in frames:
        if sym == "[unknown]" and not kernel and dso not in ("[unknown]", ""):
            for key, rx in DSO_CATEGORIES:
                if rx.search(dso):
                    return key, (sym, dso, kernel)
            return "other_u", (sym, dso, kernel)
        if TRANSPARENT.search(sym):
            continue
        if first is None:
            first = (sym, dso, kernel)
            if comm == "swapper" and IDLE.search(sym):
                return "idle", first
        for key, rx in _CAT_RE:
            if rx.search(sym):
                return key, (sym, dso, kernel)
        if not kernel:
            return "other_u", (sym, dso, kernel)
    if first is None and frames:
        first = frames[0]
    if first is None:
        return "other_k", ("[no frames]", "", True)
    return ("other_k" if first[2] else "other_u"), first


def group_of(pid, comm, pids):
    if pid in pids:
        return pids[pid]
    if comm == "swapper" or pid == 0:
        return "kernel: interrupts on idle CPUs"
    if KERNEL_THREADS.match(comm):
        return "kernel threads (softirq, workers)"
    if comm.startswith("perf"):
        return "perf"
    return "other processes"


OUTSIDE = ("other processes", "perf")


def summarize(samples, pids):
    """Sums sample periods (ns) by group, category, user/kernel and symbol."""
    tot = collections.Counter()
    by_cat = collections.Counter()  # (cat, kernel) -> ns, benchmark only
    by_group = collections.defaultdict(collections.Counter)  # group -> cat -> ns
    by_sym = collections.defaultdict(collections.Counter)  # cat -> "sym (dso)" -> ns
    n = 0
    for pid, comm, period, frames in samples:
        n += 1
        cat, (sym, dso, kernel) = classify(frames, comm)
        group = group_of(pid, comm, pids)
        if cat == "idle":
            tot["idle"] += period
            continue
        tot["busy"] += period
        if group in OUTSIDE:
            tot[group] += period
            continue
        leaf_kernel = frames[0][2] if frames else True
        by_cat[(cat, leaf_kernel)] += period
        by_group[group][cat] += period
        by_sym[cat]["%s (%s)" % (sym, dso or "?")] += period
    return {"samples": n, "totals": tot, "by_cat": by_cat, "by_group": by_group,
            "by_sym": by_sym}


def markdown(title, s, delivered, window_s, freq, note):
    gb = delivered / 1e9
    tot = s["totals"]
    bench_ns = sum(s["by_cat"].values())

    def per_gb(ns):
        return "%.2f" % (ns / 1e9 / gb) if gb else "-"

    def share(ns):
        return "%.1f%%" % (100.0 * ns / bench_ns) if bench_ns else "-"

    out = ["# Where the cycles go: %s" % title, "",
           "- `perf record -a -g -e cpu-clock -F %d` (no hardware counters on this machine), "
           "%s; samples from T0 to the last host done: %.2f s, %d samples" % (
               freq, note, window_s, s["samples"]),
           "- delivered in that window: %.3f GB (hosts done x workload)" % gb,
           "- whole machine in the window: %.2f CPU-s busy, %.2f idle; of the busy time "
           "%.2f CPU-s belong to processes outside the benchmark and %.2f to perf itself, "
           "left out below" % (tot["busy"] / 1e9, tot["idle"] / 1e9,
                               tot["other processes"] / 1e9, tot["perf"] / 1e9),
           "- the benchmark: %.2f CPU-s, **%s CPU-s per GB delivered**" % (
               bench_ns / 1e9, per_gb(bench_ns)), "",
           "## By category", "",
           "A sample counts as kernel when its leaf frame is in the kernel.", "",
           "| category | user CPU-s/GB | kernel CPU-s/GB | total CPU-s/GB | share |",
           "|---|---:|---:|---:|---:|"]
    for cat in CAT_ORDER:
        u, k = s["by_cat"][(cat, False)], s["by_cat"][(cat, True)]
        if u + k:
            out.append("| %s | %s | %s | %s | %s |" % (CAT_LABEL[cat], per_gb(u), per_gb(k),
                                                        per_gb(u + k), share(u + k)))
    u = sum(v for (c, kern), v in s["by_cat"].items() if not kern)
    out.append("| **all** | %s | %s | %s | 100%% |" % (per_gb(u), per_gb(bench_ns - u),
                                                       per_gb(bench_ns)))
    cats = [c for c in CAT_ORDER if any(g[c] for g in s["by_group"].values())]
    out += ["", "## By process group (CPU-s per GB delivered)", "",
            "| group | total | " + " | ".join(CAT_LABEL[c].split(" (")[0] for c in cats) + " |",
            "|---|---:|" + "---:|" * len(cats)]
    for group, cnt in sorted(s["by_group"].items(), key=lambda kv: -sum(kv[1].values())):
        out.append("| %s | %s | %s |" % (group, per_gb(sum(cnt.values())),
                                         " | ".join(per_gb(cnt[c]) for c in cats)))
    out += ["", "## Top symbols per category", "",
            "The frame that decided each sample's category (for \"other\", the first "
            "frame that is not a lock, allocator or interrupt re-enable).", ""]
    for cat in CAT_ORDER:
        syms = s["by_sym"].get(cat)
        if not syms:
            continue
        out.append("- **%s**: %s" % (CAT_LABEL[cat], ", ".join(
            "%s %s" % (sym, share(ns)) for sym, ns in syms.most_common(8))))
    out.append("")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(prog="perfprof.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("report")
    r.add_argument("data")
    r.add_argument("--t0", type=float, default=0.0, help="window start, CLOCK_MONOTONIC s")
    r.add_argument("--t1", type=float, default=float("inf"), help="window end")
    r.add_argument("--bytes", type=int, required=True, help="bytes delivered in the window")
    r.add_argument("--pids", action="append", default=[], help="GROUP=PID,PID,...")
    r.add_argument("--freq", type=int, default=997)
    a = p.parse_args(argv)
    pids = {}
    for spec in a.pids:
        group, _, lst = spec.partition("=")
        pids.update((int(x), group) for x in lst.split(",") if x)
    s = summarize(read_samples(a.data, a.t0, a.t1), pids)
    print(markdown(os.path.basename(a.data), s, a.bytes,
                   (a.t1 - a.t0) if a.t1 != float("inf") else 0, a.freq, "standalone"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
