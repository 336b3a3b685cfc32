"""Smoke runs of bench/cluster-bench, so the harness does not rot: a tiny
emulated cluster (3 agent hosts, 16 MiB, shoal and direct), pull mode (a
client per host pulling the model and the image through its agent), the
loopback fallback, clean-up on Ctrl-C, a tracker option the tracker refuses,
and the perf breakdown's classifier.
Timings are never asserted; what is checked is that every host got the
verified bytes, that shoal took about one copy from upstream, that the
measurements (first byte, received-bytes curves, CPU per GB) are there and
consistent, and that nothing is left behind."""

import json
import os
import re
import signal
import subprocess
import sys
import time

from conftest import REPO_ROOT, bin_dir, by_design, need_root, need_tool, under_asan

BENCH = os.path.join(REPO_ROOT, "bench", "cluster-bench")
PREFIX = "shoalbench"

pytestmark = by_design(under_asan(), "the benchmark smoke runs once, against the normal build")


def namespaces():
    out = subprocess.run([need_tool("ip"), "netns", "list"], capture_output=True,
                         text=True).stdout
    return [ln.split()[0] for ln in out.splitlines() if ln.startswith(PREFIX)]


def run_bench(tmp_path, *args, timeout=300, systems="shoal,direct", mode="prewarm"):
    env = dict(os.environ, SHOAL_BIN_DIR=bin_dir())
    p = subprocess.run([BENCH, "--hosts", "3", "--size", "16MiB", "--systems", systems,
                        "--mode", mode, "--out-dir", str(tmp_path)] + list(args),
                       capture_output=True, text=True, timeout=timeout, env=env)
    jsons = sorted(f for f in os.listdir(tmp_path) if f.endswith(".json"))
    return p, (json.load(open(os.path.join(tmp_path, jsons[-1]))) if jsons else None)


def check_runs(p, res):
    assert p.returncode == 0, "cluster-bench failed:\n%s\n%s" % (p.stdout[-3000:],
                                                                  p.stderr[-3000:])
    assert res is not None, p.stderr
    runs = {r["system"]: r["run"] for r in res["runs"]}
    assert set(runs) == {"shoal", "direct"}, runs.keys()
    for name, run in runs.items():
        assert run["errors"] == {}, (name, run["errors"])
        assert sorted(run["complete"]) == ["h1", "h2", "h3"], (name, run["complete"])
        assert all(t and t > run["start"] for t in run["complete"].values()), (name, run)
    size = 16 << 20
    # One upstream copy for shoal (plus manifest, config and HTTP overhead),
    # one per host for direct pulls.
    shoal_up = runs["shoal"]["upstream_payload"] or runs["shoal"]["upstream_bytes_own"]
    assert size <= shoal_up <= 1.1 * size, runs["shoal"]
    direct_up = runs["direct"]["upstream_payload"] or runs["direct"]["upstream_bytes_own"]
    assert 2.9 * size <= direct_up <= 3.2 * size, runs["direct"]
    return runs


def test_smoke_emulated_cluster(tmp_path):
    p, res = run_bench(tmp_path)
    runs = check_runs(p, res)
    md = [f for f in os.listdir(tmp_path) if f.endswith(".md")]
    png = [f for f in os.listdir(tmp_path) if f.endswith(".png")]
    assert len(md) == 1 and len(png) == 1, os.listdir(tmp_path)
    text = open(os.path.join(tmp_path, md[0])).read()
    assert "T_min" in text and "| shoal | 3/3 |" in text and "| direct | 3/3 |" in text, text
    with open(os.path.join(tmp_path, png[0]), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    if res["meta"]["emulated"]:
        assert runs["shoal"]["upstream_payload"] is not None  # measured on the wire
        assert "LOOPBACK" not in text
    else:
        assert "Loopback fallback" in text
    assert namespaces() == [], "namespaces left behind: %s" % namespaces()


def test_smoke_loopback_fallback(tmp_path):
    p, res = run_bench(tmp_path, "--loopback")
    check_runs(p, res)
    assert res["meta"]["emulated"] is False
    assert "LOOPBACK FALLBACK" in p.stderr, p.stderr
    text = open(os.path.join(tmp_path, [f for f in os.listdir(tmp_path)
                                        if f.endswith(".md")][0])).read()
    assert "Loopback fallback" in text, text


def work_dirs():
    return {f for f in os.listdir("/dev/shm") if f.startswith("shoalbench-")}


def test_interrupt_cleans_up(tmp_path):
    need_root("network namespaces")
    env = dict(os.environ, SHOAL_BIN_DIR=bin_dir())
    # One an earlier run kept on purpose (--keep) is not this run's.
    kept = work_dirs()
    p = subprocess.Popen([BENCH, "--hosts", "3", "--size", "64MiB", "--systems", "direct",
                          "--rate", "50mbit", "--out-dir", str(tmp_path)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.time() + 60
        # Wait until the cluster exists and the pulls are under way.
        while time.time() < deadline and len(namespaces()) < 6:
            time.sleep(0.1)
        assert len(namespaces()) >= 6, "cluster never came up"
        time.sleep(3)
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, out[-2000:]
    assert "cleaning up" in out, out[-2000:]
    assert namespaces() == [], "namespaces left behind: %s" % namespaces()
    assert work_dirs() <= kept, "work dirs left behind: %s" % (work_dirs() - kept)


def test_smoke_pull_mode(tmp_path):
    """Pull mode, both workloads: every host's client pulls through its own
    agent, containerd's way, and reports first byte, curve and CPU. The
    tracker runs with XXH3-128 piece hashes (--tracker-config), so the
    swarm's other piece hash is exercised end to end too."""
    p, res = run_bench(tmp_path, "--workload", "both", "--agent-config", "swarm-reader-window=4",
                       "--tracker-config", "hash-algo=xxh3-128", systems="shoal", mode="pull")
    assert p.returncode == 0, "cluster-bench failed:\n%s\n%s" % (p.stdout[-3000:],
                                                                  p.stderr[-3000:])
    runs = {(r["workload"], r["system"]): r["run"] for r in res["runs"]}
    assert set(runs) == {("model", "shoal-pull"), ("image", "shoal-pull")}, runs.keys()
    blobs = {"model": 2, "image": 31}  # config + weight; config + 30 layers
    size = 16 << 20
    for (kind, _), run in runs.items():
        assert run["errors"] == {}, (kind, run["errors"])
        assert sorted(run["clients"]) == ["h1", "h2", "h3"], run["clients"].keys()
        for host, c in run["clients"].items():
            done = run["complete"][host]
            assert done and done > run["start"], (kind, host, run)
            assert c["blobs"] == blobs[kind] and len(c["blob_times"]) == blobs[kind], c
            # containerd's order: the config and the first two layers first.
            first3 = sorted(b[0] for b in c["blob_times"][:3])
            assert first3 == list(range(min(3, blobs[kind]))), c["blob_times"]
            assert sorted(b[0] for b in c["blob_times"]) == list(range(blobs[kind]))
            for i, _, n, req, first, end in c["blob_times"]:
                assert 0 <= req <= end and n > 0 and (first is None or req <= first <= end)
            assert run["start"] < c["first_byte"] <= done, c
            curve = c["curve"]
            assert curve[0] == [0.0, 0] and curve[-1][1] == c["bytes"], curve
            assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in zip(curve, curve[1:]))
            assert c["bytes"] >= size and c["cpu_s"] > 0, c
        cpu = run["cpu"]
        assert set(cpu) >= {"agents", "clients", "tracker", "registry", "machine"}, cpu
        assert all(v is not None and v >= 0 for v in cpu.values()), cpu
        assert cpu["machine"] > 0 and cpu["agents"] > 0, cpu
        # The machine's busy share and (on the emulated network, where the
        # upstream host has an interface to count) the upstream's sent
        # bytes, from T0.
        up, busy = run["upstream_curve"], run["busy_curve"]
        assert busy and all(t >= 0 and 0 <= b <= 100 for t, b in busy), busy
        if res["meta"]["emulated"]:
            assert up and up[0][0] >= 0 and up[-1][1] > 0, up
            assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in zip(up, up[1:])), up
    # One upstream copy of the model (plus manifest and HTTP overhead).
    model = runs[("model", "shoal-pull")]
    up = model["upstream_payload"] or model["upstream_bytes_own"]
    assert size <= up <= 1.1 * size, model
    md = [f for f in os.listdir(tmp_path) if f.endswith(".md")]
    text = open(os.path.join(tmp_path, md[0])).read()
    assert text.count("| shoal-pull | 3/3 |") == 2, text  # the timing table, per workload
    assert len(re.findall(r"^\| shoal-pull \| \d+\.\d\d \|", text, re.M)) == 2, text  # CPU
    assert "CPU seconds per GB delivered" in text and "## Targets" in text, text
    assert len(re.findall(r"^- shoal-pull: machine under 90% busy for \d+\.\d s of the "
                          r"\d+\.\d s to the last host \(\d+\.\d s of them after", text,
                          re.M)) == 2, text
    assert "- extra agent config: `swarm-reader-window=4`" in text, text
    assert "- extra tracker config: `hash-algo=xxh3-128`" in text, text
    assert namespaces() == [], "namespaces left behind: %s" % namespaces()


def test_bad_tracker_option_is_reported(tmp_path):
    """An option the tracker refuses fails the run with the tracker's own
    message in the report, and a run in which no host finished passes no
    target (no upstream copy was measured, not a good one)."""
    p, res = run_bench(tmp_path, "--tracker-config", "no-such-option=1", "--size", "4MiB",
                       systems="shoal", mode="pull")
    assert res is not None, p.stderr
    md = [f for f in os.listdir(tmp_path) if f.endswith(".md")]
    text = open(os.path.join(tmp_path, md[0])).read()
    assert "setup failed" in text and 'unknown flag "--no-such-option"' in text, text
    assert "| shoal-pull | 0/3 |" in text, text
    assert re.search(r"^\| model, shoal-pull: upstream bytes / F \| - \| <= 1.020 \| n/a \|$",
                     text, re.M), text
    assert namespaces() == [], "namespaces left behind: %s" % namespaces()


def test_perf_breakdown_classifies_samples():
    """The profile's classifier: interrupt re-enables and locks give their
    time to the caller, symbol-less frames go by library, idle is left out,
    other machines' processes are reported apart, and the per-GB numbers add
    up."""
    sys.path.insert(0, os.path.join(REPO_ROOT, "bench"))
    from clusterbench import perfprof

    def k(sym):
        return (sym, "[kernel.kallsyms]", True)

    ms = 1000000  # 1 ms of CPU per sample
    samples = [
        (10, "shoal-agent", ms, [("[unknown]", "libcrypto.so.3", False)]),
        (10, "shoal-agent", ms, [k("pvm_irq_enable"), k("_raw_spin_unlock_irqrestore"),
                                 k("tbf_dequeue"), k("__qdisc_run")]),
        (10, "shoal-agent", ms, [k("_copy_to_iter"), k("tcp_recvmsg")]),
        (11, "python3", ms, [k("kmem_cache_alloc_node"), k("__alloc_skb"),
                             k("tcp_sendmsg_locked")]),
        (11, "python3", ms, [("_PyEval_EvalFrameDefault", "python3.11", False)]),
        (12, "shoal-agent", ms, [("swarm_pick", "shoal-agent", False), ("uv_run", "libuv.so.1",
                                                                         False)]),
        (0, "swapper", ms, [k("pvm_safe_halt_hc"), k("default_idle"), k("do_idle")]),
        (0, "swapper", ms, [k("net_rx_action"), k("handle_softirqs"), k("do_idle")]),
        (99, "cc1", 5 * ms, [("[unknown]", "cc1", False)]),
    ]
    s = perfprof.summarize(iter(samples), {10: "agents", 11: "clients", 12: "agents"})
    cats = {c: v for (c, _), v in s["by_cat"].items()}
    assert cats == {"hash": ms, "emul": 2 * ms, "copy": ms, "tcp": ms, "py": ms,
                    "other_u": ms}, cats
    assert s["by_group"]["agents"]["other_u"] == ms  # agent code, not the loop
    assert s["by_group"]["kernel: interrupts on idle CPUs"]["emul"] == ms
    assert s["totals"]["idle"] == ms and s["totals"]["other processes"] == 5 * ms
    text = perfprof.markdown("test", s, 10**9 // 1000, 1.0, 997, "test")
    # 7 ms of benchmark CPU over 1 MB delivered = 7 CPU-s per GB.
    assert "**7.00 CPU-s per GB delivered**" in text, text
    assert "| hashing (SHA-256, SHA-1, XXH3) | 1.00 | 0.00 | 1.00 | 14.3% |" in text, text
