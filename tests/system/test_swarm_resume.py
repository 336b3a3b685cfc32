"""kill -9 an agent halfway through a swarm download and restart it on the
same data dir: it resumes from the pieces its partial blob recorded (each
re-checked), never from zero, and completes with the right digest.

Everything runs on 127.0.0.1 on ports picked by binding port 0; every
process is stopped by PID.
"""

import os
import threading

from conftest import metric, wait_for
from test_swarm import (SECRET, agent_report, check_body, fetch, join_all, logs_tail,  # noqa: F401
                        pull_all, safe_metrics, secret_file, swarm_agents, tracker_factory)

SIZE = 256 << 20
PIECE = 1 << 20
RATE = 48 << 20  # one upstream copy takes ~5 s through the proxy


def test_killed_mid_swarm_resumes_from_its_pieces(registry, proxy_factory, agent_factory,
                                                  tracker_factory, secret_file, build):
    d, desc = build.blob(SIZE)
    registry.push_blob(d, "swarm/resume", desc["digest"])
    proxy = proxy_factory(registry.port, rate=RATE)
    tracker = tracker_factory(["--lease-timeout", "3s", "--peer-timeout", "3s"])
    agents = swarm_agents(agent_factory, proxy.host, tracker, secret_file, 3)
    victim = agents[0]
    path = "/v2/swarm/resume/blobs/" + desc["digest"]
    partial = os.path.join(victim.data_dir, "partial", "sha256", desc["digest"][7:])

    threads, results = pull_all(agents, path)

    def half():
        n = metric(safe_metrics(victim), "shoal_pieces_verified_total")
        return n if n * PIECE >= SIZE // 2 else None
    held = wait_for(half, 60, "the victim to hold half the blob", interval=0.02)
    victim.crashed_ok = True
    victim.kill9()
    assert held * PIECE < 0.75 * SIZE, "killed too late: %d pieces" % held
    assert os.path.exists(partial + ".pieces"), "no piece record next to the partial"

    # The others go on; the victim restarts on the same data dir and ports.
    victim.crashed_ok = False
    victim.start()
    again = {}
    t = threading.Thread(target=fetch, args=(victim.port, path, again), daemon=True)
    t.start()
    t.join(timeout=120)
    assert not t.is_alive(), "the restarted agent's client hung:\n" + logs_tail([victim])
    check_body(again, SIZE, desc["digest"], "client of the restarted agent")
    assert join_all(threads[1:], 120), "a client hung:\n" + agent_report(agents)
    for i, res in enumerate(results[1:], 1):
        check_body(res, SIZE, desc["digest"], "client of agent %d" % i)

    # What the restarted process fetched (its counters start at zero):
    # what it lacked, not the blob again.
    m = victim.metrics()
    fetched = metric(m, "shoal_upstream_bytes_total") + metric(m, "shoal_peer_rx_bytes_total")
    report = "held %d pieces at the kill; after the restart upstream=%d peers=%d\n%s" % (
        held, metric(m, "shoal_upstream_bytes_total"), metric(m, "shoal_peer_rx_bytes_total"),
        agent_report(agents))
    print(report)
    assert fetched <= 0.6 * SIZE, report
    resumed = [ln for ln in victim.logs().splitlines() if "resuming pieces=" in ln]
    assert resumed, "no resume from the piece record:\n" + logs_tail([victim])
    assert os.path.exists(os.path.join(victim.data_dir, "blobs", "sha256", desc["digest"][7:]))
    assert not os.path.exists(partial) and not os.path.exists(partial + ".pieces")
