"""An upstream that answers 429 (Docker Hub's pull limit, a Harbor proxy
cache in front of one): the agent serves what it has cached exactly as
when upstream is down (tags from their last known answer, blobs from the
cache), and sends nothing to that upstream until its Retry-After has
passed."""

import http.client
import http.server
import threading
import time

import ocibuild
from conftest import layout_digests, oci_error_codes, skopeo_copy, wait_for

ACCEPT = {"Accept": ocibuild.MT_OCI_MANIFEST}


class LimitingUpstream:
    """An HTTP front of a registry: passes GET and HEAD through, or, once
    limit(retry_after) is called, answers every request 429 with that
    Retry-After (None: without one). Counts what it answered 429."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.retry_after = None
        self.limiting = False
        self.lock = threading.Lock()
        self.limited = []  # (time, method, path) of requests answered 429
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                srv._handle(self)

            def do_HEAD(self):
                srv._handle(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.host = "127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def limit(self, retry_after):
        with self.lock:
            self.limiting = True
            self.retry_after = retry_after

    def release(self):
        with self.lock:
            self.limiting = False

    def count(self):
        with self.lock:
            return len(self.limited)

    def _handle(self, h):
        with self.lock:
            limiting, ra = self.limiting, self.retry_after
            if limiting:
                self.limited.append((time.monotonic(), h.command, h.path))
        if limiting:
            body = (b'{"errors":[{"code":"TOOMANYREQUESTS","message":"pull rate limit",'
                    b'"detail":null}]}')
            h.send_response(429)
            if ra is not None:
                h.send_header("Retry-After", str(ra))
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(body)
            return
        c = http.client.HTTPConnection("127.0.0.1", self.target_port, timeout=60)
        hdrs = {k: v for k, v in h.headers.items() if k.lower() in ("accept", "range",
                                                                    "authorization")}
        c.request(h.command, h.path, headers=hdrs)
        r = c.getresponse()
        h.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "keep-alive"):
                h.send_header(k, v)
        if r.getheader("Content-Length") is None:
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        if h.command != "HEAD":
            while True:
                chunk = r.read(1 << 16)
                if not chunk:
                    break
                h.wfile.write(chunk)
        c.close()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def limiting(registry):
    return LimitingUpstream(registry.port)


def test_cached_tags_and_blobs_served_on_429(registry, agent_factory, build, tmp_path):
    b = build.image(layers=2, layer_size=60000)
    registry.push(b, "limited/app")
    up = limiting(registry)
    try:
        # Retry-After beyond upstream-retry-max: the agent does not retry
        # early, it answers from the cache at once. Every blob request asks
        # upstream first (repo-check-ttl 0), as after the check expired.
        a = agent_factory(up.host, extra_args=["--upstream-retry-max", "1s",
                                               "--repo-check-ttl", "0"])
        out = str(tmp_path / "warm")
        r = skopeo_copy("docker://%s/limited/app:%s" % (a.host, b.tag), "oci:%s:%s" % (out, b.tag))
        assert r.returncode == 0, r.stderr

        up.limit(retry_after=120)
        t0 = time.monotonic()
        out = str(tmp_path / "limited")
        r = skopeo_copy("docker://%s/limited/app:%s" % (a.host, b.tag), "oci:%s:%s" % (out, b.tag))
        assert r.returncode == 0, "pull during 429: %s\n%s" % (r.stderr, a.logs()[-3000:])
        assert layout_digests(out, b.tag) == (b.digest, b.blob_digests())
        assert time.monotonic() - t0 < 20
        # One 429 put the upstream in backoff: nothing else was sent there.
        assert up.count() == 1, up.limited
        m = a.metrics()
        assert m[("shoal_upstream_rate_limited_total", (("upstream", up.host),))] == 1
        assert m[("shoal_upstream_backoff_refusals_total", (("upstream", up.host),))] >= 1
        assert m[("shoal_upstream_backoff_seconds", (("upstream", up.host),))] > 60
        assert a.metric("shoal_stale_answers_total") >= 1
        assert a.metric("shoal_upstream_retries_total") == 0

        # What is not cached gets the 429, with the time left.
        st, hd, body = a.get("/v2/limited/app/manifests/not-pulled-yet", headers=ACCEPT)
        assert st == 429 and "TOOMANYREQUESTS" in oci_error_codes(body)
        assert 60 < int(hd["retry-after"]) <= 120
        assert up.count() == 1
        logs = a.logs()
        assert "stale=true" in logs and "status=429" in logs
    finally:
        up.close()


def test_retry_after_is_honoured_then_upstream_asked_again(registry, agent_factory, build):
    b = build.image(layers=1, layer_size=10000)
    registry.push(b, "limited/short")
    registry.push(b, "limited/short", "second")
    up = limiting(registry)
    try:
        a = agent_factory(up.host, extra_args=["--upstream-retry-max", "1s"])
        path = "/v2/limited/short/manifests/" + b.tag
        st, _, _ = a.get(path, headers=ACCEPT)
        assert st == 200
        # Serving the manifest checked its two blobs upstream (checks ahead,
        # docs/mirror.md): let those finish before upstream starts limiting,
        # so that the one request limited below is the manifest's.
        wait_for(lambda: sum(a.metric("shoal_repo_checks_ahead_total", result=r) or 0
                             for r in ("confirmed", "unconfirmed")) == 2, 10, "checks ahead")

        up.limit(retry_after=3)
        t0 = time.monotonic()
        st, _, _ = a.get(path, headers=ACCEPT)  # the 429, answered from the cache
        assert st == 200 and up.count() == 1
        for _ in range(5):  # within the 3 s: none of these reach upstream
            st, _, _ = a.get(path, headers=ACCEPT)
            assert st == 200
        assert up.count() == 1 and time.monotonic() - t0 < 2.5

        up.release()
        time.sleep(max(0, 3.2 - (time.monotonic() - t0)))
        # Retry-After has passed: the next request goes upstream again and
        # sees what changed there.
        st, hd, body = a.get("/v2/limited/short/manifests/second", headers=ACCEPT)
        assert st == 200 and body == b.raw
        assert a.metric("shoal_upstream_backoff_seconds") == 0
    finally:
        up.close()


def test_short_retry_after_is_waited_for_within_a_request(registry, agent_factory, build):
    """A Retry-After that fits within upstream-retry-max: the request that got
    it waits and asks again, and gets the fresh answer."""
    b = build.image(layers=1, layer_size=10000)
    registry.push(b, "limited/wait")
    up = limiting(registry)
    try:
        a = agent_factory(up.host, extra_args=["--upstream-retry-max", "5s"])
        up.limit(retry_after=1)
        timer = threading.Timer(0.5, up.release)
        timer.start()
        t0 = time.monotonic()
        st, _, body = a.get("/v2/limited/wait/manifests/" + b.tag, headers=ACCEPT)
        took = time.monotonic() - t0
        timer.join()
        assert st == 200 and body == b.raw
        assert 0.9 <= took < 5, took
        assert up.count() == 1
        assert a.metric("shoal_upstream_retries_total") == 1
        wait_for(lambda: a.metric("shoal_upstream_backoff_seconds") == 0, 5, "backoff over")
    finally:
        up.close()
