"""kill -9 in the middle of a 200 MiB download, restart on the same data
dir: the agent resumes upstream with Range from the partial file."""

import hashlib
import http.client
import os
import threading
import time

from conftest import wait_for

SIZE = 200 << 20
RATE = 40 << 20  # ~5 s for the whole blob through the proxy


def stream_get(port, path, out):
    h = hashlib.sha256()
    n = 0
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("GET", path)
        r = c.getresponse()
        out["status"] = r.status
        while True:
            b = r.read(1 << 20)
            if not b:
                break
            h.update(b)
            n += len(b)
        c.close()
        out["digest"] = "sha256:" + h.hexdigest()
    except Exception as e:  # the agent is killed under this client
        out["error"] = repr(e)
    out["bytes"] = n


def test_resume_after_kill9(registry, proxy_factory, agent_factory, build):
    d, desc = build.blob(SIZE)
    registry.push_blob(d, "resume/blob", desc["digest"])
    proxy = proxy_factory(registry.port, rate=RATE)
    a = agent_factory(proxy.host)
    path = "/v2/resume/blob/blobs/" + desc["digest"]
    partial = os.path.join(a.data_dir, "partial", "sha256", desc["digest"][7:])
    complete = os.path.join(a.data_dir, "blobs", "sha256", desc["digest"][7:])

    first = {}
    t = threading.Thread(target=stream_get, args=(a.port, path, first))
    t.start()

    def psize():
        try:
            return os.path.getsize(partial)
        except OSError:
            return 0
    wait_for(lambda: psize() >= 0.3 * SIZE, 30, "partial file at 30%% (at %d)" % psize(),
             interval=0.02)
    a.crashed_ok = True
    a.kill9()
    killed_at = psize()
    t.join(timeout=30)
    assert 0.3 * SIZE <= killed_at <= 0.6 * SIZE, killed_at
    assert not os.path.exists(complete), "complete before the kill: test too slow to kill"
    assert first.get("digest") != desc["digest"], "first download finished despite kill -9"

    # Restart on the same data dir and port; let the rest come quickly.
    proxy.rate = None
    t_restart = time.monotonic()
    a.crashed_ok = False
    a.start()
    second = {}
    stream_get(a.port, path, second)
    assert second.get("error") is None, second
    assert second["status"] == 200
    assert second["bytes"] == SIZE
    assert second["digest"] == desc["digest"]

    ranged = [r for r in proxy.requests_since(t_restart)
              if r["method"] == "GET" and "/blobs/" in r["path"] and r["range"]]
    assert ranged, "no upstream Range request after the restart: %r" % \
        [r["line"] for r in proxy.requests_since(t_restart)]
    offsets = []
    for r in ranged:
        v = r["range"]
        assert v.startswith("bytes=") and v.endswith("-"), v
        offsets.append(int(v[len("bytes="):-1]))
    resumed_from = max(offsets)
    assert resumed_from > 0, offsets
    # It resumes from (about) what the partial file held when killed; an
    # agent may step back to a verified boundary, but not by much.
    assert killed_at - (16 << 20) <= resumed_from <= killed_at, (resumed_from, killed_at)
    up = a.metric("shoal_upstream_bytes_total")
    assert 0 < up < SIZE, "restarted agent downloaded %d bytes of %d" % (up, SIZE)
    assert up <= SIZE - resumed_from + (1 << 20), (up, SIZE - resumed_from)
    wait_for(lambda: os.path.exists(complete), 10, "complete blob in the cache")
    assert not os.path.exists(partial)
