"""Clients that check every byte they receive against the blob's true
content, for the fault tests (test_wrong_bytes.py, test_fault_matrix.py).

A wrong byte is one that differs from the true blob at its offset. Full
GETs and Range requests are both checked byte for byte, whether the answer
completes or is cut: the tests count wrong bytes in complete answers (the
promise: none, ever) and in cut ones (what a full GET may have been given
before the agent cut it, when the source lied).
"""

import hashlib
import http.client
import os
import random
import re
import threading
import time


def count_wrong(chunk, truth, off):
    """Bytes of chunk that differ from truth at offset off (bytes past the
    end of truth count as wrong)."""
    want = truth[off:off + len(chunk)]
    if chunk == want:
        return 0
    n = sum(1 for a, b in zip(chunk, want) if a != b)
    return n + max(0, len(chunk) - len(want))


def get_checked(port, path, truth, rng=None, timeout=60, chunk=256 << 10, delay=0.0):
    """One GET (with a Range header when rng is given), its body checked
    against truth as it streams. Returns a dict: status, bytes, complete
    (the body arrived whole per its framing), wrong (bytes differing from
    truth), first (the body's offset in the blob), digest (of the body),
    error, content_range, t (seconds)."""
    out = {"status": None, "bytes": 0, "complete": False, "wrong": 0, "first": 0,
           "digest": None, "error": None, "content_range": None, "range": rng}
    t0 = time.monotonic()
    h = hashlib.sha256()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Range": rng} if rng else {})
        r = c.getresponse()
        out["status"] = r.status
        off = 0
        if r.status == 206:
            cr = r.getheader("Content-Range") or ""
            out["content_range"] = cr
            m = re.match(r"^bytes (\d+)-(\d+)/(\d+)$", cr)
            if not m:
                raise AssertionError("206 with Content-Range %r" % cr)
            off = int(m.group(1))
        out["first"] = off
        body_expected = r.status in (200, 206)
        # http.client's read(n) returns b"" at a premature end instead of
        # raising: completeness is judged against Content-Length.
        clen = r.getheader("Content-Length")
        expect = int(clen) if clen is not None and clen.isdigit() else None
        try:
            while True:
                b = r.read(chunk)
                if not b:
                    break
                if body_expected:
                    out["wrong"] += count_wrong(b, truth, off)
                    h.update(b)
                off += len(b)
                out["bytes"] += len(b)
                if delay:
                    time.sleep(delay)
            out["complete"] = expect is not None and out["bytes"] == expect
            if not out["complete"]:
                out["error"] = "body cut after %d of %s bytes" % (out["bytes"], clen)
        except (http.client.IncompleteRead, ConnectionError, OSError) as e:
            if isinstance(e, http.client.IncompleteRead) and body_expected:
                out["wrong"] += count_wrong(e.partial, truth, off)
                out["bytes"] += len(e.partial)
            out["error"] = repr(e)
        if body_expected:
            out["digest"] = "sha256:" + h.hexdigest()
    except (http.client.HTTPException, OSError) as e:
        out["error"] = repr(e)
    finally:
        c.close()
    out["t"] = time.monotonic() - t0
    return out


def full_ok(res, truth, digest):
    """A full GET that completed with the right blob."""
    return (res["status"] == 200 and res["complete"] and res["bytes"] == len(truth)
            and res["digest"] == digest and res["wrong"] == 0)


def pull(port, path, truth, digest, attempts=3, pause=0.2):
    """A client pulling one blob the way containerd does: a full GET, and on
    failure (an error status or a cut body) the same GET again. Returns the
    list of attempts (get_checked dicts); the last one is the outcome."""
    tries = []
    for _ in range(attempts):
        res = get_checked(port, path, truth)
        tries.append(res)
        if full_ok(res, truth, digest):
            break
        time.sleep(pause)
    return tries


class RangeProbe:
    """Issues Range requests against one agent in a loop (random offsets
    and lengths, open-ended ones too) until stopped, each checked byte for
    byte. results: get_checked dicts, tagged "during" or "after"."""

    def __init__(self, port, path, truth, seed=1, max_len=3 << 20, workers=3):
        self.port = port
        self.path = path
        self.truth = truth
        self.rnd = random.Random(seed)
        self.max_len = max_len
        self.results = []
        self.phase = "during"
        self.stopping = False
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def one(self):
        size = len(self.truth)
        with self.lock:
            first = self.rnd.randrange(size)
            if self.rnd.random() < 0.25:
                rng = "bytes=%d-" % first
            else:
                last = min(size - 1, first + self.rnd.randrange(1, self.max_len))
                rng = "bytes=%d-%d" % (first, last)
        res = get_checked(self.port, self.path, self.truth, rng=rng, timeout=60)
        res["phase"] = self.phase
        with self.lock:
            self.results.append(res)
        return res

    def _run(self):
        while not self.stopping:
            self.one()
            time.sleep(0.05)

    def stop(self, after=3):
        """Stops the loop, then issues `after` more requests (the blob is
        then complete, or the download given up)."""
        self.stopping = True
        for t in self.threads:
            t.join(timeout=120)
        self.phase = "after"
        for _ in range(after):
            self.one()
        return self.results

    def summary(self):
        with self.lock:
            rs = list(self.results)
        ok = [r for r in rs if r["status"] == 206 and r["complete"]]
        return {"requests": len(rs), "complete_206": len(ok),
                "during": sum(1 for r in rs if r["phase"] == "during"),
                "wrong_bytes": sum(r["wrong"] for r in rs),
                "errors": sum(1 for r in rs if not (r["status"] == 206 and r["complete"]))}


def assert_ranges_clean(probe, who=""):
    """No Range answer, complete or cut, carried a wrong byte; every
    complete 206 is exactly the slice asked for."""
    bad = []
    for r in probe.results:
        if r["wrong"]:
            bad.append("%s: %d wrong bytes (%s, status %s, complete %s)"
                       % (r["range"], r["wrong"], r["phase"], r["status"], r["complete"]))
        if r["status"] == 206 and r["complete"]:
            m = re.match(r"^bytes (\d+)-(\d+)/(\d+)$", r["content_range"] or "")
            if not m or int(m.group(2)) - int(m.group(1)) + 1 != r["bytes"]:
                bad.append("%s: 206 of %d bytes for Content-Range %s"
                           % (r["range"], r["bytes"], r["content_range"]))
    assert not bad, "%sRange answers with wrong bytes:\n%s" % (who, "\n".join(bad[:20]))
    after = [r for r in probe.results if r["phase"] == "after"]
    assert after and all(r["status"] == 206 and r["complete"] for r in after), \
        "%sRange requests after the download failed: %r" % (who, after)


def cached_blobs_ok(data_dir):
    """Every blob file under blobs/ hashes to its name: (ok, bad paths)."""
    bad = []
    root = os.path.join(data_dir, "blobs")
    for d, _, files in os.walk(root):
        algo = os.path.basename(d)
        if algo != "sha256":
            continue
        for f in files:
            if not re.match(r"^[0-9a-f]{64}$", f):
                continue  # a blob's side files (<hex>.repos)
            p = os.path.join(d, f)
            h = hashlib.sha256()
            with open(p, "rb") as fh:
                while True:
                    b = fh.read(1 << 20)
                    if not b:
                        break
                    h.update(b)
            if h.hexdigest() != f:
                bad.append(p)
    return not bad, bad


def assert_nothing_wrong_cached(agent, path, truth, digest):
    """blobs/ holds only blobs matching their names, this one among them,
    and a later GET and Range give the right bytes."""
    ok, bad = cached_blobs_ok(agent.data_dir)
    assert ok, "wrong content under blobs/: %r" % bad
    p = os.path.join(agent.data_dir, "blobs", "sha256", digest[7:])
    assert os.path.exists(p), "the blob is not in the cache after the pull"
    res = get_checked(agent.port, path, truth)
    assert full_ok(res, truth, digest), "a later GET: %r" % res
    mid = len(truth) // 3
    res = get_checked(agent.port, path, truth, rng="bytes=%d-%d" % (mid, mid + 4095))
    assert res["status"] == 206 and res["complete"] and res["wrong"] == 0, res
