"""The Bearer token flow end to end: a real docker-registry with `auth: token`
trusts a certificate made here with openssl; a small token server in this
file signs RS256 JWTs with its key. The agent answers the registry's 401
challenge by fetching a token from the realm (with the Basic credentials of
its "upstreams" entry when it has some), caches it for its lifetime and
fetches a fresh one once it expires."""

import base64
import http.server
import json
import os
import subprocess
import threading
import time
import urllib.parse
import uuid

import pytest

import ocibuild
from conftest import (REGISTRY_BIN, Registry, http_request, layout_digests, need_tool,
                      oci_error_codes, skopeo_copy)

SERVICE = "shoal-test-registry"
ISSUER = "shoal-test-issuer"
USER, PASSWORD = "tokuser", "t0ken-Pa55"
ACCEPT = {"Accept": ocibuild.MT_OCI_MANIFEST}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """GET /token?service=...&scope=repository:<name>:<actions> -> a JWT
    signed with an openssl-made RSA key, whose self-signed certificate the
    registry trusts as its root bundle. Records every request."""

    def __init__(self, workdir, creds=None, expires_in=300):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.creds = creds  # (user, password) required, or None: anonymous
        self.expires_in = expires_in
        self.key = os.path.join(workdir, "key.pem")
        self.cert = os.path.join(workdir, "cert.pem")
        openssl = need_tool("openssl")
        subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", self.key, "-out", self.cert, "-days", "2",
                        "-subj", "/CN=shoal-test-token-signer"],
                       check=True, capture_output=True, timeout=60)
        der = subprocess.run([openssl, "x509", "-in", self.cert, "-outform", "DER"],
                             check=True, capture_output=True, timeout=30).stdout
        self.x5c = base64.b64encode(der).decode()
        self.lock = threading.Lock()
        self.requests = []  # {"path", "query", "authorization", "status"}
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                srv._handle(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.realm = "http://127.0.0.1:%d/token" % self.port
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    def mint(self, subject, scopes, expires_in=None):
        """A signed JWT granting pull (and push when asked) on each
        repository scope."""
        now = int(time.time())
        life = self.expires_in if expires_in is None else expires_in
        access = []
        for s in scopes:
            typ, _, rest = s.partition(":")
            name, _, actions = rest.rpartition(":")
            if typ != "repository" or not name:
                continue
            granted = [a for a in actions.split(",") if a in ("pull", "push")]
            access.append({"type": "repository", "name": name, "actions": granted})
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + life,
                  "nbf": now - 1, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing_input = (b64url(json.dumps(header).encode()) + "." +
                         b64url(json.dumps(claims).encode()))
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key],
                             input=signing_input.encode(), check=True, capture_output=True,
                             timeout=30).stdout
        return signing_input + "." + b64url(sig), now

    def _handle(self, h):
        u = urllib.parse.urlsplit(h.path)
        q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        authz = h.headers.get("Authorization")
        status = 200
        if u.path != "/token":
            status = 404
        elif q.get("service") != [SERVICE]:
            status = 400
        elif self.creds is not None:
            want = "Basic " + base64.b64encode(("%s:%s" % self.creds).encode()).decode()
            if authz != want:
                status = 401
        with self.lock:
            self.requests.append({"path": u.path, "query": q, "authorization": authz,
                                  "status": status})
        if status != 200:
            body = json.dumps({"details": "refused (%d)" % status}).encode()
            h.send_response(status)
            if status == 401:
                h.send_header("WWW-Authenticate", 'Basic realm="shoal-test-token"')
        else:
            subject = self.creds[0] if self.creds else ""
            tok, now = self.mint(subject, q.get("scope", []))
            body = json.dumps({"token": tok, "expires_in": self.expires_in,
                               "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                          time.gmtime(now))}).encode()
            h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def seen(self):
        with self.lock:
            return list(self.requests)

    def count(self):
        with self.lock:
            return len(self.requests)


class TokenRegistry(Registry):
    """docker-registry that trusts the token server's certificate."""

    def __init__(self, workdir, tokens):
        super().__init__(workdir)
        self.tokens = tokens
        with open(self.config) as f:
            cfg = json.load(f)
        cfg["log"]["level"] = "info"  # token rejections are logged at info
        cfg["auth"] = {"token": {"realm": tokens.realm, "service": SERVICE,
                                 "issuer": ISSUER, "rootcertbundle": tokens.cert}}
        with open(self.config, "w") as f:
            json.dump(cfg, f, indent=2)

    def push_with_token(self, built, repo):
        """Pushes the image with a push,pull token minted by the token
        server (the registry's /v2/ API over plain http)."""
        tok, _ = self.tokens.mint("pusher", ["repository:%s:push,pull" % repo])
        cli = ocibuild.RegistryClient(self.host)
        cli.auth = "Bearer " + tok
        lay = built.layout
        desc, raw, man = lay.manifest_for(built.tag)
        for b in [man["config"]] + man.get("layers", []):
            cli.push_blob_file(repo, lay.blob_path(b["digest"]), b["digest"], b["size"])
        cli.put_manifest(repo, built.tag, raw, man.get("mediaType") or ocibuild.MT_OCI_MANIFEST)
        return desc["digest"]


@pytest.fixture
def token_setup(tmp_path):
    """make(creds=None, expires_in=300) -> (TokenServer, TokenRegistry)."""
    need_tool(REGISTRY_BIN)
    made = []

    def make(creds=None, expires_in=300):
        n = len(made) + 1
        ts = TokenServer(str(tmp_path / ("tokens%d" % n)), creds, expires_in)
        made.append(ts)
        reg = TokenRegistry(str(tmp_path / ("tokreg%d" % n)), ts)
        made.append(reg)
        reg.start()
        # The registry really asks for a Bearer token from our realm.
        st, hd, _ = http_request(reg.port, "GET", "/v2/", timeout=10)
        assert st == 401, "registry without token -> %d" % st
        chal = hd.get("www-authenticate", "")
        assert chal.startswith("Bearer ") and ts.realm in chal, chal
        return ts, reg
    yield make
    for obj in reversed(made):
        if isinstance(obj, TokenServer):
            obj.close()
        else:
            obj.stop()


def upstream_entry(reg, ts, user=None, password=None, token_realms=True):
    """The agent's "upstreams" entry for the token registry; its realm (the
    token server, another port) listed in token-realms unless told not to."""
    e = {"host": reg.host, "url": "http://" + reg.host}
    if user is not None:
        e["username"] = user
        e["password"] = password
    if token_realms:
        e["token-realms"] = ["http://127.0.0.1:%d" % ts.port]
    return e


def token_fetches(agent):
    return agent.metric("shoal_upstream_token_fetches_total")


def pull(agent, repo, built, out):
    r = skopeo_copy("docker://%s/%s:%s" % (agent.host, repo, built.tag),
                    "oci:%s:%s" % (out, built.tag))
    assert r.returncode == 0, "skopeo: %s\nagent log:\n%s" % (r.stderr, agent.logs()[-3000:])
    assert layout_digests(out, built.tag) == (built.digest, built.blob_digests())


def scopes_seen(ts):
    return [s for r in ts.seen() for s in r["query"].get("scope", [])]


def test_anonymous_token_flow_and_token_cache(token_setup, agent_factory, build, tmp_path):
    ts, reg = token_setup()
    repo = "tok/img"
    b = build.multilayer()
    reg.push_with_token(b, repo)
    assert ts.count() == 0  # the push token was minted directly

    a = agent_factory(reg.host)
    pull(a, repo, b, str(tmp_path / "out1"))
    n1 = token_fetches(a)
    assert n1 >= 1
    assert ts.count() == n1, (n1, ts.seen())
    assert "repository:%s:pull" % repo in scopes_seen(ts), ts.seen()
    assert all(r["status"] == 200 and r["authorization"] is None for r in ts.seen()), ts.seen()

    # Again, within the token's lifetime: the tag still goes upstream (no
    # tag cache), with the cached token.
    up0 = a.metric("shoal_upstream_requests_total")
    pull(a, repo, b, str(tmp_path / "out2"))
    assert a.metric("shoal_upstream_requests_total") > up0
    assert token_fetches(a) == n1
    assert ts.count() == n1, ts.seen()


def test_token_server_requires_basic_credentials(token_setup, agent_factory, build, tmp_path):
    ts, reg = token_setup(creds=(USER, PASSWORD))
    repo = "tok/private"
    b = build.image(layers=2, layer_size=30000)
    reg.push_with_token(b, repo)

    # The realm is on another port of plain http: it gets the credentials
    # only because the upstream entry lists it (token-realms).
    a = agent_factory(reg.host, upstreams=[upstream_entry(reg, ts, USER, PASSWORD)])
    pull(a, repo, b, str(tmp_path / "out"))
    want = "Basic " + base64.b64encode(("%s:%s" % (USER, PASSWORD)).encode()).decode()
    seen = ts.seen()
    assert seen and all(r["authorization"] == want and r["status"] == 200 for r in seen), seen
    assert "repository:%s:pull" % repo in scopes_seen(ts)
    assert token_fetches(a) == len(seen)

    layer = b.manifest["layers"][0]["digest"]
    # No credentials; wrong ones; right ones for a realm not listed.
    for password, listed in ((None, True), ("wrong", True), (PASSWORD, False)):
        kw = {"password": password, "token-realms": listed}
        entry = upstream_entry(reg, ts, USER if password else None, password, listed)
        other = agent_factory(reg.host, upstreams=[entry])
        before = ts.count()
        for path in ("/v2/%s/manifests/%s" % (repo, b.tag), "/v2/%s/blobs/%s" % (repo, layer)):
            st, _, body = other.get(path, headers=ACCEPT)
            assert st == 401, "%s with %s -> %d %r" % (path, kw, st, body[:200])
            assert "UNAUTHORIZED" in oci_error_codes(body)
        refused = ts.seen()[before:]
        assert refused and all(r["status"] == 401 for r in refused), refused
        if not listed:
            # Right credentials, but the realm (another port, plain http) is
            # not the upstream's own origin and not listed: withheld.
            assert all(r["authorization"] is None for r in refused), refused
            assert "credentials withheld" in other.logs()
        st, _, _ = other.get("/_shoal/health")
        assert st == 200


def test_expired_token_is_fetched_again(token_setup, agent_factory, build, tmp_path):
    ts, reg = token_setup(expires_in=2)
    repo = "tok/short"
    b = build.image(layers=1, layer_size=10000)
    reg.push_with_token(b, repo)
    a = agent_factory(reg.host)
    path = "/v2/%s/manifests/%s" % (repo, b.tag)

    st, hd, body = a.get(path, headers=ACCEPT)
    assert st == 200 and body == b.raw, (st, body[:200])
    n1 = token_fetches(a)
    assert n1 >= 1 and ts.count() == n1
    assert "expires_in=2" in a.logs()

    time.sleep(3)  # the token's real lifetime runs out
    st, hd, body = a.get(path, headers=ACCEPT)
    assert st == 200 and body == b.raw and hd.get("docker-content-digest") == b.digest
    n2 = token_fetches(a)
    assert n2 > n1
    assert ts.count() == n2
    assert scopes_seen(ts)[-1] == "repository:%s:pull" % repo
    out = str(tmp_path / "out")
    pull(a, repo, b, out)
