"""shoal-agent configure / unconfigure against the real runtimes: containerd
(ctr --hosts-dir) and podman pull through the files configure wrote, and
unconfigure puts the files that were there back byte for byte."""

import os
import re
import subprocess

from conftest import agent_bin, metric
from test_containerd import ctr_pull
from test_podman import _cleanup_runroots, podman_env  # noqa: F401 (fixture)


def wiring(*args):
    r = subprocess.run([agent_bin()] + list(args), capture_output=True, text=True, timeout=30)
    return r


def ok(*args):
    r = wiring(*args)
    assert r.returncode == 0, "shoal-agent %s failed (%d):\n%s%s" % (
        " ".join(args), r.returncode, r.stdout, r.stderr)
    return r


def snapshot(root):
    """{relative path: bytes} of every file under root."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = fh.read()
    return out


def test_ctr_pulls_through_configured_hosts_toml(containerd, registry, agent_factory, build,
                                                  tmp_path):
    img = build.image(layers=2, layer_size=256 * 1024)
    registry.push(img, "wired/img", "v1")
    a = agent_factory(registry.host)

    # A node that already has a hosts.toml for this registry (straight to
    # it, no mirror) and a containerd config.toml without config_path.
    etc = tmp_path / "etc-containerd"
    certs = etc / "certs.d"
    (certs / registry.host).mkdir(parents=True)
    original_hosts = ('# the operator\'s file\nserver = "http://%s"\n' % registry.host).encode()
    (certs / registry.host / "hosts.toml").write_bytes(original_hosts)
    original_config = b'version = 2\n\n[plugins."io.containerd.grpc.v1.cri"]\n  x = 1\n'
    (etc / "config.toml").write_bytes(original_config)
    before = snapshot(str(etc))

    args = ["--registry", "%s=http://%s" % (registry.host, registry.host), "--mirror", a.url,
            "--config-dir", str(certs), "--containerd-config", str(etc / "config.toml")]
    r = ok("configure", "containerd", *args)
    assert "previous file is kept" in r.stdout
    hosts = (certs / registry.host / "hosts.toml").read_text()
    assert 'server = "http://%s"' % registry.host in hosts
    assert '[host."%s"]' % a.url in hosts
    assert 'capabilities = ["pull", "resolve"]' in hosts
    assert "skip_verify" not in hosts and "ca =" not in hosts
    assert 'config_path = "%s"' % certs in (etc / "config.toml").read_text()

    # Idempotent: the second run changes no byte.
    after_first = snapshot(str(etc))
    r = ok("configure", "containerd", *args)
    assert "wrote" not in r.stdout
    assert snapshot(str(etc)) == after_first

    digest = ctr_pull(containerd, str(certs), "%s/wired/img:v1" % registry.host)
    assert digest == img.digest
    # The pull went through the agent: containerd added ?ns= to its requests.
    lines = a.request_log_lines()
    ns = r"ns=127\.0\.0\.1(:|%%3[aA])%d" % registry.port
    for d in img.blob_digests():
        assert any(re.search(r"path=/v2/wired/img/blobs/%s\?\S*%s" % (d, ns), ln)
                   and "status=200" in ln for ln in lines), \
            "blob %s not pulled through the agent:\n%s" % (d, "\n".join(lines))
    assert a.metric("shoal_cache_misses_total") >= len(img.blob_digests())

    r = ok("unconfigure", "containerd", "--config-dir", str(certs), "--containerd-config",
           str(etc / "config.toml"))
    assert "restored" in r.stdout
    assert snapshot(str(etc)) == before
    assert (certs / registry.host / "hosts.toml").read_bytes() == original_hosts
    assert (etc / "config.toml").read_bytes() == original_config


def test_ctr_pulls_through_default_namespace(containerd, registry, agent_factory, build, tmp_path):
    """--all writes certs.d/_default/hosts.toml without a server line: every
    registry without a directory of its own goes through the agent."""
    img = build.image(layers=1, layer_size=128 * 1024)
    registry.push(img, "any/img", "v2")
    a = agent_factory(registry.host)
    certs = tmp_path / "certs.d"
    ok("configure", "containerd", "--all", "--mirror", a.url, "--config-dir", str(certs),
       "--no-containerd-config")
    assert "server =" not in (certs / "_default" / "hosts.toml").read_text()
    hits = a.metric("shoal_http_requests_total", code="200")
    digest = ctr_pull(containerd, str(certs), "%s/any/img:v2" % registry.host, ns="wireddefault")
    assert digest == img.digest
    assert a.metric("shoal_http_requests_total", code="200") > hits
    ok("unconfigure", "containerd", "--config-dir", str(certs), "--no-containerd-config")
    assert os.listdir(str(certs)) == []


def test_podman_pulls_through_configured_dropin(registry, agent_factory, build, tmp_path):
    img = build.image(layers=2, layer_size=200 * 1024)
    registry.push(img, "wired/podman", "v1")
    # podman reaches the mirror as MIRROR/<registry name>: a name without a
    # port, mapped to the test registry in the agent's upstreams.
    alias = "registry.shoal.test"
    a = agent_factory("127.0.0.1:1", upstreams=[
        {"host": alias, "url": registry.url, "insecure": False}])

    # podman reads the drop-ins of $HOME/.config/containers/registries.conf.d
    # next to the main file named by CONTAINERS_REGISTRIES_CONF.
    argv, env = podman_env(tmp_path, "unqualified-search-registries = []\n")
    home = tmp_path / "home"
    dropins = home / ".config" / "containers" / "registries.conf.d"
    dropins.mkdir(parents=True)
    original = b'# the operator\'s drop-in\n[[registry]]\nprefix = "other.example"\n'
    (dropins / "shoal.conf").write_bytes(original)
    env["HOME"] = str(home)
    before = snapshot(str(dropins))

    args = ["--registry", alias, "--mirror", a.url, "--config-dir", str(dropins)]
    ok("configure", "podman", *args)
    text = (dropins / "shoal.conf").read_text()
    assert 'location = "%s/%s"' % (a.host, alias) in text
    after_first = snapshot(str(dropins))
    ok("configure", "podman", *args)
    assert snapshot(str(dropins)) == after_first

    ref = "%s/wired/podman:v1" % alias
    r = subprocess.run(argv + ["pull", "--quiet", ref], env=env, capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, "podman pull failed:\n%s\n%s" % (r.stdout, r.stderr)
    r2 = subprocess.run(argv + ["image", "inspect", "--format", "{{.Digest}}", ref], env=env,
                        capture_output=True, text=True, timeout=60)
    assert r2.returncode == 0, r2.stderr
    assert r2.stdout.strip() == img.digest
    lines = a.request_log_lines()
    for d in img.blob_digests():
        assert any("/v2/%s/wired/podman/blobs/%s" % (alias, d) in ln and "status=200" in ln
                   for ln in lines), "blob %s not pulled through the agent" % d
    assert metric(a.metrics(), "shoal_client_tx_bytes_total") >= sum(
        l["size"] for l in img.manifest["layers"])

    ok("unconfigure", "podman", "--config-dir", str(dropins))
    assert snapshot(str(dropins)) == before
    assert (dropins / "shoal.conf").read_bytes() == original


def test_configure_errors_name_the_path(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n'
                   '  config_path = "/etc/docker/certs.d"\n')
    r = wiring("configure", "containerd", "--all", "--config-dir", str(tmp_path / "certs.d"),
               "--containerd-config", str(cfg))
    assert r.returncode == 1
    assert str(cfg) in r.stderr and "/etc/docker/certs.d" in r.stderr
    assert not (tmp_path / "certs.d").exists()

    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "certs.d").write_text("a file where a directory should be")
    r = wiring("configure", "containerd", "--registry", "docker.io", "--config-dir",
               str(ro / "certs.d"), "--no-containerd-config")
    assert r.returncode == 1
    assert str(ro / "certs.d") in r.stderr

    r = wiring("configure", "podman", "--all")
    assert r.returncode == 2 and "catch-all" in r.stderr
    r = wiring("configure", "containerd", "--help")
    assert r.returncode == 0 and "unconfigure" in r.stdout
