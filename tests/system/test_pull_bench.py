"""Smoke runs of bench/pull-bench.sh (`make bench`), so the harness does not
rot: a small blob through every system, the --compare mode that measures a
second agent build in the same rounds, and what happens when that build is
missing or does not start. Timings are never asserted; what is checked is
that every system was measured, that the report has every row and the
comparison its numbers, and that a broken build is reported, not hidden."""

import os
import re
import shutil
import stat
import subprocess

from conftest import REPO_ROOT, agent_bin, bin_dir, by_design, under_asan

BENCH = os.path.join(REPO_ROOT, "bench", "pull-bench.sh")

pytestmark = by_design(under_asan(), "the benchmark smoke runs once, against the normal build")


def run_bench(tmp_path, *args, timeout=240):
    out = tmp_path / "out"
    env = dict(os.environ, SHOAL_BIN_DIR=bin_dir())
    p = subprocess.run([BENCH, "--size-mib", "8", "--reps", "1", "--out-dir", str(out)]
                       + list(args), capture_output=True, text=True, timeout=timeout, env=env)
    reports = sorted(out.glob("pull-bench-*.md")) if out.exists() else []
    return p, (reports[-1].read_text() if reports else None)


def table_row(report, label):
    m = re.search(r"^\| %s \|(.*)\|$" % re.escape(label), report, re.M)
    assert m, "no row %r in the report:\n%s" % (label, report)
    return [c.strip() for c in m.group(1).split("|")]


def other_build(tmp_path, script=None):
    d = tmp_path / "other-build"
    d.mkdir()
    dst = d / "shoal-agent"
    if script is None:
        shutil.copy(agent_bin(), dst)
    else:
        dst.write_text(script)
        dst.chmod(dst.stat().st_mode | stat.S_IXUSR)
    return d


def test_smoke_with_compare(tmp_path):
    other = other_build(tmp_path)
    p, report = run_bench(tmp_path, "--compare", str(other))
    assert p.returncode == 0, p.stderr[-3000:]
    assert report is not None and report == p.stdout
    for label in ("direct (docker-registry)", "shoal cold (fresh agent)",
                  "shoal warm (from cache)", "shoal cold, --compare build",
                  "shoal warm, --compare build", "registry proxy cold", "registry proxy warm"):
        median, lo, hi = (float(x) for x in table_row(report, label)[:3])
        assert 0 < lo <= median <= hi, (label, median, lo, hi)
    assert table_row(report, "--compare agent")[0].startswith(str(other / "shoal-agent"))
    assert table_row(report, "--compare agent")[0].endswith(", ok")
    for label in ("cold pull s", "cold pull, first byte s", "warm pull s",
                  "agent CPU s per cold GiB", "agent CPU s per warm GiB",
                  "whole machine CPU s per cold GiB", "peak RSS MiB (max over rounds)"):
        this, cmp, ratio = table_row(report, label)
        assert float(this) >= 0 and float(cmp) >= 0, (label, this, cmp)
        # n/a only where the other build's median is 0 (a warm pull's CPU can
        # round to 0.00 on a blob this small).
        assert re.fullmatch(r"\d+\.\d{3}x", ratio) or (ratio == "n/a" and float(cmp) == 0), \
            (label, ratio)
    assert re.fullmatch(r"\d+\.\d{3}x", table_row(report, "cold pull s")[2])
    m = re.search(r"faster with this build in (\d+) of (\d+) rounds", report)
    assert m and int(m.group(2)) == 1 and int(m.group(1)) <= 1, report
    # The targets are this build's alone, as without --compare.
    assert table_row(report, "agent peak RSS (max over reps)")[2] in ("PASS", "MISS")


def test_compare_dir_without_an_agent(tmp_path):
    p, report = run_bench(tmp_path, "--compare", str(tmp_path))
    assert p.returncode == 1
    assert "--compare %s: no executable shoal-agent in it" % tmp_path in p.stderr
    assert report is None


def test_compare_build_that_does_not_start(tmp_path):
    other = other_build(tmp_path, "#!/bin/sh\necho 'this build is broken' >&2\nexit 3\n")
    p, report = run_bench(tmp_path, "--compare", str(other))
    # The run goes on with this build and the registries, reports them, and
    # says (and exits 1 because) the other build was not measured.
    assert p.returncode == 1, p.stderr[-3000:]
    assert "incomplete: shoal-agent (--compare)" in p.stderr
    assert "this build is broken" in p.stderr
    assert report is not None
    assert "did not become healthy" in table_row(report, "--compare agent")[0]
    median = float(table_row(report, "shoal cold (fresh agent)")[0])
    assert median > 0
    assert table_row(report, "shoal cold, --compare build")[0] == "n/a"
    assert table_row(report, "cold pull s")[1:] == ["-", "n/a"]
    assert table_row(report, "peak RSS MiB (max over rounds)")[1:] == ["-", "n/a"]
