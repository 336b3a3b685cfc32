#!/usr/bin/python3
"""What one emulated host runs to take part in a measurement. Started inside
the host's network namespace before the common start time, it waits for that
time, does its part and prints one JSON line with wall-clock times (every
namespace shares the machine's clock).

  hostclient.py pull    --registry HOST:PORT --repo REPO --ref TAG --out DIR
                        --start EPOCH [--rate BYTES_PER_S] [--parallel N]
      Pulls the manifest and every blob it references over plain HTTP, hashing
      each blob as it arrives (SHA-256) and writing it under DIR: a registry
      client such as containerd or skopeo. "done" is when the last blob has
      arrived and matched its digest.
  hostclient.py prewarm --agent URL --ref REF --start EPOCH --blob-dir DIR
                        --digests HEX,HEX,...
      Asks a shoal agent to prewarm REF. "done" is when every listed blob is
      in the agent's blob directory (the agent renames a blob there only once
      its SHA-256 matched), watched every 10 ms with stat(); the job itself is
      polled every 250 ms (polling it as often would cost the agents' CPU)
      and must end "done".
"""

import argparse
import hashlib
import http.client
import json
import os
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


def fetch_blob(hostport, repo, desc, out_dir, pacer):
    digest = desc["digest"]
    conn, r = request(hostport, "GET", "/v2/%s/blobs/%s" % (repo, digest))
    if r.status != 200:
        raise RuntimeError("GET blob %s: HTTP %d %s" % (digest, r.status, r.read(300)))
    h = hashlib.sha256()
    n = 0
    step = CHUNK if not pacer.rate else min(CHUNK, max(65536, pacer.rate // 20))
    with open(os.path.join(out_dir, digest.replace(":", "-")), "wb") as f:
        while True:
            b = r.read(step)
            if not b:
                break
            h.update(b)
            f.write(b)
            n += len(b)
            pacer.took(len(b))
    conn.close()
    if "sha256:" + h.hexdigest() != digest or n != desc["size"]:
        raise RuntimeError("blob %s: got %d bytes with digest sha256:%s" % (digest, n,
                                                                           h.hexdigest()))
    return n


def pull(a):
    os.makedirs(a.out, exist_ok=True)
    wait_until(a.start)
    conn, r = request(a.registry, "GET", "/v2/%s/manifests/%s" % (a.repo, a.ref),
                      headers={"Accept": ACCEPT})
    raw = r.read()
    conn.close()
    if r.status != 200:
        raise RuntimeError("GET manifest: HTTP %d %s" % (r.status, raw[:300]))
    man = json.loads(raw)
    blobs = ([man["config"]] if "config" in man else []) + man.get("layers", [])
    # Largest first across a few connections, as registry clients do.
    todo = sorted(blobs, key=lambda d: -d["size"])
    errors, total = [], [0]
    lock = threading.Lock()
    pacer = Pacer(a.rate)

    def worker():
        while True:
            with lock:
                if not todo or errors:
                    return
                desc = todo.pop(0)
            try:
                n = fetch_blob(a.registry, a.repo, desc, a.out, pacer)
                with lock:
                    total[0] += n
            except Exception as e:  # reported as the host's result
                with lock:
                    errors.append(str(e))

    threads = [threading.Thread(target=worker) for _ in range(a.parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(errors[0])
    return {"done": time.time(), "bytes": total[0], "blobs": len(blobs)}


def prewarm(a):
    u = urllib.parse.urlsplit(a.agent)
    body = json.dumps({"ref": a.ref}).encode()
    wait_until(a.start)
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
            next_poll = time.time() + 0.25
        elif done is None:
            time.sleep(0.01)
    if job.get("state") != "done":
        raise RuntimeError("prewarm job %s: %s" % (job.get("state"), job.get("error")))
    if done is None:
        raise RuntimeError("job done, but blobs missing from %s" % a.blob_dir)
    return {"done": done, "bytes": job.get("bytes_total"), "blobs": job.get("blobs_total"),
            "blobs_cached": job.get("blobs_cached")}


def main(argv=None):
    p = argparse.ArgumentParser(prog="hostclient.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    sp = sub.add_parser("pull")
    sp.add_argument("--registry", required=True)
    sp.add_argument("--repo", required=True)
    sp.add_argument("--ref", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--start", type=float, required=True)
    sp.add_argument("--rate", type=int, default=0, help="bytes/s read cap (loopback fallback)")
    sp.add_argument("--parallel", type=int, default=3)
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
