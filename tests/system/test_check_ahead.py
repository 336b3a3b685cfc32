"""Repository checks ahead of the client (agent/api/mirror_ahead.h).

A blob is served only through a repository whose upstream holds it, which
the agent learns from an upstream HEAD. When it serves an image manifest to
a GET, it sends those HEADs for the manifest's blobs at once, so that the
blob requests the runtime sends next (a few at a time) find the answer
instead of each waiting for its own HEAD; a blob request that arrives while
its check is under way waits for it rather than sending another. A check
that does not confirm (an error, a size other than the manifest's) leaves
the blob request to ask for itself, as it did before. Upstream is
faultyregistry.py, which records every request. Also a smoke run of
bench/check-ahead-bench."""

import json
import os
import re
import socket
import subprocess
import threading
import time

from conftest import REPO_ROOT, bin_dir, oci_error_codes, wait_for
from faultyregistry import MT_OCI_MANIFEST, blob_bytes, digest_of, faulty_registry  # noqa: F401

REPO = "ahead/app"


def image(reg, layers, missing=None, wrong_size=None):
    """Pushes a config and `layers` layers to REPO and a manifest listing
    them (and `missing`, a blob the repository lacks; a wrong size for the
    layer index `wrong_size`). Returns (manifest digest, [(digest, bytes)])."""
    cfg = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    blobs = [(reg.add_blob(REPO, cfg), cfg)]
    for i in range(layers):
        data = blob_bytes(200000 + i * 1000, "ahead/%d" % i)
        blobs.append((reg.add_blob(REPO, data), data))
    descs = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d,
              "size": len(b)} for d, b in blobs[1:]]
    if wrong_size is not None:
        descs[wrong_size]["size"] += 1
    if missing is not None:
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                      "digest": digest_of(missing), "size": len(missing)})
    man = json.dumps({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                 "digest": blobs[0][0], "size": len(cfg)},
                      "layers": descs}).encode()
    return reg.add_manifest(REPO, "v1", man), blobs


def heads(reg, digest):
    return [r for r in reg.requests("HEAD", contains="/blobs/" + digest)]


def settled(reg, digest, n):
    """Waits until the registry has logged n HEADs of digest (it logs a
    request after answering it) and returns True; fails past 5 s."""
    wait_for(lambda: len(heads(reg, digest)) >= n, 5, "%d HEADs of %s" % (n, digest))
    return len(heads(reg, digest)) == n


def checks_started(reg, agent, blobs):
    """GETs the image's manifest through agent and waits until the checks
    ahead have started (the config's, which nothing delays, has come back):
    a blob GET sent now finds its own check out if it is held."""
    st, _, _ = agent.get("/v2/%s/manifests/v1" % REPO)
    assert st == 200
    wait_for(lambda: heads(reg, blobs[0][0]), 10, "the config's check")


def checks(agent, result):
    return agent.metric("shoal_repo_checks_ahead_total", result=result) or 0


def test_manifest_checks_its_blobs_once(faulty_registry, agent_factory):
    """A manifest GET sends one HEAD per blob it lists; the blob GETs that
    follow send none of their own and get the right bytes."""
    reg = faulty_registry
    _, blobs = image(reg, 4)
    a = agent_factory(reg.host)
    st, _, _ = a.get("/v2/%s/manifests/v1" % REPO)
    assert st == 200
    wait_for(lambda: checks(a, "confirmed") == len(blobs), 10, "five confirmed checks")
    for d, _ in blobs:
        assert settled(reg, d, 1), reg.requests()
    for d, data in blobs:
        st, _, body = a.get("/v2/%s/blobs/%s" % (REPO, d))
        assert st == 200 and body == data
        assert settled(reg, d, 1), (d, heads(reg, d))
    # A second manifest GET finds them confirmed: nothing is asked again.
    st, _, _ = a.get("/v2/%s/manifests/v1" % REPO)
    assert st == 200
    time.sleep(0.3)
    assert all(len(heads(reg, d)) == 1 for d, _ in blobs)
    assert checks(a, "confirmed") == len(blobs) and checks(a, "unconfirmed") == 0


def test_blob_request_waits_for_its_check(faulty_registry, agent_factory):
    """A blob GET that arrives while its check is out waits for that answer:
    one HEAD in all, and the bytes once it came. A client that gives up while
    waiting is dropped from the wait (the agent goes on)."""
    reg = faulty_registry
    _, blobs = image(reg, 2)
    d, data = blobs[2]
    reg.inject("delay", method="HEAD", path=d, seconds=1.0)
    a = agent_factory(reg.host)
    checks_started(reg, a, blobs)
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", a.port))
        s.sendall(("GET /v2/%s/blobs/%s HTTP/1.1\r\nHost: x\r\n\r\n" % (REPO, d)).encode())
        s.close()
    got = {}

    def pull():
        got["answer"] = a.get("/v2/%s/blobs/%s" % (REPO, d))
        got["at"] = time.monotonic()
    t0 = time.monotonic()
    t = threading.Thread(target=pull)
    t.start()
    t.join(30)
    st, _, body = got["answer"]
    assert st == 200 and body == data
    assert settled(reg, d, 1), heads(reg, d)
    assert got["at"] - t0 >= 0.5  # it did wait for the delayed answer
    assert checks(a, "confirmed") == len(blobs)
    assert a.alive()


def test_blob_download_starts_while_its_check_is_out(faulty_registry, agent_factory):
    """A blob GET that waits for its check starts the blob's download with
    the manifest's size at once: upstream has sent the body before it answers
    the HEAD, and the client gets the bytes once the check confirmed (a cache
    miss). A HEAD of the blob (a look, not a pull) starts nothing."""
    reg = faulty_registry
    _, blobs = image(reg, 3)
    d, data = blobs[2]
    looked = blobs[3][0]
    reg.inject("delay", method="HEAD", path=d, seconds=1.0)
    reg.inject("delay", method="HEAD", path=looked, seconds=1.0)
    a = agent_factory(reg.host)
    checks_started(reg, a, blobs)
    got = {}

    def look():
        got["head"] = a.head("/v2/%s/blobs/%s" % (REPO, looked))
    t = threading.Thread(target=look)
    t.start()
    st, _, body = a.get("/v2/%s/blobs/%s" % (REPO, d))
    t.join(30)
    assert st == 200 and body == data
    assert got["head"][0] == 200
    assert settled(reg, d, 1) and settled(reg, looked, 1)
    gets = reg.requests("GET", contains="/blobs/" + d)
    assert len(gets) == 1, gets
    assert gets[0]["time"] < heads(reg, d)[0]["time"], (gets, heads(reg, d))
    assert reg.requests("GET", contains="/blobs/" + looked) == []
    assert a.metric("shoal_blob_downloads_started_early_total") == 1
    # The GET that started the download is a miss, even if the download was
    # complete by the time its check answered.
    assert a.metric("shoal_cache_misses_total") == 1
    assert (a.metric("shoal_cache_hits_total") or 0) == 0


def test_early_download_serves_nothing_the_check_refuses(faulty_registry, agent_factory):
    """A blob the manifest lists but the repository lacks (another
    repository of the registry has it): the download its GET starts early
    fails upstream, the client gets 404 after the check and its own HEAD,
    and nothing is cached. A layer whose size the manifest gives wrongly is
    still served with upstream's size once its own HEAD answered."""
    reg = faulty_registry
    missing = b"only in another repository\n" * 1000
    reg.add_blob("ahead/other", missing)
    _, blobs = image(reg, 2, missing=missing, wrong_size=1)
    md = digest_of(missing)
    d, data = blobs[2]
    # Both checks stay out long enough for both GETs, sent together, to
    # find them out even on a loaded machine.
    reg.inject("delay", method="HEAD", path=md, seconds=3.0)
    reg.inject("delay", method="HEAD", path=d, seconds=3.0)
    a = agent_factory(reg.host)
    checks_started(reg, a, blobs)
    got = {}

    def pull(name, digest):
        got[name] = a.get("/v2/%s/blobs/%s" % (REPO, digest))
    ts = [threading.Thread(target=pull, args=("missing", md)),
          threading.Thread(target=pull, args=("wrong_size", d))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    st, _, body = got["missing"]
    assert st == 404 and oci_error_codes(body) == ["BLOB_UNKNOWN"], body
    assert not os.path.exists(os.path.join(a.data_dir, "blobs", "sha256", md[7:]))
    st, _, body = got["wrong_size"]
    assert st == 200 and body == data
    # Each download started before its check answered.
    for digest in (md, d):
        assert settled(reg, digest, 2)
        gets = reg.requests("GET", contains="/blobs/" + digest)
        assert gets, (digest, reg.requests(contains=digest))
        assert min(r["time"] for r in gets) < heads(reg, digest)[0]["time"], digest
    assert a.metric("shoal_blob_downloads_started_early_total") == 2
    assert a.alive()


def test_unconfirmed_check_leaves_the_request_to_ask(faulty_registry, agent_factory):
    """A blob the repository lacks, and a layer whose size upstream gives
    otherwise than the manifest, are not confirmed ahead (nor checked ahead
    again for a while): their GETs ask upstream themselves and answer what
    it says (404; the blob)."""
    reg = faulty_registry
    missing = b"not pushed to this repository\n" * 100
    _, blobs = image(reg, 2, missing=missing, wrong_size=1)
    a = agent_factory(reg.host)
    st, _, _ = a.get("/v2/%s/manifests/v1" % REPO)
    assert st == 200
    wait_for(lambda: checks(a, "confirmed") + checks(a, "unconfirmed") == 4, 10,
             "four checks done")
    assert checks(a, "confirmed") == 2 and checks(a, "unconfirmed") == 2
    # Fetching the manifest again does not send those HEADs again.
    st, _, _ = a.get("/v2/%s/manifests/v1" % REPO)
    assert st == 200
    time.sleep(0.3)
    assert checks(a, "unconfirmed") == 2
    assert len(heads(reg, digest_of(missing))) == 1 and len(heads(reg, blobs[2][0])) == 1
    st, _, body = a.get("/v2/%s/blobs/%s" % (REPO, digest_of(missing)))
    assert st == 404 and oci_error_codes(body) == ["BLOB_UNKNOWN"], body
    # The registry logs a request after it answered: wait for the entry.
    assert settled(reg, digest_of(missing), 2)
    d, data = blobs[2]
    st, _, body = a.get("/v2/%s/blobs/%s" % (REPO, d))
    assert st == 200 and body == data
    assert settled(reg, d, 2)


def test_no_checks_ahead_when_off_or_not_asked(faulty_registry, agent_factory):
    """repo-check-ahead 0 turns it off, and a HEAD of the manifest (what a
    runtime sends to resolve a tag) starts no checks either."""
    reg = faulty_registry
    _, blobs = image(reg, 2)
    on = agent_factory(reg.host)
    st, _, _ = on.head("/v2/%s/manifests/v1" % REPO)
    assert st == 200
    off = agent_factory(reg.host, config_extra={"repo-check-ahead": 0})
    st, _, _ = off.get("/v2/%s/manifests/v1" % REPO)
    assert st == 200
    time.sleep(0.5)
    assert reg.requests("HEAD", contains="/blobs/") == []
    assert checks(on, "confirmed") == 0 and checks(off, "confirmed") == 0
    d, data = blobs[1]
    st, _, body = off.get("/v2/%s/blobs/%s" % (REPO, d))
    assert st == 200 and body == data
    assert settled(reg, d, 1)


def test_checks_go_a_few_at_a_time_in_order(faulty_registry, agent_factory):
    """A manifest's checks go out four at a time, in the manifest's order
    (the order a runtime asks in), not all at once from every node."""
    reg = faulty_registry
    _, blobs = image(reg, 8)
    reg.inject("delay", method="HEAD", times=None, seconds=0.3)
    a = agent_factory(reg.host)
    st, _, _ = a.get("/v2/%s/manifests/v1" % REPO)
    assert st == 200
    wait_for(lambda: checks(a, "confirmed") == len(blobs), 20, "nine confirmed checks")
    assert all(settled(reg, d, 1) for d, _ in blobs)
    done = sorted(reg.requests("HEAD", contains="/blobs/"), key=lambda r: r["time"])
    assert len(done) == len(blobs)
    ends = [r["time"] for r in done]
    for i in range(len(ends) - 4):
        assert ends[i + 4] - ends[i] >= 0.15, ends  # never five answers in one wave
    first = {r["path"].rsplit("/", 1)[-1] for r in done[:4]}
    assert first == {d for d, _ in blobs[:4]}, (first, blobs[:4])


def test_check_ahead_bench_smoke(tmp_path):
    """bench/check-ahead-bench runs end to end (tiny image, one pull each
    way) and reports the three settings with the same upstream request
    count."""
    bench = os.path.join(REPO_ROOT, "bench", "check-ahead-bench")
    p = subprocess.run([bench, "--rtt-ms", "10", "--size-mib", "2", "--reps", "1",
                        "--bin-dir", bin_dir(), "--out-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    md = [f for f in os.listdir(tmp_path) if f.endswith(".md")]
    text = open(os.path.join(tmp_path, md[0])).read()
    rows = re.findall(r"^\| ([a-z][^|]*) \| [\d.]+ \| [\d., ]+ \| (\d+) \|$", text, re.M)
    assert [r[0].split()[0] for r in rows] == ["checks", "checks", "neither"], text
    assert [r[1] for r in rows] == ["63"] * 3, text  # 31 HEADs, 31 GETs, the manifest


def test_small_blobs_are_fetched_ahead(faulty_registry, agent_factory):
    """Confirmed blobs up to blob-prefetch-max are downloaded into the cache
    before the client asks (one upstream GET each, verified); larger ones
    wait for the client, and the client's GETs send nothing more."""
    reg = faulty_registry
    _, blobs = image(reg, 3)  # a config, then layers of 200000, 201000, 202000 bytes
    a = agent_factory(reg.host, config_extra={"blob-prefetch-max": "201000B"})
    st, _, _ = a.get("/v2/%s/manifests/v1" % REPO)
    assert st == 200

    def cached(d):
        return os.path.exists(os.path.join(a.data_dir, "blobs", "sha256", d[7:]))
    wait_for(lambda: all(cached(d) for d, _ in blobs[:3]), 20, "three blobs fetched ahead")
    assert a.metric("shoal_blobs_prefetched_total") == 3
    big = blobs[3][0]
    assert not cached(big) and reg.requests("GET", contains=big) == []
    for d, data in blobs:
        st, _, body = a.get("/v2/%s/blobs/%s" % (REPO, d))
        assert st == 200 and body == data
        assert len(reg.requests("GET", contains="/blobs/" + d)) == 1, d
    assert a.metric("shoal_cache_hits_total") == 3
