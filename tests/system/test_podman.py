"""podman pulls through shoal-agent configured as a registries.conf mirror
with path-prefix mapping (location = AGENT/<registry host>): the agent sees
/v2/<registry host>/<repo>/... and picks the upstream from that host.

A docker reference cannot hold "host:port" as a path component, so the
mirror location uses a port-less registry name ("registry.shoal.test")
that the agent's "upstreams" list maps to the test registry, just as
docker.io maps to https://registry-1.docker.io."""

import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import metric, need_tool


_runroots = []


@pytest.fixture(autouse=True)
def _cleanup_runroots():
    yield
    while _runroots:
        shutil.rmtree(_runroots.pop(), ignore_errors=True)


def podman_env(tmp_path, registries_conf):
    """Private podman configuration: registries.conf, vfs storage, file
    events, cgroupfs; nothing touches the host's podman state."""
    base = tmp_path / "podman"
    base.mkdir(exist_ok=True)
    root = base / "root"
    # podman refuses a runroot longer than 50 characters.
    runroot = tempfile.mkdtemp(prefix="shoal-pdm-", dir="/tmp")
    _runroots.append(runroot)
    (base / "registries.conf").write_text(registries_conf)
    (base / "storage.conf").write_text(
        '[storage]\ndriver = "vfs"\ngraphroot = "%s"\nrunroot = "%s"\n' % (root, runroot))
    (base / "containers.conf").write_text(
        '[engine]\nevents_logger = "file"\ncgroup_manager = "cgroupfs"\n'
        'events_logfile_path = "%s"\n' % (base / "events.log"))
    env = dict(os.environ)
    env.update(CONTAINERS_REGISTRIES_CONF=str(base / "registries.conf"),
               CONTAINERS_STORAGE_CONF=str(base / "storage.conf"),
               CONTAINERS_CONF=str(base / "containers.conf"),
               TMPDIR=str(base))
    argv = [need_tool("podman"), "--root", str(root), "--runroot", runroot,
            "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
            "--events-backend", "file"]
    return argv, env


def mirror_conf(registry_host, mirror_location):
    return ('unqualified-search-registries = []\n\n'
            '[[registry]]\nprefix = "%s"\nlocation = "%s"\ninsecure = true\n\n'
            '[[registry.mirror]]\nlocation = "%s"\ninsecure = true\n'
            % (registry_host, registry_host, mirror_location))


def podman_pull_and_inspect(tmp_path, registries_conf, ref):
    argv, env = podman_env(tmp_path, registries_conf)
    r = subprocess.run(argv + ["pull", "--quiet", ref], env=env, capture_output=True,
                       text=True, timeout=180)
    assert r.returncode == 0, "podman pull failed:\n%s\n%s" % (r.stdout, r.stderr)
    r2 = subprocess.run(argv + ["image", "inspect", "--format", "{{.Digest}}", ref], env=env,
                        capture_output=True, text=True, timeout=60)
    assert r2.returncode == 0, r2.stderr
    return r.stdout.strip(), r2.stdout.strip()


def test_podman_pull_through_mirror(registry, agent_factory, build, tmp_path):
    img = build.image(layers=3, layer_size=256 * 1024)
    registry.push(img, "podman/img", "v1")
    # The agent's default upstream is a dead port: only the path prefix
    # can lead it to the registry.
    alias = "registry.shoal.test"
    a = agent_factory("127.0.0.1:1", upstreams=[
        {"host": alias, "url": registry.url, "insecure": False},
        {"host": registry.host, "url": registry.url, "insecure": False}])
    before = a.metrics()
    ref = "%s/podman/img:v1" % registry.host
    conf = mirror_conf(registry.host, "%s/%s" % (a.host, alias))
    image_id, digest = podman_pull_and_inspect(tmp_path, conf, ref)
    assert digest == img.digest
    # The image id of an OCI image is the config digest.
    assert image_id.replace("sha256:", "") == img.manifest["config"]["digest"][7:]

    after = a.metrics()
    assert metric(after, "shoal_http_requests_total", code="200") > \
        metric(before, "shoal_http_requests_total", code="200")
    assert metric(after, "shoal_client_tx_bytes_total") >= sum(
        l["size"] for l in img.manifest["layers"])
    lines = a.request_log_lines()
    prefix = "/v2/%s/podman/img/" % alias
    for d in img.blob_digests():
        assert any(prefix + "blobs/" + d in ln and "status=200" in ln for ln in lines), \
            "no request log line for blob %s via %s:\n%s" % (d, prefix, "\n".join(lines))
    assert any(prefix + "manifests/" in ln for ln in lines)
