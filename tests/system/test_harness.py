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
