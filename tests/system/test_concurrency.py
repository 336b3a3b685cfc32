"""Ten clients ask for the same 64 MiB blob at once while the upstream is
slow: one upstream download feeds them all, every body is intact."""

import hashlib
import http.client
import threading

from conftest import metric

SIZE = 64 << 20
RATE = 32 << 20  # bytes/s through the throttling proxy: ~2 s per download


def fetch(port, path, results, i, barrier):
    h = hashlib.sha256()
    n = 0
    try:
        barrier.wait(timeout=30)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("GET", path)
        r = c.getresponse()
        status = r.status
        while True:
            b = r.read(1 << 20)
            if not b:
                break
            h.update(b)
            n += len(b)
        c.close()
        results[i] = (status, "sha256:" + h.hexdigest(), n, None)
    except Exception as e:  # reported by the test
        results[i] = (None, None, n, repr(e))


def test_ten_concurrent_gets_one_upstream_fetch(registry, proxy_factory, agent_factory, build):
    d, desc = build.blob(SIZE)
    registry.push_blob(d, "conc/blob", desc["digest"])
    proxy = proxy_factory(registry.port, rate=RATE)
    a = agent_factory(proxy.host)
    path = "/v2/conc/blob/blobs/" + desc["digest"]

    n = 10
    results = [None] * n
    barrier = threading.Barrier(n)
    threads = [threading.Thread(target=fetch, args=(a.port, path, results, i, barrier))
               for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a client hung"
    for i, (status, digest, got, err) in enumerate(results):
        assert err is None, "client %d: %s after %d bytes" % (i, err, got)
        assert status == 200, "client %d: status %s" % (i, status)
        assert got == SIZE, "client %d: %d bytes" % (i, got)
        assert digest == desc["digest"], "client %d: body digest differs" % i

    m = a.metrics()
    assert m.get("shoal_upstream_blob_fetches_total") == 1, m.get("shoal_upstream_blob_fetches_total")
    # Labelled by upstream now: the sum over them (one here).
    up = metric(m, "shoal_upstream_bytes_total")
    assert up <= SIZE * 1.01 + (1 << 20), "upstream bytes %d for a %d-byte blob" % (up, SIZE)
    assert up >= SIZE
    assert m.get("shoal_client_tx_bytes_total", 0) >= n * SIZE
    gets = [r for r in proxy.requests if r["method"] == "GET" and "/blobs/" in r["path"]]
    assert len(gets) == 1, [r["line"] for r in gets]
