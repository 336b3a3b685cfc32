"""Repository scoping: a client naming a registry the operator did not list
gets no cached blob of another repository.

A "private" registry (listed) holds a blob that the agent caches. A second,
unlisted registry, run here by whoever asks (a small https server in this
file), says yes to every HEAD without holding the bytes. By default unlisted
registries are refused outright (403 DENIED, nothing sent to them). With
--upstream-allow-unlisted they are reached, but their word does not open the
cache: the blob held from the private registry is refused, while a blob the
unlisted registry really serves is downloaded, verified and cached for it.

The unlisted registry is reached over verified https, as every unlisted host
is; the agent runs in a private mount namespace where the system CA bundle is
replaced by this test's certificate (root only, as CI runs)."""

import hashlib
import http.server
import os
import ssl
import subprocess
import threading

import pytest

from conftest import need_root, need_tool, oci_error_codes

OWN = b"a blob the unlisted registry really has\n" * 300
OWN_DIGEST = "sha256:" + hashlib.sha256(OWN).hexdigest()


class ClaimingRegistry:
    """https on 127.0.0.1: HEAD of any blob says 200 (with a made-up size
    unless it really has the blob), GET serves only what it has."""

    def __init__(self, workdir):
        openssl = need_tool("openssl")
        self.cert = os.path.join(workdir, "cert.pem")
        key = os.path.join(workdir, "key.pem")
        subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                        "-out", self.cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True, timeout=60)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, key)
        self.seen = []
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                srv.seen.append((self.command, self.path))
                digest = self.path.rsplit("/", 1)[-1]
                body = OWN if digest == OWN_DIGEST else None
                if "/blobs/" not in self.path or (body is None and self.command == "GET"):
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Docker-Content-Digest", digest)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body) if body else 4242))
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(body)

            do_HEAD = do_GET

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.host = "127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def claiming(tmp_path):
    os.makedirs(str(tmp_path / "claiming"), exist_ok=True)
    c = ClaimingRegistry(str(tmp_path / "claiming"))
    yield c
    c.close()


def trusting(agent, cert):
    """Runs the agent where the system CA bundle is cert, in a mount
    namespace of its own (nothing outside it changes)."""
    need_root("a private mount namespace for the agent's CA bundle")
    unshare = need_tool("unshare")
    orig = agent.argv
    agent.argv = lambda: [unshare, "--mount", "--propagation", "private", "--", "sh", "-c",
                          'mount --bind "$0" /etc/ssl/certs/ca-certificates.crt && exec "$@"',
                          cert] + orig()
    return agent


def cache_private_blob(registry, agent, build):
    repo = "team/private"
    bdir, blob = build.blob(200 * 1024)
    registry.push_blob(bdir, repo, blob["digest"])
    st, _, body = agent.get("/v2/%s/blobs/%s" % (repo, blob["digest"]))
    assert st == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == blob["digest"]
    return blob


def test_unlisted_refused_by_default(registry, agent_factory, build, claiming):
    a = trusting(agent_factory(registry.host, start=False), claiming.cert).start()
    blob = cache_private_blob(registry, a, build)
    for path in ("/v2/%s/evil/x/blobs/%s" % (claiming.host, blob["digest"]),
                 "/v2/evil/x/blobs/%s?ns=%s" % (blob["digest"], claiming.host)):
        st, _, body = a.get(path)
        assert st == 403, (path, st, body[:200])
        assert "DENIED" in oci_error_codes(body)
    assert claiming.seen == [], claiming.seen


def test_unlisted_gets_only_what_it_served(registry, agent_factory, build, claiming):
    a = trusting(agent_factory(registry.host, start=False,
                               extra_args=["--upstream-allow-unlisted"]), claiming.cert).start()
    blob = cache_private_blob(registry, a, build)
    for path in ("/v2/%s/evil/x/blobs/%s" % (claiming.host, blob["digest"]),
                 "/v2/evil/x/blobs/%s?ns=%s" % (blob["digest"], claiming.host)):
        for method in (a.get, a.head):
            st, hd, body = method(path)
            assert st == 403, (path, st, body[:200])
            assert "content-range" not in hd and len(body) < 1000
    assert ("HEAD", "/v2/evil/x/blobs/%s" % blob["digest"]) in claiming.seen
    assert not any(m == "GET" for m, _ in claiming.seen), claiming.seen
    assert "blob held from another source" in a.logs()

    # What the unlisted registry really serves is fetched, verified and kept
    # for it, and served again from the cache.
    path = "/v2/%s/evil/x/blobs/%s" % (claiming.host, OWN_DIGEST)
    for _ in range(2):
        st, _, body = a.get(path)
        assert st == 200 and body == OWN, (st, body[:200])
    assert sum(1 for m, p in claiming.seen if m == "GET" and p.endswith(OWN_DIGEST)) == 1
    # The listed registry still gets its own blob.
    st, _, body = a.get("/v2/team/private/blobs/%s" % blob["digest"])
    assert st == 200 and len(body) == blob["size"]
