#!/usr/bin/python3
"""What one emulated host runs to take part in a measurement. Started inside
the host's network namespace before the common start time, it waits for that
time, does its part and prints one JSON line with wall-clock times (every
namespace shares the machine's clock).

  hostclient.py pull    --registry HOST:PORT --repo REPO --ref TAG
                        --start EPOCH [--ns HOST:PORT] [--out DIR]
                        [--order manifest|largest] [--parallel N]
                        [--rate BYTES_PER_S] [--sample-ms MS]
      Pulls an image the way containerd does, over plain HTTP: HEAD the
      manifest by tag for its digest, GET the manifest by digest (checked),
      then the config and the layers, N at a time (default 3, containerd's
      max_concurrent_downloads) in manifest order (containerd's
      images.Dispatch: config first, then the layers as listed) or largest
      first. Each blob is hashed (SHA-256) as it arrives and checked against
      its digest; with --out it is also written under DIR. --ns adds
      ?ns=HOST:PORT to every request, as containerd does when it pulls
      through a mirror. "done" is when the last blob has arrived and matched
      its digest. Also reported: when the first body byte of every blob
      arrived (and of the largest: "first_byte"), the bytes received by all
      connections together every MS milliseconds from the start ("curve",
      [seconds from start, bytes]), and the client's own CPU seconds from
      the start to done ("cpu_s").
  hostclient.py prewarm --agent URL --ref REF --start EPOCH --blob-dir DIR
                        --digests HEX,HEX,...
      Asks a shoal agent to prewarm REF. "done" is when every listed blob is
      in the agent's blob directory (the agent renames a blob there only once
      its SHA-256 matched), watched every 10 ms with stat(); the job itself is
      polled every 250 ms (polling it as often would cost the agents' CPU)
      and must end "done". Each poll's bytes_done (what the agent has
      verified so far) makes the "curve".
"""

import argparse
import hashlib
import http.client
import json
import os
import resource
import sys
import threading
import time
import urllib.parse

ACCEPT = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])
CHUNK = 1 << 20


def wait_until(t):
    while True:
        d = t - time.time()
        if d <= 0:
            return
        time.sleep(min(d, 0.5))


def request(hostport, method, path, body=None, headers=None, timeout=600):
    conn = http.client.HTTPConnection(hostport, timeout=timeout)
    conn.request(method, path, body=body, headers=headers or {})
    return conn, conn.getresponse()


class Pacer:
    """The loopback fallback's stand-in for an ingress cap: all of a host's
    connections together read no faster than rate bytes/s (0 = no cap)."""

    def __init__(self, rate):
        self.rate = rate
        self.t0 = time.time()
        self.total = 0
        self.lock = threading.Lock()

    def took(self, n):
        if not self.rate:
            return
        with self.lock:
            self.total += n
            ahead = self.total / self.rate - (time.time() - self.t0)
        if ahead > 0:
            time.sleep(ahead)


def cpu_now():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Progress:
    """Bytes received by all of a host's connections. Each blob has its own
    counter (one writer each, no lock); a thread sums them every `interval`
    seconds into [seconds from start, bytes] pairs."""

    def __init__(self, start, interval):
        self.start = start
        self.interval = interval
        self.counters = {}
        self.curve = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def total(self):
        return sum(list(self.counters.values()))

    def _sample(self):
        self.curve.append([round(time.time() - self.start, 3), self.total()])

    def _run(self):
        while not self.stop.wait(self.interval):
            self._sample()

    def begin(self):
        self.curve.append([0.0, 0])
        self.thread.start()

    def end(self):
        self.stop.set()
        self.thread.join()
        self._sample()


def query(ns):
    return "?ns=" + urllib.parse.quote(ns, safe=":") if ns else ""


def fetch_blob(a, desc, buf, progress, pacer):
    """GET one blob into buf piece by piece, hashing as it arrives; returns
    [digest, size, request, first body byte, done] (epochs)."""
    digest = desc["digest"]
    t_req = time.time()
    conn, r = request(a.registry, "GET", "/v2/%s/blobs/%s%s" % (a.repo, digest, query(a.ns)))
    if r.status != 200:
        raise RuntimeError("GET blob %s: HTTP %d %s" % (digest, r.status, r.read(300)))
    h = hashlib.sha256()
    n, first = 0, None
    view = memoryview(buf)
    step = len(buf) if not pacer.rate else min(len(buf), max(65536, pacer.rate // 20))
    out = open(os.path.join(a.out, digest.replace(":", "-")), "wb") if a.out else None
    try:
        while True:
            k = r.readinto(view[:step])
            if not k:
                break
            if first is None:
                first = time.time()
            h.update(view[:k])
            if out:
                out.write(view[:k])
            n += k
            progress.counters[digest] = n
            pacer.took(k)
    finally:
        if out:
            out.close()
        conn.close()
    if "sha256:" + h.hexdigest() != digest or n != desc["size"]:
        raise RuntimeError("blob %s: got %d bytes with digest sha256:%s" % (digest, n,
                                                                           h.hexdigest()))
    return [digest, n, t_req, first, time.time()]


def get_manifest(a):
    """containerd's resolve and fetch: HEAD by tag for the digest, then GET
    by digest, checked against it (GET by tag where HEAD names none)."""
    path = "/v2/%s/manifests/%%s%s" % (a.repo, query(a.ns))
    conn, r = request(a.registry, "HEAD", path % a.ref, headers={"Accept": ACCEPT})
    r.read()
    conn.close()
    if r.status != 200:
        raise RuntimeError("HEAD manifest %s: HTTP %d" % (a.ref, r.status))
    digest = r.getheader("Docker-Content-Digest")
    conn, r = request(a.registry, "GET", path % (digest or a.ref), headers={"Accept": ACCEPT})
    raw = r.read()
    conn.close()
    if r.status != 200:
        raise RuntimeError("GET manifest %s: HTTP %d %s" % (digest or a.ref, r.status, raw[:300]))
    if digest and "sha256:" + hashlib.sha256(raw).hexdigest() != digest:
        raise RuntimeError("manifest %s: the bytes have another digest" % digest)
    return json.loads(raw)


def pull(a):
    if a.out:
        os.makedirs(a.out, exist_ok=True)
    progress = Progress(a.start, a.sample_ms / 1000.0)
    wait_until(a.start)
    cpu0 = cpu_now()
    progress.begin()
    try:
        man = get_manifest(a)
        blobs = ([man["config"]] if "config" in man else []) + man.get("layers", [])
        # [index in the manifest, descriptor]
        todo = list(enumerate(blobs))
        if a.order == "largest":
            todo.sort(key=lambda t: -t[1]["size"])
        errors, times = [], []
        lock = threading.Lock()
        pacer = Pacer(a.rate)

        def worker():
            buf = bytearray(CHUNK)
            while True:
                with lock:
                    if not todo or errors:
                        return
                    index, desc = todo.pop(0)
                try:
                    t = fetch_blob(a, desc, buf, progress, pacer)
                    with lock:
                        times.append([index] + t)
                except Exception as e:  # reported as the host's result
                    with lock:
                        errors.append("%s: %s" % (type(e).__name__, e))

        threads = [threading.Thread(target=worker) for _ in range(a.parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise RuntimeError(errors[0])
        done = time.time()
    finally:
        progress.end()
    largest = max(times, key=lambda t: t[2], default=[None] * 6)[1:]

    def rel(x):
        return None if x is None else round(x - a.start, 4)

    return {"done": done, "bytes": sum(t[2] for t in times), "blobs": len(blobs),
            "first_byte": largest[3], "request_largest": largest[2],
            "first_byte_any": min((t[4] for t in times if t[4]), default=None),
            # In request order: [index in the manifest (0 = config), digest (12 hex),
            # size, request, first body byte, done], times in seconds from start.
            "blob_times": [[i, d[7:19], n] + [rel(x) for x in ts]
                           for i, d, n, *ts in sorted(times, key=lambda t: t[3])],
            "curve": progress.curve, "cpu_s": round(cpu_now() - cpu0, 3)}


def prewarm(a):
    u = urllib.parse.urlsplit(a.agent)
    body = json.dumps({"ref": a.ref}).encode()
    wait_until(a.start)
    cpu0 = cpu_now()
    curve = [[0.0, 0]]
    conn, r = request(u.netloc, "POST", "/_shoal/prewarm", body=body,
                      headers={"Content-Type": "application/json"})
    job = json.loads(r.read() or b"{}")
    conn.close()
    if r.status != 202:
        raise RuntimeError("POST /_shoal/prewarm: HTTP %d %s" % (r.status, job))
    conn = http.client.HTTPConnection(u.netloc, timeout=30)
    paths = [os.path.join(a.blob_dir, h) for h in a.digests.split(",") if h]
    done, next_poll = None, 0.0
    while True:
        if done is None and all(os.path.exists(p) for p in paths):
            done = time.time()
        if job.get("state") != "running":
            break
        if time.time() >= next_poll or done is not None:
            conn.request("GET", "/_shoal/prewarm/%s" % job["id"])
            r = conn.getresponse()
            job = json.loads(r.read())
            curve.append([round(time.time() - a.start, 3), job.get("bytes_done") or 0])
            next_poll = time.time() + 0.25
        elif done is None:
            time.sleep(0.01)
    if job.get("state") != "done":
        raise RuntimeError("prewarm job %s: %s" % (job.get("state"), job.get("error")))
    if done is None:
        raise RuntimeError("job done, but blobs missing from %s" % a.blob_dir)
    return {"done": done, "bytes": job.get("bytes_total"), "blobs": job.get("blobs_total"),
            "blobs_cached": job.get("blobs_cached"), "curve": curve,
            "cpu_s": round(cpu_now() - cpu0, 3)}


def main(argv=None):
    p = argparse.ArgumentParser(prog="hostclient.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    sp = sub.add_parser("pull")
    sp.add_argument("--registry", required=True)
    sp.add_argument("--repo", required=True)
    sp.add_argument("--ref", required=True)
    sp.add_argument("--out", default=None, help="write each blob under DIR (default: only hash)")
    sp.add_argument("--start", type=float, required=True)
    sp.add_argument("--ns", default=None, help="the registry a mirror should pull from")
    sp.add_argument("--order", choices=["manifest", "largest"], default="manifest")
    sp.add_argument("--rate", type=int, default=0, help="bytes/s read cap (loopback fallback)")
    sp.add_argument("--parallel", type=int, default=3)
    sp.add_argument("--sample-ms", type=int, default=100)
    sp = sub.add_parser("prewarm")
    sp.add_argument("--agent", required=True)
    sp.add_argument("--ref", required=True)
    sp.add_argument("--start", type=float, required=True)
    sp.add_argument("--blob-dir", required=True, help="the agent's data-dir/blobs/sha256")
    sp.add_argument("--digests", required=True, help="hex digests of the blobs to wait for")
    a = p.parse_args(argv)
    try:
        out = pull(a) if a.mode == "pull" else prewarm(a)
    except Exception as e:  # one line the harness can read, whatever failed
        out = {"error": "%s: %s" % (type(e).__name__, e)}
    print(json.dumps(out), flush=True)
    return 0 if "error" not in out else 1


if __name__ == "__main__":
    sys.exit(main())
