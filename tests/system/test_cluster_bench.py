"""Smoke runs of bench/cluster-bench, so the harness does not rot: a tiny
emulated cluster (3 agent hosts, 16 MiB, shoal and direct), the loopback
fallback, and clean-up on Ctrl-C. Timings are never asserted; what is
checked is that every host got the verified bytes, that shoal took about one
copy from upstream, and that nothing is left behind."""

import json
import os
import signal
import subprocess
import time

from conftest import REPO_ROOT, bin_dir, by_design, need_root, need_tool, under_asan

BENCH = os.path.join(REPO_ROOT, "bench", "cluster-bench")
PREFIX = "shoalbench"

pytestmark = by_design(under_asan(), "the benchmark smoke runs once, against the normal build")


def namespaces():
    out = subprocess.run([need_tool("ip"), "netns", "list"], capture_output=True,
                         text=True).stdout
    return [ln.split()[0] for ln in out.splitlines() if ln.startswith(PREFIX)]


def run_bench(tmp_path, *args, timeout=300):
    env = dict(os.environ, SHOAL_BIN_DIR=bin_dir())
    p = subprocess.run([BENCH, "--hosts", "3", "--size", "16MiB", "--systems", "shoal,direct",
                        "--out-dir", str(tmp_path)] + list(args),
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


def test_interrupt_cleans_up(tmp_path):
    need_root("network namespaces")
    env = dict(os.environ, SHOAL_BIN_DIR=bin_dir())
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
    assert not [f for f in os.listdir("/dev/shm") if f.startswith("shoalbench-")]
