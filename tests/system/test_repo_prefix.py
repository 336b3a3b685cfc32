"""An upstream whose repositories live under a prefix, as in a Harbor
proxy-cache project or an Artifactory remote ("https://harbor.example.com"
+ "proxy-dockerhub/"): upstreams[].repo-prefix. Clients name the
repository as they know it; the agent asks for the prefixed one."""

import http.server
import json
import subprocess
import threading

import ocibuild
from conftest import http_request, layout_digests, skopeo_copy

ACCEPT = {"Accept": ocibuild.MT_OCI_MANIFEST}
PREFIX = "proxy-hub"


def test_pull_through_a_prefixed_upstream(registry, agent_factory, proxy_factory, build,
                                          tmp_path):
    b = build.image(layers=2, layer_size=40000)
    # The repository exists only under the prefix.
    registry.push(b, PREFIX + "/library/app")
    registry.push(b, PREFIX + "/library/app", "v2")
    registry.push(b, PREFIX + "/library/app", "v3")
    st, _, _ = http_request(registry.port, "GET", "/v2/library/app/manifests/" + b.tag,
                            headers=ACCEPT)
    assert st == 404
    # A recording proxy in front of the registry shows what was asked.
    proxy = proxy_factory(registry.port)
    a = agent_factory(registry.host, upstreams=[
        {"host": "hub.example", "url": "http://" + proxy.host, "repo-prefix": PREFIX + "/"}])

    # A podman/CRI-O style name: the first component names the upstream.
    out = str(tmp_path / "out")
    r = skopeo_copy("docker://%s/hub.example/library/app:%s" % (a.host, b.tag),
                    "oci:%s:%s" % (out, b.tag))
    assert r.returncode == 0, "skopeo: %s\n%s" % (r.stderr, a.logs()[-3000:])
    assert layout_digests(out, b.tag) == (b.digest, b.blob_digests())

    # containerd's form (?ns=), by digest, and HEAD.
    st, hd, body = a.get("/v2/library/app/manifests/%s?ns=hub.example" % b.digest,
                         headers=ACCEPT)
    assert st == 200 and body == b.raw
    assert hd.get("oci-namespace") == "hub.example"
    st, hd, _ = a.head("/v2/hub.example/library/app/blobs/" + b.manifest["layers"][1]["digest"])
    assert st == 200

    # Tags: the list names the client's repository.
    st, hd, body = a.get("/v2/hub.example/library/app/tags/list")
    assert st == 200, body
    assert json.loads(body) == {"name": "library/app", "tags": ["latest", "v2", "v3"]}

    # Upstream was asked for the prefixed repository only.
    paths = [r["path"] for r in proxy.requests_since(0)]
    assert len(paths) >= 5, paths
    assert all(p.startswith("/v2/%s/library/app/" % PREFIX) for p in paths), paths


class PagingTags:
    """An upstream that pages tag lists (docker-registry 2.8 does not):
    answers GET /v2/<prefix>/library/app/tags/list with two tags, the
    prefixed name and a Link to the next page, and records the paths."""

    def __init__(self):
        self.paths = []
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                srv.paths.append(self.path)
                want = "/v2/%s/library/app/tags/list" % PREFIX
                if not self.path.startswith(want):
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"name": PREFIX + "/library/app",
                                   "tags": ["a", "b"]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Link", '<%s?last=b&n=2>; rel="next"' % want)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = "127.0.0.1:%d" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_tags_page_link_names_the_client_repository(agent_factory):
    up = PagingTags()
    try:
        a = agent_factory(up.host, upstreams=[
            {"host": "hub.example", "url": "http://" + up.host, "repo-prefix": PREFIX}])
        st, hd, body = a.get("/v2/hub.example/library/app/tags/list?n=2")
        assert st == 200, body
        assert json.loads(body) == {"name": "library/app", "tags": ["a", "b"]}
        assert hd["link"] == '</v2/library/app/tags/list?last=b&n=2>; rel="next"'
        assert up.paths == ["/v2/%s/library/app/tags/list?n=2" % PREFIX]
    finally:
        up.close()


def test_bad_prefix_is_a_config_error(agent_factory, registry):
    a = agent_factory(registry.host, upstreams=[
        {"host": "hub.example", "url": "http://" + registry.host, "repo-prefix": "Proxy Hub"}],
        start=False)
    r = subprocess.run(a.argv(), capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "repo-prefix" in r.stderr and "not a repository path" in r.stderr, r.stderr
