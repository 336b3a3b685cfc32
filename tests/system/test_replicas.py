"""Tracker replicas sharing their state in Redis, with real agents swarming a
256 MiB blob: one of two trackers killed mid-swarm (the agents move to the
other and the upstream still sends the blob about once), Redis killed
mid-swarm (every agent still completes), and the only tracker restarted
mid-swarm (the swarm goes on from the piece table Redis kept).

Every process (docker-registry, redis-server, the trackers, the agents, a
throttling proxy in front of the registry so the swarm lasts long enough to
be interrupted) runs on 127.0.0.1 on ports picked by binding port 0 and is
stopped by PID.
"""

import time

import pytest

from conftest import free_port, http_request, metric, wait_for
from test_swarm import (SECRET, agent_report, check_body, join_all, logs_tail,  # noqa: F401
                        pull_all, safe_metrics, secret_file)
from test_tracker import Tracker

SIZE = 256 << 20
RATE = 40 << 20  # one upstream copy takes ~6.5 s through the proxy
PIECE = 1 << 20


def start_trackers(tmp_path, redis, n, extra=None):
    out = []
    for i in range(n):
        t = Tracker(str(tmp_path / ("tracker%d" % i)), secret=SECRET,
                    extra_args=["--state", redis.url] + list(extra or []))
        out.append(t.start())
    return out


def replica_agents(agent_factory, upstream, trackers, secret_file, n, extra=None):
    urls = ",".join("http://127.0.0.1:%d" % t.port for t in trackers)
    agents = []
    for _ in range(n):
        a = agent_factory(upstream, extra_args=[
            "--tracker", urls,
            "--peer-listen", "127.0.0.1:%d" % free_port(),
            "--cluster-secret-file", secret_file] + list(extra or []))
        agents.append(a)
    return agents


def upstream_total(agents):
    return sum(metric(safe_metrics(a), "shoal_upstream_bytes_total") for a in agents)


def wait_progress(agents, fraction):
    """Until the agents hold fraction of the blob between them (pieces
    verified, summed over the agents, against 6 copies)."""
    def far():
        n = sum(metric(safe_metrics(a), "shoal_pieces_verified_total") for a in agents)
        return n if n * PIECE >= fraction * len(agents) * SIZE else None
    return wait_for(far, 60, "the swarm to reach %d%%" % (100 * fraction), interval=0.02)


def finish(agents, threads, results, digest, report_extra=""):
    assert join_all(threads, 120), "a client hung:\n%s\n%s\n%s" % (
        agent_report(agents), logs_tail(agents), report_extra)
    for i, res in enumerate(results):
        check_body(res, SIZE, digest, "client of agent %d" % i)


@pytest.mark.slow
def test_one_of_two_trackers_killed(registry, proxy_factory, agent_factory, redis_factory,
                                    tmp_path, secret_file, build):
    d, desc = build.blob(SIZE)
    registry.push_blob(d, "replicas/kill", desc["digest"])
    proxy = proxy_factory(registry.port, rate=RATE)
    redis = redis_factory()
    trackers = start_trackers(tmp_path, redis, 2)
    agents = replica_agents(agent_factory, proxy.host, trackers, secret_file, 6)
    path = "/v2/replicas/kill/blobs/" + desc["digest"]
    try:
        threads, results = pull_all(agents, path)
        wait_progress(agents, 0.25)
        # The replica serving the most announces goes, so agents have to
        # move. Which replica an agent prefers is a hash of its random id
        # (test_tracker_client.c checks the choice): all six prefer the
        # same one in one run out of 32, and that one is then the victim.
        served = [metric(t.metrics(), "shoal_tracker_announces_total") for t in trackers]
        assert max(served) > 0, "no replica served an announce: %r" % served
        victim, survivor = sorted(trackers, key=lambda t: served[trackers.index(t)],
                                  reverse=True)
        print("announces per replica before the kill: %r" % served)
        before = upstream_total(agents)
        victim.proc.kill()
        victim.proc.wait(timeout=10)
        assert before < SIZE, "the upstream copy was complete before the kill: too late"
        finish(agents, threads, results, desc["digest"])
        up = upstream_total(agents)
        report = "upstream %.3f x the blob\n%s" % (up / SIZE, agent_report(agents))
        print(report)
        assert SIZE <= up <= 1.05 * SIZE, report
        for i, a in enumerate(agents):
            assert metric(a.metrics(), "shoal_swarm_fallbacks_total") == 0, \
                "agent %d fell back\n%s" % (i, report)
        # The survivor took every agent; the swarm's table is whole in Redis.
        sw = survivor.swarms()[desc["digest"]]
        assert sw["hashed"] == SIZE // PIECE, sw
        wait_for(lambda: survivor.swarms()[desc["digest"]]["seeds"] == 6, 10,
                 "every agent announced as a seed to the survivor")
        moved = [ln for a in agents for ln in a.logs().splitlines()
                 if "tracker replica failed" in ln]
        assert moved, "no agent logged moving to another replica:\n" + logs_tail(agents)
    finally:
        for t in trackers:
            t.stop()


@pytest.mark.slow
def test_redis_killed_mid_swarm(registry, proxy_factory, agent_factory, redis_factory, tmp_path,
                                secret_file, build):
    d, desc = build.blob(SIZE)
    registry.push_blob(d, "replicas/noredis", desc["digest"])
    proxy = proxy_factory(registry.port, rate=RATE)
    redis = redis_factory()
    trackers = start_trackers(tmp_path, redis, 2, ["--state-timeout", "500ms"])
    agents = replica_agents(agent_factory, proxy.host, trackers, secret_file, 6,
                            ["--swarm-stall-timeout", "5s"])
    path = "/v2/replicas/noredis/blobs/" + desc["digest"]
    try:
        threads, results = pull_all(agents, path)
        wait_progress(agents, 0.25)
        redis.kill()
        # The trackers answer 503 now; the agents carry on without them.
        def refused():
            return all(metric(t.metrics(), "shoal_tracker_state_up") == 0 for t in trackers)
        wait_for(refused, 10, "the trackers to see Redis gone")
        # A replica without Redis is not ready (a Service sends no one to it).
        for t in trackers:
            st, _, body = http_request(t.admin_port, "GET", "/readyz")
            assert st == 503 and b"Redis" in body, (st, body)
        proxy.rate = None  # whatever falls back to upstream may go fast
        finish(agents, threads, results, desc["digest"])
        unavailable = sum(metric(t.metrics(), "shoal_tracker_state_unavailable_total")
                          for t in trackers)
        print("Redis killed: upstream %.2f x the blob, %d announces answered 503\n%s" % (
            upstream_total(agents) / SIZE, unavailable, agent_report(agents)))
        assert all(a.alive() for a in agents)
        assert all(t.proc.poll() is None for t in trackers), "a tracker died with Redis"
    finally:
        for t in trackers:
            t.stop()


@pytest.mark.slow
def test_only_tracker_restarted(registry, proxy_factory, agent_factory, redis_factory, tmp_path,
                                secret_file, build):
    d, desc = build.blob(SIZE)
    registry.push_blob(d, "replicas/restart", desc["digest"])
    proxy = proxy_factory(registry.port, rate=RATE)
    redis = redis_factory()
    tracker, = start_trackers(tmp_path, redis, 1)
    agents = replica_agents(agent_factory, proxy.host, [tracker], secret_file, 6)
    path = "/v2/replicas/restart/blobs/" + desc["digest"]
    try:
        threads, results = pull_all(agents, path)
        wait_progress(agents, 0.25)
        hashed = tracker.swarms()[desc["digest"]]["hashed"]
        assert 0 < hashed < SIZE // PIECE, hashed
        tracker.proc.kill()
        tracker.proc.wait(timeout=10)
        time.sleep(1.0)  # a second of agents announcing into the void
        tracker.start()
        # The restarted tracker knows the swarm from Redis at once.
        assert tracker.swarms()[desc["digest"]]["hashed"] >= hashed
        finish(agents, threads, results, desc["digest"])
        up = upstream_total(agents)
        report = "upstream %.3f x the blob\n%s" % (up / SIZE, agent_report(agents))
        print(report)
        assert up >= SIZE, "the upstream byte counter missed the copy:\n" + report
        assert up <= 1.05 * SIZE, "a second upstream copy after the restart:\n" + report
        for i, a in enumerate(agents):
            assert metric(a.metrics(), "shoal_swarm_fallbacks_total") == 0, \
                "agent %d fell back\n%s" % (i, report)
    finally:
        tracker.stop()


def test_agents_and_jobs_shared_by_replicas(registry, agent_factory, redis_factory, tmp_path,
                                            secret_file, build):
    """The inventory and the jobs are the cluster's, not one replica's: an
    agent registered with one tracker is listed by the other, and a job
    created on one is followed to SUCCESS on the other."""
    import json
    import ocibuild
    from conftest import http_request
    from test_preheat import assert_warm

    redis = redis_factory()
    trackers = start_trackers(tmp_path, redis, 2, ["--agent-timeout", "5s",
                                                  "--job-poll-interval", "200ms"])
    urls = ",".join("http://127.0.0.1:%d" % t.port for t in trackers)
    agents = [agent_factory(registry.host, extra_args=[
        "--tracker", urls, "--cluster-secret-file", secret_file,
        "--peer-listen", "127.0.0.1:%d" % free_port(), "--node-name", "node-%d" % i,
        "--register-interval", "1s"]) for i in range(3)]

    def get(t, path):
        st, _, body = http_request(t.port, "GET", path,
                                   headers={"X-Shoal-Auth": t.sign("GET", path)})
        assert st == 200, "%s -> %d %s" % (path, st, body)
        return json.loads(body)

    try:
        for t in trackers:
            wait_for(lambda: sorted(a["name"] for a in get(t, "/v1/agents")["agents"]) ==
                     ["node-0", "node-1", "node-2"], 20, "every agent listed by each replica",
                     interval=0.2)
        b = ocibuild.build_multilayer(str(tmp_path / "img"), tag="v1")
        registry.push(b, "team/app")
        body = json.dumps({"ref": "%s/team/app:v1" % registry.host}).encode()
        st, _, out = http_request(trackers[1].port, "POST", "/v1/jobs", body=body, headers={
            "Content-Type": "application/json",
            "X-Shoal-Auth": trackers[1].sign("POST", "/v1/jobs", body)})
        assert st == 201, out
        jid = json.loads(out)["id"]

        def done():
            # The other replica learns of the job within its next sync
            # (a second); until then it does not know it.
            path = "/v1/jobs/%d" % jid
            st, _, body = http_request(trackers[0].port, "GET", path,
                                       headers={"X-Shoal-Auth": trackers[0].sign("GET", path)})
            assert st in (200, 404), body
            j = json.loads(body) if st == 200 else None
            return j if j and j["state"] != "PENDING" else None
        j = wait_for(done, 90, "the job seen to its end from the other replica", interval=0.3)
        assert j["state"] == "SUCCESS", j
        assert sorted(t["agent"] for t in j["tasks"]) == ["node-0", "node-1", "node-2"]
        assert_warm(agents, b)
        assert jid in [x["id"] for x in get(trackers[0], "/v1/jobs")["jobs"]]
    finally:
        for t in trackers:
            t.stop()
