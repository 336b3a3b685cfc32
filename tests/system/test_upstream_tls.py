"""An https upstream keeps its bytes and its credentials on TLS: a redirect
from it to plain http is refused (nothing reaches the http server), and a
Bearer challenge naming a plain http realm, even on the upstream's own host,
gets no Basic credentials. The upstream here is a small TLS server in this
file with an openssl-made certificate that the agent trusts through the
entry's "ca-file"."""

import base64
import hashlib
import http.server
import os
import ssl
import subprocess
import threading

import pytest

from conftest import need_tool, oci_error_codes

USER, PASSWORD = "robot", "s3cret-Pa55"
BLOB = b"shoal tls test blob\n" * 512
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


class Recorder:
    """A threaded HTTP(S) server on 127.0.0.1 whose answers come from
    route(handler) and which records (path, Authorization) of each request."""

    def __init__(self, route, tls=None):
        self.seen = []
        self.lock = threading.Lock()
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                with srv.lock:
                    srv.seen.append((self.path, self.headers.get("Authorization")))
                route(self)

            do_HEAD = do_GET

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def requests(self):
        with self.lock:
            return list(self.seen)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def send(h, status, headers=None, body=b""):
    h.send_response(status)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


@pytest.fixture
def servers(tmp_path):
    """(https upstream, plain http server, ca file); the upstream's routes
    are set per test through upstream.route_to."""
    openssl = need_tool("openssl")
    key, cert = str(tmp_path / "key.pem"), str(tmp_path / "cert.pem")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    routes = {}
    up = Recorder(lambda h: routes["up"](h), tls=ctx)
    plain = Recorder(lambda h: routes["plain"](h))
    up.route_to = lambda f: routes.__setitem__("up", f)
    plain.route_to = lambda f: routes.__setitem__("plain", f)
    plain.route_to(lambda h: send(h, 200, {"Docker-Content-Digest": DIGEST}, BLOB))
    yield up, plain, cert
    up.close()
    plain.close()


def tls_agent(agent_factory, up, cert):
    host = "127.0.0.1:%d" % up.port
    entry = {"host": host, "url": "https://" + host, "ca-file": cert,
             "username": USER, "password": PASSWORD}
    a = agent_factory(host, upstreams=[entry], start=False)
    a.upstream = "https://" + host
    return a.start()


def test_https_to_http_redirect_refused(servers, agent_factory):
    up, plain, cert = servers
    target = "http://127.0.0.1:%d/blob" % plain.port

    def route(h):
        if h.path.startswith("/v2/tls/img/blobs/"):
            send(h, 307, {"Location": target})
        else:
            send(h, 404)
    up.route_to(route)
    a = tls_agent(agent_factory, up, cert)
    st, _, body = a.get("/v2/tls/img/blobs/" + DIGEST)
    assert st in (502, 503), (st, body[:300])
    assert "UNAVAILABLE" in oci_error_codes(body)
    assert up.requests(), "the agent never reached the https upstream"
    assert plain.requests() == [], plain.requests()
    assert "redirect away from https refused" in a.logs()


def test_https_redirect_to_https_still_followed(servers, agent_factory):
    up, plain, cert = servers

    def route(h):
        if h.path.startswith("/v2/tls/img/blobs/"):
            send(h, 307, {"Location": "/data/blob"})
        elif h.path == "/data/blob":
            send(h, 200, {"Docker-Content-Digest": DIGEST}, BLOB)
        else:
            send(h, 404)
    up.route_to(route)
    a = tls_agent(agent_factory, up, cert)
    st, _, body = a.get("/v2/tls/img/blobs/" + DIGEST)
    assert st == 200 and body == BLOB, (st, body[:200])


def test_http_realm_of_https_upstream_gets_no_credentials(servers, agent_factory):
    up, plain, cert = servers
    realm = "http://127.0.0.1:%d/token" % plain.port
    token = "tok-" + "x" * 20
    plain.route_to(lambda h: send(h, 200, {"Content-Type": "application/json"},
                                  ('{"token": "%s"}' % token).encode()))

    def route(h):
        if h.headers.get("Authorization") == "Bearer " + token:
            send(h, 200, {"Docker-Content-Digest": DIGEST, "Content-Type":
                          "application/octet-stream"}, BLOB)
        else:
            send(h, 401, {"WWW-Authenticate": 'Bearer realm="%s",service="s",scope="x"' % realm})
    up.route_to(route)
    a = tls_agent(agent_factory, up, cert)
    st, _, body = a.get("/v2/tls/img/blobs/" + DIGEST)
    # The anonymous token works here; what matters is what the realm saw.
    assert st == 200 and body == BLOB, (st, body[:200])
    seen = plain.requests()
    assert seen and all(path.startswith("/token?") for path, _ in seen), seen
    assert all(auth is None for _, auth in seen), seen
    basic = "Basic " + base64.b64encode(("%s:%s" % (USER, PASSWORD)).encode()).decode()
    assert all(auth != basic for _, auth in up.requests())
    assert "credentials withheld" in a.logs()
