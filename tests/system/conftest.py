"""Fixtures for the shoal system tests.

Every fixture starts real processes on 127.0.0.1, on ports picked by binding
port 0, and stops them by PID (terminate, wait, kill) even when the test
fails.

A test that cannot run here (a tool deploy/install-deps.sh installs is
missing, it needs root, a service cannot start) goes through unavailable():
outside CI it skips with the reason; under CI=true, where CI runs as root
after `make deps` on a clean clone, the same condition fails the test, so a
broken installer or environment cannot hide behind a skip. No test calls
pytest.skip or skipif itself (test_harness.py checks that).
"""

import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import ocibuild  # noqa: E402

REGISTRY_BIN = "/usr/bin/docker-registry"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long multi-agent runs whose paths smaller tests "
                            "also take (skipped in make test's ASan pass, ASAN_PYTEST_MARK)")
    config.addinivalue_line("markers", "image: builds the container image from source (make test "
                            "runs it beside the fuzz targets, not in the system passes)")


@pytest.fixture(autouse=True)
def _drop_big_files(tmp_path):
    """pytest keeps the last runs' temp dirs; the large blobs in them (GBs
    over a few runs: the fault matrix alone caches 32 MiB in some thirty
    data dirs) are useless for debugging, so they go after the test (after
    every process fixture has stopped, as this one is set up first)."""
    yield
    root = str(tmp_path)
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            try:
                if os.path.getsize(p) >= (16 << 20):
                    os.unlink(p)
            except OSError:
                pass


# ------------------------------------------------------------------ utils --

_HANDED_OUT = set()


def free_port():
    """A port that was free a moment ago (bind 0, read, close), never one
    this test process handed out before: two picks in a row may otherwise get
    the same port from the kernel (a peer and an admin listener collided)."""
    for _ in range(200):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no fresh free port after 200 tries")


def bin_dir():
    d = os.environ.get("SHOAL_BIN_DIR", os.path.join(REPO_ROOT, "build", "bin"))
    if not os.path.isabs(d):
        d = os.path.join(REPO_ROOT, d)
    return d


def agent_bin():
    return os.path.join(bin_dir(), "shoal-agent")


def under_asan():
    return "asan" in bin_dir()


def in_ci():
    """True when CI=true (or 1/yes): CI runs as root after `make deps`."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


# Tools the system tests run, and the Debian package deploy/install-deps.sh
# installs each from (test_harness.py checks that the installer lists them).
TOOL_PACKAGES = {
    REGISTRY_BIN: "docker-registry",
    "skopeo": "skopeo",
    "podman": "podman",
    "/usr/bin/containerd": "containerd",
    "ctr": "containerd",
    "htpasswd": "apache2-utils",
    "openssl": "openssl",
    "ip": "iproute2",
    "mount": "mount",
    "umount": "mount",
    "curl": "curl",
    "prlimit": "util-linux",
    "unshare": "util-linux",
    "redis-server": "redis-server",
    "redis-cli": "redis-server",
}


def unavailable(reason, fix="run `make deps` (deploy/install-deps.sh)"):
    """The one way a system test gives up because its environment lacks
    something: skips with reason and fix outside CI, fails under CI=true
    (where the installer and root are given, so the lack is a bug)."""
    if in_ci():
        pytest.fail("%s; under CI (CI=true, root, after `make deps`) this is a failure, "
                    "not a skip: %s" % (reason, fix), pytrace=False)
    pytest.skip("%s (%s)" % (reason, fix))


def by_design(condition, reason):
    """A skipif mark for tests left out on purpose (not for want of a tool):
    they skip under CI too. Use unavailable() for anything the environment
    should provide."""
    return pytest.mark.skipif(condition, reason=reason)


def need_tool(path_or_name):
    """Returns the tool's path; unavailable() when it is missing."""
    p = path_or_name if os.path.isabs(path_or_name) else shutil.which(path_or_name)
    if not p or not os.access(p, os.X_OK):
        pkg = TOOL_PACKAGES.get(path_or_name)
        unavailable("%s is not installed" % path_or_name,
                    "run `make deps`, which installs it%s"
                    % (" (Debian package %s)" % pkg if pkg else ""))
    return p


def need_root(why):
    """unavailable() unless running as root."""
    if os.geteuid() != 0:
        unavailable("%s needs root" % why, "run the tests as root, as CI does after `make deps`")


def stop_process(proc, sig=signal.SIGTERM, timeout=10):
    """Stops one process we started, by PID: signal, wait, then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return proc.returncode if proc else None
    try:
        proc.send_signal(sig)
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=10)


def tail(path, n=40):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError:
        return "(no %s)" % path


def http_request(port, method, path, headers=None, body=None, timeout=30, host="127.0.0.1"):
    """One request on a fresh connection: (status, headers lower-cased, body)."""
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


def raw_request(port, data, timeout=15):
    """Sends raw bytes, reads until the server closes (or Content-Length is
    satisfied) and returns (status, headers lower-cased, body). Used where
    http.client would normalise or refuse a path or header."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    buf = b""
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            # The server may answer (431) and close before reading all of it.
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                break
            except socket.timeout:
                break
            if not b:
                break
            buf += b
            head, sep, body = buf.partition(b"\r\n\r\n")
            if sep:
                m = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
                if m and len(body) >= int(m.group(1)):
                    break
                if head.startswith(b"HTTP/1.1 1"):
                    continue
                if b"HEAD " == data[:5] and sep:
                    break
    finally:
        s.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines or not lines[0].startswith("HTTP/"):
        raise AssertionError("no HTTP response, got %r" % buf[:200])
    status = int(lines[0].split()[1])
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, body


def oci_error_codes(body):
    """Codes of an OCI error JSON body; raises if the body is not one."""
    doc = json.loads(body)
    errs = doc["errors"]
    assert isinstance(errs, list) and errs, "empty errors list: %r" % body
    for e in errs:
        assert isinstance(e.get("code"), str) and "message" in e, "bad error entry %r" % e
    return [e["code"] for e in errs]


_METRIC_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text -> {name: value} for unlabelled samples and
    {(name, (("label","v"),...)): value} for labelled ones; also a
    name -> sum over all label sets under key ("sum", name)."""
    out = {}
    for ln in text.splitlines():
        if not ln or ln.startswith("#"):
            continue
        m = _METRIC_RE.match(ln)
        if not m:
            continue
        name, labels, val = m.group(1), m.group(2), m.group(3)
        try:
            v = float(val)
        except ValueError:
            continue
        if labels:
            key = (name, tuple(sorted(_LABEL_RE.findall(labels))))
            out[key] = v
        else:
            out[name] = v
        out[("sum", name)] = out.get(("sum", name), 0.0) + v
    return out


def metric(m, name, **labels):
    """A sample from parse_metrics() output (0 when absent)."""
    if labels:
        return m.get((name, tuple(sorted(labels.items()))), 0.0)
    if name in m:
        return m[name]
    return m.get(("sum", name), 0.0)


def wait_for(pred, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


# --------------------------------------------------------------- registry --

class Registry:
    """docker-registry serving plain http on 127.0.0.1 with a temp storage
    dir. stop()/start() keep the storage and the port (offline tests)."""

    def __init__(self, workdir, auth=None):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.storage = os.path.join(workdir, "storage")
        self.port = free_port()
        self.host = "127.0.0.1:%d" % self.port
        self.url = "http://" + self.host
        self.auth = auth  # (user, password) or None
        self.proc = None
        self.log = os.path.join(workdir, "registry.log")
        cfg = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": self.storage},
                        "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": self.host, "secret": "shoal-system-tests"},
        }
        if auth:
            htp = os.path.join(workdir, "htpasswd")
            out = subprocess.run([need_tool("htpasswd"), "-Bbn", auth[0], auth[1]],
                                 check=True, capture_output=True, text=True).stdout
            with open(htp, "w") as f:
                f.write(out.strip() + "\n")
            cfg["auth"] = {"htpasswd": {"realm": "shoal-test-realm", "path": htp}}
        # JSON is YAML: no YAML library needed.
        self.config = os.path.join(workdir, "config.yml")
        with open(self.config, "w") as f:
            json.dump(cfg, f, indent=2)

    def start(self):
        assert self.proc is None or self.proc.poll() is not None
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", self.config],
                                     stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        logf.close()

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("docker-registry exited: %s" % tail(self.log))
            try:
                st, _, _ = http_request(self.port, "GET", "/v2/", timeout=2)
                return st in (200, 401)
            except OSError:
                return False
        wait_for(up, 15, "docker-registry on %s" % self.host)
        return self

    def stop(self):
        stop_process(self.proc)

    def client(self):
        u, p = self.auth if self.auth else (None, None)
        return ocibuild.RegistryClient(self.host, u, p)

    def push(self, built, repo, tag=None):
        """Pushes an ocibuild.Built (or layout dir) over HTTP; returns digest."""
        u, p = self.auth if self.auth else (None, None)
        d = built.layout.path if hasattr(built, "layout") else built
        src = built.tag if hasattr(built, "tag") else tag
        dst = tag or src
        return ocibuild.push_layout_http(d, self.host, repo, src, u, p, dest_tag=dst)[dst]

    def push_blob(self, layout_dir, repo, digest):
        u, p = self.auth if self.auth else (None, None)
        return ocibuild.push_blob_http(layout_dir, self.host, repo, digest, u, p)


@pytest.fixture
def registry_factory(tmp_path):
    need_tool(REGISTRY_BIN)
    started = []
    n = [0]

    def make(auth=None):
        n[0] += 1
        r = Registry(str(tmp_path / ("registry%d" % n[0])), auth=auth).start()
        started.append(r)
        return r
    yield make
    for r in started:
        r.stop()


@pytest.fixture
def registry(registry_factory):
    return registry_factory()


# ------------------------------------------------------------------ agent --

class Agent:
    """One shoal-agent process with its own data dir, config and logs."""

    def __init__(self, workdir, upstream, upstreams=None, extra_args=None, config_extra=None,
                 port=None):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.data_dir = os.path.join(workdir, "data")
        self.port = port or free_port()
        self.host = "127.0.0.1:%d" % self.port
        # The admin listener (metrics, health, readiness) on a port of its
        # own: the default 127.0.0.1:5082 would clash between agents.
        self.admin_port = free_port()
        self.url = "http://" + self.host
        self.upstream = upstream
        self.extra_args = list(extra_args or [])
        self.stderr_path = os.path.join(workdir, "agent.stderr")
        self.stdout_path = os.path.join(workdir, "agent.stdout")
        self.config = os.path.join(workdir, "agent.json")
        cfg = {"upstreams": list(upstreams or [])}
        cfg.update(config_extra or {})
        with open(self.config, "w") as f:
            json.dump(cfg, f, indent=2)
        self.proc = None
        self.generation = 0
        self.crashed_ok = False  # set by tests that kill -9 on purpose

    def argv(self):
        return [agent_bin(), "--listen", self.host, "--admin-listen",
                "127.0.0.1:%d" % self.admin_port, "--data-dir", self.data_dir,
                "--upstream", self.upstream, "--config", self.config,
                "--log-level", "info"] + self.extra_args

    def start(self, timeout=10):
        path = agent_bin()
        if not os.access(path, os.X_OK):
            pytest.fail("shoal-agent not built at %s (set SHOAL_BIN_DIR)" % path)
        self.generation += 1
        with open(self.stderr_path, "ab") as ef, open(self.stdout_path, "ab") as of:
            ef.write(("\n==== start %d ====\n" % self.generation).encode())
            ef.flush()
            self.proc = subprocess.Popen(self.argv(), stdout=of, stderr=ef,
                                         stdin=subprocess.DEVNULL, cwd=self.workdir)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("shoal-agent exited with %s at startup:\n%s"
                                     % (self.proc.returncode, tail(self.stderr_path)))
            try:
                st, _, _ = http_request(self.port, "GET", "/_shoal/health", timeout=2)
                return st == 200
            except OSError:
                return False
        try:
            wait_for(up, timeout, "shoal-agent /_shoal/health on %s" % self.host)
        except AssertionError as e:
            stop_process(self.proc, signal.SIGKILL)
            pytest.fail("%s\nstderr tail:\n%s" % (e, tail(self.stderr_path)))
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM; returns the exit code."""
        return stop_process(self.proc)

    def kill9(self):
        self.proc.kill()
        self.proc.wait(timeout=10)

    def restart(self):
        if self.alive():
            self.stop()
        return self.start()

    def get(self, path, headers=None, timeout=60):
        return http_request(self.port, "GET", path, headers=headers, timeout=timeout)

    def head(self, path, headers=None, timeout=60):
        return http_request(self.port, "HEAD", path, headers=headers, timeout=timeout)

    def admin(self, path, timeout=10):
        """GET path on the admin listener: (status, headers, body)."""
        return http_request(self.admin_port, "GET", path, timeout=timeout)

    def metrics_text(self):
        """/metrics from the admin listener, where Prometheus scrapes it."""
        st, _, body = self.admin("/metrics")
        assert st == 200, "GET /metrics -> %d" % st
        return body.decode()

    def metrics(self):
        return parse_metrics(self.metrics_text())

    def metric(self, name, **labels):
        return metric(self.metrics(), name, **labels)

    def logs(self):
        out = []
        for p in (self.stderr_path, self.stdout_path):
            try:
                with open(p, "rb") as f:
                    out.append(f.read().decode("utf-8", "replace"))
            except OSError:
                pass
        return "\n".join(out)

    def request_log_lines(self):
        return [ln for ln in self.logs().splitlines() if "comp=http" in ln and "path=" in ln]

    def sanitizer_errors(self):
        bad = []
        for ln in self.logs().splitlines():
            if "ERROR: AddressSanitizer" in ln or "runtime error:" in ln \
                    or "ERROR: LeakSanitizer" in ln:
                bad.append(ln)
        return bad


@pytest.fixture
def agent_factory(tmp_path):
    """make(upstream_host_port, ...) -> started Agent. The config has an
    "upstreams" entry for that host (plain http) unless upstreams= is given.
    At teardown every agent must still be alive (or been killed on purpose)
    and, under ASan, its logs must be free of sanitizer reports."""
    agents = []
    n = [0]

    def make(upstream, upstreams=None, extra_args=None, config_extra=None, start=True,
             username=None, password=None, password_file=None):
        n[0] += 1
        if upstreams is None:
            e = {"host": upstream, "url": "http://" + upstream, "insecure": False}
            if username is not None:
                e["username"] = username
            if password is not None:
                e["password"] = password
            if password_file is not None:
                e["password-file"] = password_file
            upstreams = [e]
        a = Agent(str(tmp_path / ("agent%d" % n[0])), "http://" + upstream, upstreams,
                  extra_args, config_extra)
        agents.append(a)
        if start:
            a.start()
        return a
    yield make
    problems = []
    for a in agents:
        if a.proc is None:
            continue
        if not a.alive() and not a.crashed_ok:
            problems.append("agent %s died (exit %s):\n%s"
                            % (a.host, a.proc.returncode, tail(a.stderr_path)))
        if a.alive():
            rc = a.stop()
            if rc not in (0, None) and not a.crashed_ok:
                problems.append("agent %s exited %s on SIGTERM:\n%s"
                                % (a.host, rc, tail(a.stderr_path)))
        if under_asan():
            bad = a.sanitizer_errors()
            if bad:
                problems.append("sanitizer reports in agent %s:\n%s\n%s"
                                % (a.host, "\n".join(bad[:10]), tail(a.stderr_path, 80)))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def agent(agent_factory, registry):
    """An agent whose default upstream is the `registry` fixture."""
    return agent_factory(registry.host)


# ------------------------------------------------------------------ redis --

class RedisServer:
    """redis-server on 127.0.0.1 and a port picked by binding 0, no
    persistence (or an append-only file under workdir with persist=True, so a
    restart keeps the data), stopped by PID."""

    def __init__(self, workdir, password=None, persist=False):
        self.bin = need_tool("redis-server")
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.port = free_port()
        self.password = password
        self.persist = persist
        self.log = os.path.join(workdir, "redis.log")
        self.proc = None

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def start(self):
        args = [self.bin, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", self.workdir,
                "--save", "", "--appendonly", "yes" if self.persist else "no",
                "--logfile", self.log, "--daemonize", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("redis-server exited: %s" % tail(self.log))
            try:
                return self.cli("PING", timeout=2).strip() in ("PONG", "NOAUTH")
            except (OSError, subprocess.SubprocessError):
                return False
        wait_for(up, 15, "redis-server on port %d" % self.port)
        return self

    def cli(self, *args, timeout=10):
        cmd = [need_tool("redis-cli"), "-h", "127.0.0.1", "-p", str(self.port), "--no-raw"]
        if self.password:
            cmd += ["--no-auth-warning", "-a", self.password]
        r = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout)
        return r.stdout

    def info(self, section):
        """INFO section as a dict of strings."""
        out = {}
        for ln in self.cli("INFO", section).splitlines():
            ln = ln.strip().strip('"')
            if ":" in ln and not ln.startswith("#"):
                k, _, v = ln.partition(":")
                out[k] = v
        return out

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self):
        return stop_process(self.proc)


@pytest.fixture
def redis_factory(tmp_path):
    """make(password=None, persist=False) -> a started RedisServer; every one
    is stopped by PID afterwards."""
    made = []

    def make(password=None, persist=False):
        r = RedisServer(str(tmp_path / ("redis%d" % len(made))), password=password,
                        persist=persist)
        made.append(r)
        return r.start()
    yield make
    for r in made:
        r.stop()


# ------------------------------------------------------------------ proxy --

class ThrottleProxy:
    """TCP proxy on 127.0.0.1 forwarding to target_port, with a shared
    token-bucket limit (bytes/s, None = unlimited) on the upstream->client
    direction. It parses the client->upstream stream and records each
    request head: {"time", "line", "method", "path", "range", "conn"}."""

    def __init__(self, target_port, rate=None):
        self.target_port = target_port
        self.rate = rate
        self.lock = threading.Lock()
        self.tokens = 0.0
        self.last = time.monotonic()
        self.requests = []
        self.bytes_down = 0
        self.conns = 0
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.host = "127.0.0.1:%d" % self.port
        self.closing = False
        self.socks = set()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.closing:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                c.close()
                continue
            u.settimeout(None)
            with self.lock:
                self.conns += 1
                cid = self.conns
                self.socks.update((c, u))
            threading.Thread(target=self._up, args=(c, u, cid), daemon=True).start()
            threading.Thread(target=self._down, args=(u, c), daemon=True).start()

    def _take(self, n):
        """Blocks until n bytes may pass."""
        while True:
            rate = self.rate
            if not rate:
                return
            with self.lock:
                now = time.monotonic()
                # A small burst allowance keeps the rate smooth without
                # letting a pause turn into a large burst.
                self.tokens = min(self.tokens + (now - self.last) * rate, rate / 20.0)
                self.last = now
                if self.tokens >= n:
                    self.tokens -= n
                    return
                wait = (n - self.tokens) / rate
            time.sleep(min(max(wait, 0.001), 0.05))

    def _up(self, c, u, cid):
        """client -> upstream, recording request heads."""
        buf = b""
        skip = 0
        try:
            while True:
                b = c.recv(65536)
                if not b:
                    break
                u.sendall(b)
                buf += b
                while True:
                    if skip:
                        k = min(skip, len(buf))
                        buf = buf[k:]
                        skip -= k
                        if skip:
                            break
                    head, sep, rest = buf.partition(b"\r\n\r\n")
                    if not sep:
                        if len(buf) > 1 << 20:
                            buf = b""
                        break
                    self._record(head, cid)
                    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                    skip = int(m.group(1)) if m else 0
                    buf = rest
        except OSError:
            pass
        finally:
            for s in (u, c):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _record(self, head, cid):
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        rng = None
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            if k.strip().lower() == "range":
                rng = v.strip()
        with self.lock:
            self.requests.append({"time": time.monotonic(), "line": lines[0],
                                  "method": parts[0], "path": parts[1] if len(parts) > 1 else "",
                                  "range": rng, "conn": cid})

    def _down(self, u, c):
        try:
            while True:
                want = 65536
                r = self.rate
                if r:
                    want = max(1024, min(65536, int(r / 50)))
                b = u.recv(want)
                if not b:
                    break
                self._take(len(b))
                c.sendall(b)
                with self.lock:
                    self.bytes_down += len(b)
        except OSError:
            pass
        finally:
            for s in (c, u):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def requests_since(self, t):
        with self.lock:
            return [r for r in self.requests if r["time"] >= t]

    def close(self):
        self.closing = True
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            socks = list(self.socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass


@pytest.fixture
def proxy_factory():
    made = []

    def make(target_port, rate=None):
        p = ThrottleProxy(target_port, rate)
        made.append(p)
        return p
    yield make
    for p in made:
        p.close()


# ------------------------------------------------------- images / layouts --

@pytest.fixture
def build(tmp_path):
    """Access to the ocibuild module with a fresh directory per call:
    build.image(...), build.ormb(...), build.modelpack(...), build.blob(size)."""
    class B:
        n = 0

        def _dir(self, what):
            B.n += 1
            return str(tmp_path / ("%s%d" % (what, B.n)))

        def image(self, **kw):
            return ocibuild.build_image(self._dir("image"), **kw)

        def multilayer(self, **kw):
            return ocibuild.build_multilayer(self._dir("multi"), **kw)

        def ormb(self, **kw):
            return ocibuild.build_ormb(self._dir("ormb"), **kw)

        def modelpack(self, **kw):
            return ocibuild.build_modelpack(self._dir("modelpack"), **kw)

        def blob(self, size, seed=None):
            d = self._dir("blob")
            desc = ocibuild.build_blob(d, size, seed)
            return d, desc
    return B()


def skopeo_copy(src, dst, extra=None, timeout=180):
    cmd = [need_tool("skopeo"), "copy", "--quiet", "--src-tls-verify=false",
           "--dest-tls-verify=false"] + list(extra or []) + [src, dst]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return r


def layout_digests(path, tag):
    """(manifest digest, [config + layer digests]) of a tagged manifest."""
    lay = ocibuild.Layout(path)
    desc, raw, man = lay.manifest_for(tag)
    blobs = [man["config"]["digest"]] + [l["digest"] for l in man.get("layers", [])]
    for b in blobs:
        assert ocibuild.sha256_file(lay.blob_path(b)) == b, "blob %s corrupt in %s" % (b, path)
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == desc["digest"]
    return desc["digest"], blobs


# -------------------------------------------------------------- containerd --

class Containerd:
    def __init__(self, workdir):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.root = os.path.join(workdir, "root")
        self.state = os.path.join(workdir, "state")
        # unix socket paths are limited to 108 bytes: keep it short.
        self.sockdir = tempfile.mkdtemp(prefix="ctrd-", dir="/tmp")
        self.sock = os.path.join(self.sockdir, "c.sock")
        self.log = os.path.join(workdir, "containerd.log")
        self.config = os.path.join(workdir, "config.toml")
        with open(self.config, "w") as f:
            f.write("""version = 2
root = "%s"
state = "%s"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]

[grpc]
  address = "%s"

[ttrpc]
  address = "%s"

[debug]
  level = "info"

[metrics]
  address = ""
""" % (self.root, self.state, self.sock, self.sock + ".ttrpc"))
        self.proc = None

    def start(self):
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(["/usr/bin/containerd", "--config", self.config],
                                     stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        logf.close()

        def up():
            if self.proc.poll() is not None:
                return "dead"
            if not os.path.exists(self.sock):
                return False
            r = subprocess.run(["ctr", "--address", self.sock, "version"],
                               capture_output=True, timeout=10)
            return r.returncode == 0
        try:
            st = wait_for(up, 20, "containerd socket", interval=0.2)
        except AssertionError:
            st = "timeout"
        if st != True:  # noqa: E712
            self.stop()
            unavailable("containerd cannot start here (%s): %s" % (st, tail(self.log, 10)),
                        "containerd must be able to run as root; see its log")
        return self

    def ctr(self, *args, timeout=180):
        return subprocess.run(["ctr", "--address", self.sock] + list(args),
                              capture_output=True, text=True, timeout=timeout)

    def stop(self):
        stop_process(self.proc)
        shutil.rmtree(self.sockdir, ignore_errors=True)


@pytest.fixture
def containerd(tmp_path):
    need_tool("/usr/bin/containerd")
    need_tool("ctr")
    need_root("containerd")
    c = Containerd(str(tmp_path / "containerd")).start()
    yield c
    c.stop()

