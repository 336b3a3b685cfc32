"""containerd (ctr) pulls through shoal-agent configured as a hosts.toml
mirror; containerd adds ?ns=<registry host> to mirror requests."""

import re

from conftest import metric


def write_hosts(tmp_path, registry_host, mirror_url):
    d = tmp_path / "hosts.d" / registry_host
    d.mkdir(parents=True)
    (d / "hosts.toml").write_text(
        'server = "http://%s"\n\n[host."%s"]\n  capabilities = ["pull", "resolve"]\n'
        % (registry_host, mirror_url))
    return str(tmp_path / "hosts.d")


def ctr_pull(containerd, hosts_dir, ref, ns="shoaltest"):
    r = containerd.ctr("-n", ns, "images", "pull", "--hosts-dir", hosts_dir,
                       "--snapshotter", "native", "--platform", "linux/amd64", ref)
    assert r.returncode == 0, "ctr pull failed:\n%s\n%s" % (r.stdout, r.stderr)
    ls = containerd.ctr("-n", ns, "images", "ls")
    assert ls.returncode == 0, ls.stderr
    for ln in ls.stdout.splitlines()[1:]:
        cols = ln.split()
        if cols and cols[0] == ref:
            return cols[2]
    raise AssertionError("%s not listed:\n%s" % (ref, ls.stdout))


def test_ctr_pull_through_mirror(containerd, registry, agent_factory, build, tmp_path):
    img = build.image(layers=2, layer_size=300 * 1024)
    registry.push(img, "ctr/img", "v1")
    a = agent_factory(registry.host)
    before = a.metrics()
    hosts = write_hosts(tmp_path, registry.host, a.url)
    digest = ctr_pull(containerd, hosts, "%s/ctr/img:v1" % registry.host)
    assert digest == img.digest

    # Unpacked into the native snapshotter: the content store holds every blob.
    r = containerd.ctr("-n", "shoaltest", "content", "ls", "-q")
    assert r.returncode == 0
    for d in img.blob_digests():
        assert d in r.stdout

    after = a.metrics()
    assert metric(after, "shoal_http_requests_total", code="200") > \
        metric(before, "shoal_http_requests_total", code="200")
    lines = a.request_log_lines()
    # containerd URL-encodes the ':' of host:port in ?ns=; accept both forms.
    ns = r"ns=127\.0\.0\.1(:|%%3[aA])%d" % registry.port
    for d in img.blob_digests():
        assert any(re.search(r"path=/v2/ctr/img/blobs/%s\?\S*%s" % (d, ns), ln)
                   and "status=200" in ln for ln in lines), \
            "no request log line for blob %s with %s:\n%s" % (d, ns, "\n".join(lines))
    assert any(re.search(r"path=/v2/ctr/img/manifests/\S*%s" % ns, ln) for ln in lines)
