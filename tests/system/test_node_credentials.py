"""The node's registry credentials: the agent reads them from a docker
config.json (--docker-config) or a directory of mounted pull secrets
(--pull-secrets-dir), as containerd never forwards imagePullSecrets to a
mirror. Pulls of private images work with credentials from those files
only; a rotated password (in the file and in the registry's htpasswd) is
taken on SIGHUP or on the file's change without a restart, and a download
in flight completes. Secrets never reach the log."""

import base64
import hashlib
import http.client
import json
import os
import signal
import subprocess
import threading
import urllib.parse

import ocibuild
from conftest import (agent_bin, free_port, http_request, layout_digests, need_tool,
                      oci_error_codes, skopeo_copy, wait_for)
from test_token_auth import SERVICE, token_setup, upstream_entry  # noqa: F401 (a fixture)

USER = "robot"
PW1, PW2 = "first-Pa55word", "second-Pa55word"
ACCEPT = {"Accept": ocibuild.MT_OCI_MANIFEST}


def b64(s):
    return base64.b64encode(s.encode()).decode()


def write_atomic(path, text):
    """As kubelet and `docker login` replace files: a new file renamed over
    the old one."""
    tmp = str(path) + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, str(path))


def docker_config(path, host, password, form="auth", scheme=""):
    if form == "auth":
        entry = {"auth": b64("%s:%s" % (USER, password))}
    else:
        entry = {"username": USER, "password": password}
    write_atomic(path, json.dumps({"auths": {scheme + host: entry}}))


def set_htpasswd(reg, password):
    """The registry (docker-registry 2.8 rereads its htpasswd file when it
    changes) now takes only the new password."""
    out = subprocess.run([need_tool("htpasswd"), "-Bbn", USER, password], check=True,
                         capture_output=True, text=True).stdout
    write_atomic(os.path.join(reg.workdir, "htpasswd"), out.strip() + "\n")
    reg.auth = (USER, password)

    def takes_it():
        hdr = {"Authorization": "Basic " + b64("%s:%s" % (USER, password))}
        return http_request(reg.port, "GET", "/v2/", headers=hdr, timeout=5)[0] == 200
    wait_for(takes_it, 10, "registry taking the new password")


def no_secrets_logged(agent, *secrets):
    logs = agent.logs()
    for s in secrets:
        for form in (s, b64("%s:%s" % (USER, s))):
            assert form not in logs, "a secret reached the agent's log"


def pull(agent, name, built, tmp_path, tag="out"):
    out = str(tmp_path / tag)
    r = skopeo_copy("docker://%s/%s:%s" % (agent.host, name, built.tag),
                    "oci:%s:%s" % (out, built.tag))
    assert r.returncode == 0, "skopeo: %s\nagent log:\n%s" % (r.stderr, agent.logs()[-3000:])
    assert layout_digests(out, built.tag) == (built.digest, built.blob_digests())


def reload_lines(agent, why):
    return [ln for ln in agent.logs().splitlines()
            if "credentials reloaded" in ln and "why=%s" % why in ln]


def test_private_image_with_credentials_from_config_json_only(registry_factory, agent_factory,
                                                              build, tmp_path):
    reg = registry_factory(auth=(USER, PW1))
    b = build.image(layers=2, layer_size=50000)
    reg.push(b, "private/app")
    cfg = tmp_path / "config.json"
    # The key as `docker login` writes it for a plain-http registry.
    docker_config(cfg, reg.host, PW1, scheme="http://")
    # Its "upstreams" entry holds no credentials: only the file does.
    a = agent_factory(reg.host, extra_args=["--docker-config", str(cfg)])
    pull(a, "private/app", b, tmp_path)
    assert a.metric("shoal_credentials_registries") == 1
    # Without the file: 401, so the file is what opened the door.
    plain = agent_factory(reg.host)
    st, _, body = plain.get("/v2/private/app/manifests/" + b.tag, headers=ACCEPT)
    assert st == 401 and "UNAUTHORIZED" in oci_error_codes(body)
    log = a.logs()
    assert "comp=credentials host=%s kind=basic file=%s" % (reg.host, cfg) in log
    no_secrets_logged(a, PW1)
    # The status says where the upstream's credentials come from, never what
    # they are; shoalctl status prints it.
    st, _, body = a.get("/_shoal/status")
    assert st == 200 and PW1 not in body.decode() and USER not in body.decode()
    doc = json.loads(body)
    assert doc["upstreams"][0]["auth"] == "node:basic"
    assert doc["upstreams"][0]["auth_file"] == str(cfg)
    assert doc["node_credentials"]["registries"] == 1
    assert doc["node_credentials"]["last_reload_ok"] is True
    st, _, body = plain.get("/_shoal/status")
    assert json.loads(body)["upstreams"][0]["auth"] == "anonymous"
    r = subprocess.run([os.path.join(os.path.dirname(agent_bin()), "shoalctl"), "status",
                        "--agent", "http://%s" % a.host], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert "node:basic from %s" % cfg in r.stdout and "1 registries from 1 files" in r.stdout, \
        r.stdout


def test_username_password_form_and_own_config_first(registry_factory, agent_factory, build,
                                                     tmp_path):
    """An entry with "username"/"password" works; an "upstreams" entry with
    credentials of its own is used before the file."""
    reg = registry_factory(auth=(USER, PW1))
    b = build.image(layers=1, layer_size=20000)
    reg.push(b, "private/form")
    cfg = tmp_path / "config.json"
    docker_config(cfg, reg.host, PW1, form="fields")
    a = agent_factory(reg.host, extra_args=["--docker-config", str(cfg)])
    st, _, _ = a.get("/v2/private/form/manifests/" + b.tag, headers=ACCEPT)
    assert st == 200
    # A wrong password in the file does not matter when the config has
    # the right one.
    bad = tmp_path / "bad.json"
    docker_config(bad, reg.host, "not-the-password")
    own = agent_factory(reg.host, username=USER, password=PW1,
                        extra_args=["--docker-config", str(bad)])
    st, _, _ = own.get("/v2/private/form/manifests/" + b.tag, headers=ACCEPT)
    assert st == 200


class BlobReader(threading.Thread):
    """GETs a blob through the agent and hashes it as it streams."""

    def __init__(self, agent, path):
        super().__init__(daemon=True)
        self.agent, self.path = agent, path
        self.status, self.digest, self.size, self.error = None, None, 0, None

    def run(self):
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.agent.port, timeout=120)
            c.request("GET", self.path)
            r = c.getresponse()
            self.status = r.status
            h = hashlib.sha256()
            while True:
                chunk = r.read(1 << 16)
                if not chunk:
                    break
                h.update(chunk)
                self.size += len(chunk)
            self.digest = "sha256:" + h.hexdigest()
            c.close()
        except Exception as e:  # reported by the test
            self.error = e


def test_rotation_with_sighup_keeps_pulls_and_download_in_flight(registry_factory, agent_factory,
                                                                 proxy_factory, build, tmp_path):
    reg = registry_factory(auth=(USER, PW1))
    big = build.image(layers=1, layer_size=32 << 20)
    reg.push(big, "private/big")
    small = build.image(layers=2, layer_size=30000)
    reg.push(small, "private/small")
    # A slow link, so the big layer is still coming when the password turns.
    proxy = proxy_factory(reg.port, rate=6 << 20)
    cfg = tmp_path / "config.json"
    docker_config(cfg, proxy.host, PW1)
    a = agent_factory(proxy.host, extra_args=["--docker-config", str(cfg),
                                              "--credentials-check-interval", "0"])
    pid = a.proc.pid
    layer = big.manifest["layers"][0]
    reader = BlobReader(a, "/v2/private/big/blobs/" + layer["digest"])
    reader.start()
    wait_for(lambda: a.metric("shoal_upstream_bytes_total") > 2 << 20, 30,
             "the big layer half way")

    # Rotate: the registry takes only PW2 from now on; the file says PW2;
    # SIGHUP comes before the change event's debounce would.
    set_htpasswd(reg, PW2)
    docker_config(cfg, proxy.host, PW2)
    a.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: reload_lines(a, "SIGHUP"), 10, "the SIGHUP reload")
    assert a.metric("shoal_credentials_reloads_total", result="changed") >= 1
    assert reader.is_alive() and reader.size < layer["size"], "the download was not in flight"

    # New pulls authenticate with PW2 (the old one is refused upstream).
    pull(a, "private/small", small, tmp_path, "small")
    reader.join(120)
    assert not reader.is_alive() and reader.error is None, reader.error
    assert reader.status == 200
    assert reader.size == layer["size"] and reader.digest == layer["digest"]
    assert a.alive() and a.proc.pid == pid, "the agent restarted"
    assert "msg=stopped" not in a.logs()
    no_secrets_logged(a, PW1, PW2)


def test_rotation_by_file_change_alone(registry_factory, agent_factory, build, tmp_path):
    """No SIGHUP: the change of the file (inotify on its directory) is
    enough."""
    reg = registry_factory(auth=(USER, PW1))
    b = build.image(layers=1, layer_size=10000)
    reg.push(b, "private/watch")
    d = tmp_path / "docker"
    d.mkdir()
    cfg = d / "config.json"
    docker_config(cfg, reg.host, PW1)
    a = agent_factory(reg.host, extra_args=["--docker-config", str(cfg),
                                            "--credentials-check-interval", "0"])
    st, _, _ = a.get("/v2/private/watch/manifests/" + b.tag, headers=ACCEPT)
    assert st == 200
    set_htpasswd(reg, PW2)
    st, _, _ = a.get("/v2/private/watch/blobs/" + b.manifest["config"]["digest"], headers=ACCEPT)
    assert st == 401  # the agent still has PW1
    docker_config(cfg, reg.host, PW2)
    wait_for(lambda: reload_lines(a, "file-change"), 10, "the reload on file change")
    st, _, body = a.get("/v2/private/watch/blobs/" + b.manifest["config"]["digest"])
    assert st == 200, body


def k8s_secret_dir(root, name, text, generation):
    """A Secret volume as kubelet writes it: the data in a timestamped
    directory, a ..data link to it swapped atomically on update, and the key
    as a link through ..data."""
    d = root / name
    d.mkdir(exist_ok=True)
    gen = d / ("..2024_01_01_00_00_0%d.000" % generation)
    gen.mkdir()
    (gen / ".dockerconfigjson").write_text(text)
    tmp = d / "..data_tmp"
    if os.path.lexists(str(tmp)):
        os.unlink(str(tmp))
    os.symlink(gen.name, str(tmp))
    os.replace(str(tmp), str(d / "..data"))
    key = d / ".dockerconfigjson"
    if not os.path.lexists(str(key)):
        os.symlink("..data/.dockerconfigjson", str(key))


def test_pull_secrets_dir_as_kubernetes_mounts_it(registry_factory, agent_factory, build,
                                                  tmp_path):
    reg = registry_factory(auth=(USER, PW1))
    other = registry_factory(auth=("other", "other-pw"))
    b = build.image(layers=1, layer_size=10000)
    reg.push(b, "private/k8s")
    o = build.ormb(size=5000)
    other.push(o, "private/model")
    root = tmp_path / "pull-secrets"
    root.mkdir()
    cfg1 = json.dumps({"auths": {reg.host: {"auth": b64("%s:%s" % (USER, PW1))}}})
    k8s_secret_dir(root, "regcred", cfg1, 1)
    # A second secret, projected as a plain file next to the mounts.
    (root / "other.json").write_text(json.dumps(
        {"auths": {"http://" + other.host: {"username": "other", "password": "other-pw"}}}))
    a = agent_factory(reg.host, upstreams=[
        {"host": reg.host, "url": "http://" + reg.host},
        {"host": other.host, "url": "http://" + other.host}],
        extra_args=["--pull-secrets-dir", str(root), "--credentials-check-interval", "0"])
    assert a.metric("shoal_credentials_registries") == 2
    st, _, _ = a.get("/v2/private/k8s/manifests/" + b.tag, headers=ACCEPT)
    assert st == 200
    st, _, _ = a.get("/v2/%s/private/model/manifests/%s" % (other.host, o.tag), headers=ACCEPT)
    assert st == 200
    # kubelet updates the Secret: ..data now points at the new generation.
    set_htpasswd(reg, PW2)
    k8s_secret_dir(root, "regcred", json.dumps(
        {"auths": {reg.host: {"auth": b64("%s:%s" % (USER, PW2))}}}), 2)
    wait_for(lambda: reload_lines(a, "file-change"), 10, "the reload after the Secret update")
    st, _, body = a.get("/v2/private/k8s/blobs/" + b.manifest["config"]["digest"])
    assert st == 200, body
    no_secrets_logged(a, PW1, PW2)


def test_broken_file_keeps_previous_credentials(registry_factory, agent_factory, build,
                                                tmp_path):
    reg = registry_factory(auth=(USER, PW1))
    b = build.image(layers=1, layer_size=10000)
    reg.push(b, "private/keep")
    cfg = tmp_path / "config.json"
    docker_config(cfg, reg.host, PW1)
    a = agent_factory(reg.host, extra_args=["--docker-config", str(cfg)])
    write_atomic(cfg, '{"auths": {"%s": {"auth": ' % reg.host)  # cut short
    a.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: a.metric("shoal_credentials_reloads_total", result="failed") >= 1, 10,
             "the failed reload")
    assert a.metric("shoal_credentials_last_reload_ok") == 0
    assert "credentials not reloaded; the previous ones stay in use" in a.logs()
    st, _, _ = a.get("/v2/private/keep/manifests/" + b.tag, headers=ACCEPT)
    assert st == 200
    # A broken file at start is a start-up error that names it.
    r = subprocess.run([agent_bin(), "--listen", "127.0.0.1:%d" % free_port(), "--admin-listen",
                        "off", "--data-dir", str(tmp_path / "other-data"), "--upstream",
                        "http://" + reg.host, "--docker-config", str(cfg)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and str(cfg) in r.stderr and "not JSON" in r.stderr, r.stderr


def test_identity_token_goes_to_the_token_service_in_a_post(token_setup, agent_factory, build,
                                                            tmp_path):
    """An "identitytoken" (what `docker login` stores for Azure and other
    OAuth2 registries) is a refresh token: it goes to the token realm as an
    OAuth2 refresh_token grant in a POST body, never in a URL."""
    ts, reg = token_setup(creds=("nobody", "no-Basic-login-works"))
    repo = "tok/idtoken"
    b = build.image(layers=1, layer_size=20000)
    reg.push_with_token(b, repo)
    refresh = "refresh-Tok3n-for-the-node"
    posts = []

    def do_POST(h):
        n = int(h.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(h.rfile.read(n).decode(), keep_blank_values=True)
        posts.append({"path": h.path, "form": form, "type": h.headers.get("Content-Type")})
        ok = (form.get("grant_type") == ["refresh_token"] and form.get("refresh_token") == [refresh]
              and form.get("service") == [SERVICE])
        if ok:
            tok, _ = ts.mint("idtoken-user", " ".join(form.get("scope", [])).split())
            body = json.dumps({"access_token": tok, "expires_in": 300}).encode()
            h.send_response(200)
        else:
            body = b'{"error":"invalid_grant"}'
            h.send_response(401)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
    ts.httpd.RequestHandlerClass.do_POST = do_POST

    cfg = tmp_path / "config.json"
    write_atomic(cfg, json.dumps({"auths": {reg.host: {
        "username": "00000000-0000-0000-0000-000000000000", "identitytoken": refresh}}}))
    # The realm is another origin over plain http: listed in token-realms.
    a = agent_factory(reg.host, upstreams=[upstream_entry(reg, ts)],
                      extra_args=["--docker-config", str(cfg)])
    pull(a, repo, b, tmp_path)
    assert posts, "no POST to the token service"
    p = posts[0]
    assert p["path"] == "/token" and p["type"] == "application/x-www-form-urlencoded"
    assert p["form"]["client_id"] == ["shoal"]
    assert "repository:%s:pull" % repo in p["form"]["scope"]
    assert all(refresh not in r["path"] and not r["query"] for r in ts.seen()), ts.seen()
    assert "comp=credentials host=%s kind=identitytoken" % reg.host in a.logs()
    assert refresh not in a.logs()
