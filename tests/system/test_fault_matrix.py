"""The fault matrix (issue 10): one row per fault, each run against real
agents, a real tracker and the test's registry (faultyregistry.py), with
figures. For every row: every client gets the right digest or a clear
error, zero wrong bytes in complete full GETs and in Range answers, and the
upstream bytes are measured.

Rows: 25% of the agents killed mid-transfer; the tracker killed; a member
forging pieces with XXH3-128 collisions (under SHA-256 and under XXH3-128
piece hashes); a stranger without the cluster secret; the upstream
answering 429, 5xx and resetting mid-body; the disk filling under a
download; kill -9 and restart.

The table goes to stdout (pytest -s shows it) and, as JSON, to
fault-matrix.json in the test's tmp dir. Blobs are 32 MiB, 3-4 agents a row.

Every process runs on 127.0.0.1 on ports picked by binding port 0 and is
stopped by PID.
"""

import json
import os
import socket
import threading
import time

import pytest

import faultcheck
import swarmpeer
from conftest import metric, tail, wait_for
from faultcheck import RangeProbe, full_ok
from faultyregistry import blob_bytes, faulty_registry  # noqa: F401
from test_disk_full import tmpfs_mount  # noqa: F401
from test_swarm import SECRET, secret_file, swarm_agents, tracker_factory  # noqa: F401

MIB = 1 << 20
SIZE = 32 * MIB
COLUMNS = [("fault", 34), ("clients", 7), ("ok 1st", 6), ("ok retry", 8), ("errors", 6),
           ("wrong complete", 14), ("wrong cut", 9), ("ranges ok/all", 13),
           ("upstream x", 10), ("secs", 5), ("culprit", 22)]


class Row:
    def __init__(self, fault):
        self.fault = fault
        self.t0 = time.monotonic()
        self.clients = 0
        self.ok_first = 0
        self.ok_retry = 0
        self.errors = []        # clear errors clients got (expected ones)
        self.wrong_complete = 0  # wrong bytes in complete answers: must stay 0
        self.wrong_cut = 0       # wrong bytes in answers the agent cut
        self.ranges = 0
        self.ranges_ok = 0
        self.upstream = 0.0
        self.secs = 0.0
        self.culprit = "-"
        self.problems = []

    def pulls(self, tries_list, may_fail=()):
        """Counts the clients' attempts (faultcheck.pull lists). Clients
        listed in may_fail (their agent was killed) may end in an error."""
        for i, tries in enumerate(tries_list):
            self.clients += 1
            for t in tries:
                if t["complete"] and t["status"] in (200, 206):
                    self.wrong_complete += t["wrong"]
                else:
                    self.wrong_cut += t["wrong"]
            last = tries[-1] if tries else None
            if last and last["status"] == 200 and last["complete"] and last["wrong"] == 0:
                if len(tries) == 1:
                    self.ok_first += 1
                else:
                    self.ok_retry += 1
                    self.errors.append(tries[0]["error"] or "status %s" % tries[0]["status"])
            elif i in may_fail:
                self.errors.append((last or {}).get("error") or "no answer")
            else:
                self.problems.append("client %d failed: %s" % (i, [
                    (t["status"], t["bytes"], t["error"]) for t in tries]))

    def probes(self, probes):
        for p in probes:
            for r in p.results:
                self.ranges += 1
                if r["status"] == 206 and r["complete"]:
                    self.ranges_ok += 1
                    self.wrong_complete += r["wrong"]
                else:
                    self.wrong_cut += r["wrong"]
                    if r["wrong"]:
                        self.problems.append("a cut Range answer carried %d wrong bytes"
                                             % r["wrong"])

    def done(self, reg, digest):
        self.upstream = reg.bytes_served(digest) / float(SIZE)
        self.secs = time.monotonic() - self.t0
        if self.wrong_complete:
            self.problems.append("%d wrong bytes in complete answers" % self.wrong_complete)
        return self

    def cells(self):
        return [self.fault, self.clients, self.ok_first, self.ok_retry, len(self.errors),
                self.wrong_complete, self.wrong_cut, "%d/%d" % (self.ranges_ok, self.ranges),
                "%.2f" % self.upstream, "%.1f" % self.secs, self.culprit]

    def as_dict(self):
        d = dict(zip([c for c, _ in COLUMNS], self.cells()))
        d["error_samples"] = self.errors[:4]
        d["problems"] = self.problems
        return d


def table(rows):
    out = ["  ".join(name.ljust(w) for name, w in COLUMNS)]
    for r in rows:
        out.append("  ".join(str(v).ljust(w) for v, (_, w) in zip(r.cells(), COLUMNS)))
    return "\n".join(out)


def concurrent_pulls(agents, path, data, digest, attempts=3, probe=True):
    """Starts one pulling client (with retries) and one Range probe per
    agent. Returns (threads, tries list, probes)."""
    tries = [[] for _ in agents]
    probes = [RangeProbe(a.port, path, data, seed=i, workers=1) for i, a in enumerate(agents)] \
        if probe else []

    def run(i):
        tries[i].extend(faultcheck.pull(agents[i].port, path, data, digest, attempts=attempts))
    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(agents))]
    for p in probes:
        p.start()
    for t in threads:
        t.start()
    return threads, tries, probes


def finish(threads, probes, timeout=120, skip_after=()):
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(timeout=max(0.1, deadline - time.monotonic()))
    hung = sum(1 for t in threads if t.is_alive())
    for i, p in enumerate(probes):
        p.stop(after=0 if i in skip_after else 2)
    return hung


def retire(agents, row):
    """Stops a row's agents (SIGTERM; each must exit 0) so the next row
    starts clean; the fixture's teardown still checks their logs."""
    for a in agents:
        if a.alive():
            rc = a.stop()
            if rc != 0:
                row.problems.append("agent %s exited %s on SIGTERM: %s"
                                    % (a.host, rc, tail(a.stderr_path, 5)))
        elif not a.crashed_ok:  # died on its own: a crash, never a fault to absorb
            row.problems.append("agent %s died (exit %s): %s"
                                % (a.host, a.proc.returncode, tail(a.stderr_path, 20)))
        a.crashed_ok = True


def under_way(reg, digest, n):
    wait_for(lambda: reg.bytes_served(digest) >= n, 60, "%d upstream bytes" % n, interval=0.02)


# ------------------------------------------------------------------ rows --

def row_agents_killed(reg, agent_factory, tracker_factory, secret_file):
    row = Row("25% of agents killed mid-transfer")
    data = blob_bytes(SIZE, "fm/kill")
    digest = reg.add_blob("fm/kill", data)
    path = "/v2/fm/kill/blobs/" + digest
    reg.rate = 16 * MIB
    tracker = tracker_factory(["--lease-timeout", "3s", "--peer-timeout", "3s",
                               "--lease-pieces", "2"])
    agents = swarm_agents(agent_factory, reg.host, tracker, secret_file, 4,
                          ["--swarm-stall-timeout", "3s"])
    threads, tries, probes = concurrent_pulls(agents, path, data, digest, attempts=1)
    under_way(reg, digest, 8 * MIB)
    victim = agents[0]
    victim.crashed_ok = True
    victim.kill9()
    hung = finish(threads, probes, skip_after=(0,))
    reg.rate = None
    row.pulls(tries, may_fail=(0,))
    row.probes(probes[1:])
    for r in probes[0].results:  # the victim's: cut or refused, never wrong
        row.wrong_complete += r["wrong"] if r["complete"] else 0
        row.wrong_cut += 0 if r["complete"] else r["wrong"]
    if hung:
        row.problems.append("%d clients hung" % hung)
    row.culprit = "n/a"
    retire(agents, row)
    tracker.stop()
    return row.done(reg, digest)


def row_tracker_killed(reg, agent_factory, tracker_factory, secret_file):
    row = Row("tracker killed mid-transfer")
    data = blob_bytes(SIZE, "fm/tracker")
    digest = reg.add_blob("fm/tracker", data)
    path = "/v2/fm/tracker/blobs/" + digest
    reg.rate = 16 * MIB
    tracker = tracker_factory(["--lease-pieces", "2"])
    agents = swarm_agents(agent_factory, reg.host, tracker, secret_file, 4,
                          ["--swarm-stall-timeout", "3s"])
    threads, tries, probes = concurrent_pulls(agents, path, data, digest)
    under_way(reg, digest, 8 * MIB)
    tracker.proc.kill()
    tracker.proc.wait(timeout=10)
    hung = finish(threads, probes)
    reg.rate = None
    row.pulls(tries)
    row.probes(probes)
    if hung:
        row.problems.append("%d clients hung" % hung)
    row.culprit = "n/a"
    retire(agents, row)
    return row.done(reg, digest)


def row_forger(reg, agent_factory, tracker_factory, secret_file, algo):
    row = Row("forging member (%s pieces)" % algo)
    repo = "fm/forge" + algo.replace("-", "")
    data = blob_bytes(SIZE, repo)
    digest = reg.add_blob(repo, data)
    path = "/v2/%s/blobs/%s" % (repo, digest)
    tracker = tracker_factory(["--hash-algo", algo])
    first, = swarm_agents(agent_factory, reg.host, tracker, secret_file, 1)
    res = faultcheck.get_checked(first.port, path, data)
    if not full_ok(res, data, digest):
        row.problems.append("the first agent's pull failed: %r" % res)
    seed = swarmpeer.ForgingSeed(tracker.port, SECRET, digest, data).start()
    try:
        agents = swarm_agents(agent_factory, reg.host, tracker, secret_file, 3,
                              ["--ingress-rate", "16MiB"])
        threads, tries, probes = concurrent_pulls(agents, path, data, digest)
        hung = finish(threads, probes)
    finally:
        seed.stop()
    row.pulls(tries)
    row.probes(probes)
    if hung:
        row.problems.append("%d clients hung" % hung)
    banned = sum(1 for a in agents for ln in a.logs().splitlines()
                 if "peer banned" in ln and seed.addr in ln)
    reports = metric(tracker.metrics(), "shoal_tracker_bad_peer_reports_total")
    row.culprit = "forged %d; bans %d rep %d" % (seed.forged, banned, reports)
    if seed.forged == 0:
        row.problems.append("no agent asked the forger: row not meaningful")
    if algo == "sha256" and (banned == 0 or reports == 0):
        row.problems.append("the forger was not banned and reported")
    retire(agents + [first], row)
    tracker.stop()
    return row.done(reg, digest)


def row_stranger(reg, agent_factory, tracker_factory, secret_file):
    row = Row("stranger without the secret")
    data = blob_bytes(SIZE, "fm/stranger")
    digest = reg.add_blob("fm/stranger", data)
    path = "/v2/fm/stranger/blobs/" + digest
    reg.rate = 24 * MIB
    tracker = tracker_factory()
    agents = swarm_agents(agent_factory, reg.host, tracker, secret_file, 3)
    # The stranger cannot announce: the tracker refuses a wrong MAC.
    st, _ = swarmpeer.announce(tracker.port, b"not-the-secret", {
        "digest": digest, "size": SIZE, "agent": "stranger", "addr": "127.0.0.1:9",
        "event": "started", "have": 32, "complete": True})
    refused_announce = st == 401
    threads, tries, probes = concurrent_pulls(agents, path, data, digest)
    stats = {"tried": 0, "got_in": 0, "parked": 0}
    parked = []
    stop = threading.Event()

    def stranger():
        while not stop.is_set():
            for a in agents:
                try:
                    r = swarmpeer.try_handshake(a.peer_port, digest, b"not-the-secret",
                                                timeout=2)
                    stats["tried"] += 1
                    if "bitfield" in swarmpeer.frame_types(r):
                        stats["got_in"] += 1
                    if len(parked) < 60:  # HELLO-only connections, kept open
                        s = socket.create_connection(("127.0.0.1", a.peer_port), timeout=2)
                        s.sendall(swarmpeer.frame(swarmpeer.HELLO, swarmpeer.hello_payload(
                            digest, os.urandom(16), os.urandom(16))))
                        parked.append(s)
                except OSError:
                    pass
            time.sleep(0.05)
    st_thread = threading.Thread(target=stranger, daemon=True)
    st_thread.start()
    hung = finish(threads, probes)
    stop.set()
    st_thread.join(timeout=30)
    for s in parked:
        s.close()
    reg.rate = None
    row.pulls(tries)
    row.probes(probes)
    if hung:
        row.problems.append("%d clients hung" % hung)
    if not refused_announce:
        row.problems.append("the tracker took an announce with a wrong MAC (%s)" % st)
    if stats["got_in"] or stats["tried"] == 0:
        row.problems.append("stranger handshakes: %r" % stats)
    row.culprit = "refused %d/%d, parked %d" % (stats["tried"] - stats["got_in"], stats["tried"],
                                                len(parked))
    retire(agents, row)
    tracker.stop()
    return row.done(reg, digest)


def row_upstream(reg, agent_factory, tracker_factory, secret_file, what):
    """429s, 5xx answers or resets on the first blob GETs (the lease Range
    requests of a swarm of 3), with the agents' default retries."""
    row = Row({"429": "upstream 429 + Retry-After", "5xx": "upstream 500/502/503",
               "reset": "upstream reset mid-body"}[what])
    repo = "fm/up" + what
    data = blob_bytes(SIZE, repo)
    digest = reg.add_blob(repo, data)
    path = "/v2/%s/blobs/%s" % (repo, digest)
    if what == "429":
        faults = [reg.inject("status", path=digest, status=429, times=3,
                             headers={"Retry-After": "1", "Content-Type": "application/json"},
                             body=b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}')]
    elif what == "5xx":
        faults = [reg.inject("status", path=digest, status=s, times=1,
                             body=b"<html><body>%d</body></html>" % s)
                  for s in (500, 502, 503)]
    else:
        faults = [reg.inject("reset", path=digest, after=a, times=1)
                  for a in (512 << 10, 3 * MIB, 5 * MIB)]
    tracker = tracker_factory(["--lease-pieces", "4"])
    agents = swarm_agents(agent_factory, reg.host, tracker, secret_file, 3)
    threads, tries, probes = concurrent_pulls(agents, path, data, digest)
    hung = finish(threads, probes)
    row.pulls(tries)
    row.probes(probes)
    if hung:
        row.problems.append("%d clients hung" % hung)
    fired = sum(f.fired for f in faults)
    if fired == 0:
        row.problems.append("no fault fired: row not meaningful")
    row.culprit = "%d faults fired" % fired
    retire(agents, row)
    tracker.stop()
    reg.clear_faults()
    return row.done(reg, digest)


def row_disk_full(reg, agent_factory, tmpfs_mount):
    """The data dir (a 48 MiB tmpfs) fills up while a 32 MiB blob downloads:
    that download had its space reserved (fallocate) when it started, so it
    completes; a second blob (8 MiB) asked for while the disk is full is
    served on its first attempt, the agent evicting the first blob (no
    longer in use) to make room. (A disk that eviction cannot free answers
    a clear 503: test_disk_full.py.) Nothing wrong is kept either way."""
    row = Row("disk filling mid-download")
    data = blob_bytes(SIZE, "fm/disk")
    digest = reg.add_blob("fm/disk", data)
    path = "/v2/fm/disk/blobs/" + digest
    data2 = blob_bytes(SIZE // 4, "fm/disk2")
    digest2 = reg.add_blob("fm/disk", data2)
    path2 = "/v2/fm/disk/blobs/" + digest2
    reg.rate = 8 * MIB
    a = agent_factory(reg.host, start=False)
    tmpfs_mount(a.data_dir, 48 * MIB)
    a.start()
    first = {}
    t = threading.Thread(target=lambda: first.update(faultcheck.get_checked(a.port, path, data)),
                         daemon=True)
    t.start()
    under_way(reg, digest, 8 * MIB)
    filler = os.path.join(a.data_dir, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * (64 << 10))
    except OSError:
        pass  # ENOSPC: the disk is full
    finally:
        os.close(fd)
    t.join(timeout=60)
    reg.rate = None
    second = faultcheck.pull(a.port, path2, data2, digest2, attempts=2)
    os.unlink(filler)
    row.pulls([[first]])
    row.pulls([second])
    if len(second) != 1 or second[0]["status"] != 200 or not second[0]["complete"]:
        row.problems.append("on a full disk: %r" % second)
    if os.path.exists(os.path.join(a.data_dir, "blobs", "sha256", digest.split(":")[1])):
        row.problems.append("the first blob was not evicted to make room")
    ok, bad = faultcheck.cached_blobs_ok(a.data_dir)
    if not ok:
        row.problems.append("wrong content cached: %r" % bad)
    row.culprit = "full disk: %s" % second[-1]["status"]
    retire([a], row)
    row.done(reg, digest)
    row.upstream = (reg.bytes_served(digest) + reg.bytes_served(digest2)) / float(SIZE + SIZE // 4)
    return row


def row_kill9_restart(reg, agent_factory, tracker_factory, secret_file):
    """One of two swarm agents is killed with SIGKILL at ~40% and restarted
    on its data dir; its client then pulls again."""
    row = Row("kill -9 and restart")
    data = blob_bytes(SIZE, "fm/kill9")
    digest = reg.add_blob("fm/kill9", data)
    path = "/v2/fm/kill9/blobs/" + digest
    reg.rate = 8 * MIB
    tracker = tracker_factory(["--lease-timeout", "3s", "--peer-timeout", "3s"])
    agents = swarm_agents(agent_factory, reg.host, tracker, secret_file, 2)
    victim = agents[0]
    threads, tries, probes = concurrent_pulls(agents, path, data, digest, attempts=1)
    under_way(reg, digest, 12 * MIB)
    victim.crashed_ok = True
    victim.kill9()
    threads[0].join(timeout=30)
    reg.rate = None
    victim.crashed_ok = False
    victim.start()
    again = faultcheck.pull(victim.port, path, data, digest)
    tries[0].extend(again)
    probe = RangeProbe(victim.port, path, data, seed=9, workers=1)
    probe.stopping = True
    probe.phase = "after"
    for _ in range(3):
        probe.one()
    hung = finish(threads[1:], probes[1:])
    probes[0].stop(after=0)
    row.pulls(tries)
    row.probes(probes + [probe])
    if hung:
        row.problems.append("%d clients hung" % hung)
    m = victim.metrics()
    row.culprit = "refetched %.2f x" % ((metric(m, "shoal_upstream_bytes_total") +
                                         metric(m, "shoal_peer_rx_bytes_total")) / SIZE)
    retire(agents, row)
    tracker.stop()
    return row.done(reg, digest)


@pytest.mark.slow
def test_fault_matrix(tmpfs_mount, faulty_registry, agent_factory, tracker_factory,
                      secret_file, tmp_path):
    reg = faulty_registry
    rows = []
    runs = [
        lambda: row_agents_killed(reg, agent_factory, tracker_factory, secret_file),
        lambda: row_tracker_killed(reg, agent_factory, tracker_factory, secret_file),
        lambda: row_forger(reg, agent_factory, tracker_factory, secret_file, "sha256"),
        lambda: row_forger(reg, agent_factory, tracker_factory, secret_file, "xxh3-128"),
        lambda: row_stranger(reg, agent_factory, tracker_factory, secret_file),
        lambda: row_upstream(reg, agent_factory, tracker_factory, secret_file, "429"),
        lambda: row_upstream(reg, agent_factory, tracker_factory, secret_file, "5xx"),
        lambda: row_upstream(reg, agent_factory, tracker_factory, secret_file, "reset"),
        lambda: row_disk_full(reg, agent_factory, tmpfs_mount),
        lambda: row_kill9_restart(reg, agent_factory, tracker_factory, secret_file),
    ]
    for run in runs:
        reg.rate = None
        rows.append(run())
    text = table(rows)
    print("\nfault matrix (blob %d MiB; upstream x = body bytes the registry sent / blob size)\n%s"
          % (SIZE // MIB, text))
    with open(os.path.join(str(tmp_path), "fault-matrix.json"), "w") as f:
        json.dump({"blob_bytes": SIZE, "rows": [r.as_dict() for r in rows]}, f, indent=2)
    problems = ["%s: %s" % (r.fault, p) for r in rows for p in r.problems]
    assert not problems, "\n".join(problems) + "\n\n" + text
    for r in rows:
        assert r.wrong_complete == 0, text
