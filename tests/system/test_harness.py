"""Checks of the test harness itself (builder, pusher, registry fixture,
throttling proxy, the skip-or-fail rule), without shoal-agent: a failure here
is a harness bug."""

import glob
import hashlib
import os
import re
import subprocess
import sys
import time

import ocibuild
from conftest import (HERE, REPO_ROOT, TOOL_PACKAGES, http_request, layout_digests,
                      skopeo_copy)


def test_builder_is_reproducible(tmp_path):
    a = ocibuild.build_image(str(tmp_path / "a"), "t", layers=2, layer_size=3000, seed="s")
    b = ocibuild.build_image(str(tmp_path / "b"), "t", layers=2, layer_size=3000, seed="s")
    c = ocibuild.build_image(str(tmp_path / "c"), "t", layers=2, layer_size=3000, seed="x")
    assert a.digest == b.digest
    assert a.digest != c.digest
    assert len(a.manifest["layers"]) == 2


def test_push_and_pull_straight_from_registry(registry, build, tmp_path):
    for b in (build.image(layers=2, layer_size=10000), build.ormb(size=5000),
              build.modelpack(size=5000), build.multilayer()):
        digest = registry.push(b, "harness/x", b.tag)
        assert digest == b.digest
        out = str(tmp_path / ("out-" + b.digest[7:19]))
        r = skopeo_copy("docker://%s/harness/x:%s" % (registry.host, b.tag),
                        "oci:%s:%s" % (out, b.tag))
        assert r.returncode == 0, r.stderr
        assert layout_digests(out, b.tag) == (b.digest, b.blob_digests())


def test_proxy_throttles_and_records_range(registry, build, proxy_factory):
    d, desc = build.blob(1 << 20)
    registry.push_blob(d, "harness/blob", desc["digest"])
    p = proxy_factory(registry.port, rate=2 << 20)
    t0 = time.monotonic()
    st, hd, body = http_request(p.port, "GET", "/v2/harness/blob/blobs/" + desc["digest"],
                                headers={"Range": "bytes=100-"})
    dt = time.monotonic() - t0
    assert st == 206
    assert len(body) == (1 << 20) - 100
    assert 0.3 < dt < 3, dt
    reqs = [r for r in p.requests if "/blobs/" in r["path"]]
    assert reqs and reqs[-1]["range"] == "bytes=100-" and reqs[-1]["method"] == "GET"
    p.rate = None
    st, _, body = http_request(p.port, "GET", "/v2/harness/blob/blobs/" + desc["digest"])
    assert st == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == desc["digest"]


def test_registry_stop_start_keeps_content(registry, build):
    b = build.image(layers=1, layer_size=100)
    registry.push(b, "harness/keep")
    registry.stop()
    registry.start()
    st, hd, _ = http_request(registry.port, "HEAD", "/v2/harness/keep/manifests/" + b.tag,
                             headers={"Accept": ocibuild.MT_OCI_MANIFEST})
    assert st == 200 and hd["docker-content-digest"] == b.digest


def test_no_test_skips_by_itself():
    """Every skip goes through conftest's unavailable() (fails under CI) or
    by_design(); a bare skip, skipif or importorskip in a test file would
    let a missing tool pass CI unnoticed."""
    bad = []
    for path in sorted(glob.glob(os.path.join(HERE, "*.py"))):
        if os.path.basename(path) == "conftest.py":
            continue
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if re.search(r"pytest\.(skip|importorskip)\b|\bskipif\(|\bxfail\(", line):
                    bad.append("%s:%d: %s" % (os.path.basename(path), n, line.strip()))
    assert not bad, "route these through conftest.unavailable()/by_design():\n" + "\n".join(bad)


def test_installer_provides_every_tool():
    """Each tool a system test needs is in deploy/install-deps.sh's list."""
    with open(os.path.join(REPO_ROOT, "deploy", "install-deps.sh")) as f:
        text = f.read()
    m = re.search(r"^PKGS=\((.*?)^\)", text, re.S | re.M)
    assert m, "no PKGS=( ... ) list in deploy/install-deps.sh"
    pkgs = set(m.group(1).split())
    missing = sorted({"%s (for %s)" % (p, t) for t, p in TOOL_PACKAGES.items() if p not in pkgs})
    assert not missing, "deploy/install-deps.sh does not install: %s" % ", ".join(missing)
    for p in ("python3-pytest", "clang-format", "libcmocka-dev"):
        assert p in pkgs, p


def test_missing_tool_skips_here_and_fails_in_ci(tmp_path):
    """The same missing tool is a skip outside CI and a failure naming the
    tool and `make deps` under CI=true."""
    probe = tmp_path / "test_probe.py"
    probe.write_text("import sys\n"
                     "sys.path.insert(0, %r)\n"
                     "from conftest import need_tool\n\n\n"
                     "def test_needs_a_tool():\n"
                     "    need_tool('shoal-no-such-tool')\n" % HERE)

    def run(ci):
        env = {k: v for k, v in os.environ.items() if k != "CI"}
        if ci:
            env["CI"] = "true"
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p",
                               "no:cacheprovider", str(probe)], cwd=str(tmp_path), env=env,
                              capture_output=True, text=True, timeout=120)
    here = run(False)
    assert here.returncode == 0 and "1 skipped" in here.stdout, here.stdout + here.stderr
    assert "shoal-no-such-tool is not installed" in here.stdout, here.stdout
    ci = run(True)
    assert ci.returncode == 1 and "1 failed" in ci.stdout, ci.stdout + ci.stderr
    assert "shoal-no-such-tool is not installed" in ci.stdout, ci.stdout
    assert "make deps" in ci.stdout, ci.stdout


def test_faulty_registry_serves_and_injects(tmp_path):
    """faultyregistry.py: the pull API with Range and digests, and each
    fault as documented, counted."""
    import socket as _socket
    import faultyregistry as fr
    reg = fr.FaultyRegistry().start()
    try:
        data = fr.blob_bytes(3 << 20, "harness")
        d = reg.add_blob("h/blob", data)
        path = "/v2/h/blob/blobs/" + d
        st, hd, _ = http_request(reg.port, "HEAD", path)
        assert st == 200 and hd["docker-content-digest"] == d
        assert int(hd["content-length"]) == len(data)
        st, hd, body = http_request(reg.port, "GET", path, headers={"Range": "bytes=100-199"})
        assert st == 206 and body == data[100:200]
        assert hd["content-range"] == "bytes 100-199/%d" % len(data)
        st, _, _ = http_request(reg.port, "GET", "/v2/h/other/blobs/" + d)
        assert st == 404
        # corrupt: one byte flipped, once, only where the range covers it
        f = reg.inject("corrupt", path=d, offset=1000, times=1)
        st, _, body = http_request(reg.port, "GET", path, headers={"Range": "bytes=2000-2999"})
        assert body == data[2000:3000] and f.fired == 0
        st, _, body = http_request(reg.port, "GET", path)
        assert st == 200 and len(body) == len(data) and body != data
        assert sum(1 for a, b in zip(body, data) if a != b) == 1 and body[1000] != data[1000]
        st, _, body = http_request(reg.port, "GET", path)
        assert body == data and f.fired == 1
        # status: an HTML 503, then served again
        reg.inject("status", path=d, status=503, times=1)
        st, hd, body = http_request(reg.port, "GET", path)
        assert st == 503 and b"<html>" in body and hd["content-type"] == "text/html"
        reg.inject("status", path=d, status=429, headers={"Retry-After": "1"}, times=1)
        st, hd, _ = http_request(reg.port, "GET", path)
        assert st == 429 and hd["retry-after"] == "1"
        # reset: the connection breaks after `after` bytes
        reg.inject("reset", path=d, after=1 << 20, times=1)
        s = _socket.create_connection(("127.0.0.1", reg.port), timeout=10)
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
        got = b""
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                got += b
        except ConnectionResetError:
            pass
        s.close()
        body = got.partition(b"\r\n\r\n")[2]
        assert 0 < len(body) <= 1 << 20 and body == data[:len(body)], len(body)
        # slow: the body takes len/rate seconds
        reg.inject("slow", path=d, rate=8 << 20, times=1)
        t0 = time.monotonic()
        st, _, body = http_request(reg.port, "GET", path)
        assert body == data and time.monotonic() - t0 >= 0.3
        # Two ranges, three whole bodies (one corrupted; the 503 and 429 had
        # none) and the reset's 1 MiB; the last chunk is counted a moment
        # after the client has it.
        want = 100 + 1000 + 3 * len(data) + (1 << 20)
        deadline = time.monotonic() + 5
        while reg.bytes_served(d) != want and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reg.bytes_served(d) == want, (reg.bytes_served(d), want)
        assert [r["fault"] for r in reg.requests("GET", d)][-6:] == \
            ["corrupt", None, "status", "status", "reset", "slow"]
    finally:
        reg.stop()
