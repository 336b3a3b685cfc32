"""Command line and config file: bad values exit 2 with a one-line message
naming the key; --help lists every option; config keys equal flag names."""

import json
import os
import subprocess

import pytest

from conftest import agent_bin, free_port, http_request, wait_for

FLAGS = ["--listen", "--data-dir", "--upstream", "--config", "--log-level", "--cache-max-bytes",
         "--cache-high-watermark", "--cache-low-watermark", "--tag-cache-ttl",
         "--repo-check-ttl", "--upstream-retries", "--upstream-retry-max", "--upstream-timeout",
         "--upstream-allow-unlisted", "--max-header-bytes", "--header-timeout",
         "--idle-timeout", "--max-connections"]


def run(args, tmp_path, timeout=10):
    exe = agent_bin()
    if not os.access(exe, os.X_OK):
        pytest.fail("shoal-agent not built at %s" % exe)
    return subprocess.run([exe] + args, capture_output=True, text=True, timeout=timeout,
                          cwd=str(tmp_path))


def base(tmp_path):
    return ["--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:%d" % free_port(),
            "--admin-listen", "127.0.0.1:%d" % free_port(), "--upstream", "http://127.0.0.1:1"]


def config_file(tmp_path, doc, name="c.json"):
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(p)


def test_help(tmp_path):
    r = run(["--help"], tmp_path)
    assert r.returncode == 0, r.stderr
    text = r.stdout + r.stderr
    for f in FLAGS:
        assert f in text, "--help does not list %s" % f


BAD_FLAGS = [
    (["--listen", "foo"], "listen"),
    (["--listen", "127.0.0.1:99999"], "listen"),
    (["--cache-low-watermark", "95", "--cache-high-watermark", "90"], "watermark"),
    (["--cache-high-watermark", "150"], "cache-high-watermark"),
    (["--log-level", "loud"], "log-level"),
    (["--cache-max-bytes", "lots"], "cache-max-bytes"),
    (["--upstream-retries", "many"], "upstream-retries"),
    (["--upstream-timeout", "soon"], "upstream-timeout"),
    (["--upstream-allow-unlisted=maybe"], "upstream-allow-unlisted"),
    (["--max-connections", "0x"], "max-connections"),
    (["--no-such-flag", "1"], "no-such-flag"),
    (["--upstream", "ftp://example.invalid"], "upstream"),
]


@pytest.mark.parametrize("args,key", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flag_exits_2(tmp_path, args, key):
    r = run(base(tmp_path) + args, tmp_path)
    assert r.returncode == 2, "exit %d for %s; stderr=%r" % (r.returncode, args, r.stderr)
    msg = r.stderr.strip()
    assert msg, "no message on stderr"
    assert key in msg, "message %r does not name %r" % (msg, key)
    assert len(msg.splitlines()) <= 3, "expected a short message, got %r" % msg


BAD_CONFIGS = [
    ({"no-such-key": 1}, "no-such-key"),
    ({"listen": "foo"}, "listen"),
    ({"cache-low-watermark": 95, "cache-high-watermark": 90}, "watermark"),
    ({"upstreams": "not-a-list"}, "upstreams"),
    ({"upstreams": [{"host": "127.0.0.1:5000", "url": "http://127.0.0.1:5000",
                     "bogus": True}]}, "bogus"),
    ('{"listen": ', "config"),
]


@pytest.mark.parametrize("doc,key", BAD_CONFIGS, ids=[k for _, k in BAD_CONFIGS])
def test_bad_config_file_exits_2(tmp_path, doc, key):
    cfg = config_file(tmp_path, doc)
    args = ["--data-dir", str(tmp_path / "data"), "--upstream", "http://127.0.0.1:1",
            "--config", cfg]
    r = run(args, tmp_path)
    assert r.returncode == 2, "exit %d; stderr=%r" % (r.returncode, r.stderr)
    assert key in r.stderr, "message %r does not name %r" % (r.stderr, key)


def test_missing_config_file_exits_2(tmp_path):
    r = run(base(tmp_path) + ["--config", str(tmp_path / "absent.json")], tmp_path)
    assert r.returncode == 2
    assert "absent.json" in r.stderr


def test_config_file_keys_are_flag_names(tmp_path):
    """`listen` in the file is used; a flag overrides nothing it does not set."""
    port = free_port()
    cfg = config_file(tmp_path, {"listen": "127.0.0.1:%d" % port,
                                 "data-dir": str(tmp_path / "data"),
                                 "log-level": "warn", "cache-max-bytes": "1GiB",
                                 "tag-cache-ttl": "30s", "upstream-allow-unlisted": False,
                                 "upstreams": []})
    p = subprocess.Popen([agent_bin(), "--config", cfg, "--upstream", "http://127.0.0.1:1",
                          "--admin-listen", "off"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=str(tmp_path))
    try:
        def up():
            assert p.poll() is None, "agent exited %s: %s" % (p.returncode, p.stderr.read())
            try:
                return http_request(port, "GET", "/_shoal/health", timeout=2)[0] == 200
            except OSError:
                return False
        wait_for(up, 10, "agent on the port from the config file")
        assert os.path.isdir(str(tmp_path / "data"))
    finally:
        p.terminate()
        try:
            rc = p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
    err = p.stderr.read().decode("utf-8", "replace")
    assert rc == 0, "SIGTERM exit code %d" % rc
    # log-level warn from the file: no info lines, so no request lines.
    assert "comp=http" not in err, err[:500]


def test_ready_line_and_sigint(tmp_path):
    port = free_port()
    data = tmp_path / "data"
    p = subprocess.Popen([agent_bin(), "--listen", "127.0.0.1:%d" % port, "--data-dir",
                          str(data), "--upstream", "http://127.0.0.1:1",
                          "--admin-listen", "127.0.0.1:%d" % free_port()],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=str(tmp_path))
    try:
        wait_for(lambda: os.path.exists(str(data)) and _health(port), 10, "agent ready")
    finally:
        p.send_signal(2)
        try:
            rc = p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
    err = p.stderr.read().decode("utf-8", "replace")
    assert rc == 0, "SIGINT exit code %d" % rc
    ready = [ln for ln in err.splitlines() if "msg=ready" in ln]
    assert ready, err[:1000]
    assert "level=info" in ready[0] and "comp=agent" in ready[0]
    assert "listen=127.0.0.1:%d" % port in ready[0]
    assert "data_dir=%s" % data in ready[0]


def _health(port):
    try:
        st, _, body = http_request(port, "GET", "/_shoal/health", timeout=2)
    except OSError:
        return False
    return st == 200 and json.loads(body) == {"status": "ok"}


def test_tracker_needs_secret(tmp_path):
    """An agent given a tracker but no secret refuses to start, naming the
    flag; --insecure-no-secret lets it run, with a warning in the log."""
    args = base(tmp_path) + ["--tracker", "http://127.0.0.1:%d" % free_port(),
                             "--peer-listen", "127.0.0.1:%d" % free_port()]
    r = run(args, tmp_path)
    assert r.returncode == 2, r
    assert "--insecure-no-secret" in r.stderr and "cluster-secret-file" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr

    port = int(args[args.index("--listen") + 1].rsplit(":", 1)[1])
    p = subprocess.Popen([agent_bin()] + args + ["--insecure-no-secret"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=str(tmp_path))
    try:
        wait_for(lambda: p.poll() is None and _health(port), 10, "open agent ready")
    finally:
        p.send_signal(2)
        try:
            rc = p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
    err = p.stderr.read().decode("utf-8", "replace")
    assert rc == 0, err[-2000:]
    warn = [ln for ln in err.splitlines() if "WITHOUT a cluster secret" in ln]
    assert warn and "level=warn" in warn[0], err[-2000:]
