"""A registry the tests control: the pull side of the OCI distribution API
(GET and HEAD of /v2/, blobs and manifests, Range, Content-Length,
Docker-Content-Digest) served from memory, with faults injected per request.

Faults (FaultyRegistry.inject) match a method and a path substring and fire
a number of times (None: every time):

    corrupt   serve the answer with one byte flipped (at a blob offset; it
              fires only on an answer whose range covers that offset)
    status    answer with a status instead (503 with an HTML body, 500, 429
              with Retry-After, ...), body never blob content
    reset     send `after` bytes of the body, then reset the connection (RST)
    slow      send the body at `rate` bytes/s
    delay     answer normally, `seconds` late (a HEAD too, and the 404 for
              a blob the repository lacks)

A shared token bucket (`rate`, None = unlimited) throttles every blob body,
so a transfer lasts long enough to kill something in its middle. Every
answer is recorded (method, path, range, status, body bytes sent, fault),
and body bytes are counted per digest: what "upstream bytes" means in the
fault tests.

Standard library only. Listens on 127.0.0.1, port 0 read back.
"""

import hashlib
import json
import random
import re
import socket
import socketserver
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CHUNK = 64 << 10

_BLOB_RE = re.compile(r"^/v2/(.+)/blobs/(sha256:[0-9a-f]{64})$")
_MANIFEST_RE = re.compile(r"^/v2/(.+)/manifests/([^/]+)$")

HTML_503 = (b"<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head>\n"
            b"<body><h1>Service Unavailable</h1><p>The server is temporarily unable to "
            b"service your request due to maintenance downtime or capacity problems. "
            b"Please try again later.</p><hr><address>nginx</address></body></html>\n")


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_bytes(size, seed):
    """Reproducible random content."""
    return random.Random(seed).randbytes(size)


class Fault:
    def __init__(self, kind, method="GET", path=None, times=1, status=503, body=HTML_503,
                 headers=None, offset=None, after=0, rate=None, seconds=0):
        assert kind in ("corrupt", "status", "reset", "slow", "delay"), kind
        self.kind = kind
        self.method = method
        self.path = path
        self.times = times
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        self.offset = offset
        self.after = after
        self.rate = rate
        self.seconds = seconds
        self.fired = 0

    def left(self):
        return self.times is None or self.fired < self.times

    def __repr__(self):
        return "Fault(%s %s %s fired=%d/%s)" % (self.kind, self.method, self.path, self.fired,
                                                self.times)


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class FaultyRegistry:
    def __init__(self, rate=None):
        self.lock = threading.Lock()
        self.blobs = {}       # digest -> bytes
        self.repos = {}       # repo -> set of digests (blobs and manifests)
        self.manifests = {}   # (repo, tag or digest) -> (bytes, media type, digest)
        self.faults = []
        self.rate = rate
        self.tokens = 0.0
        self.last = time.monotonic()
        self.log = []         # one dict per answer
        self.served = {}      # digest -> body bytes sent
        self.conns = set()
        reg = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def setup(self):
                super().setup()
                with reg.lock:
                    reg.conns.add(self.connection)

            def finish(self):
                try:
                    super().finish()
                except OSError:
                    pass
                with reg.lock:
                    reg.conns.discard(self.connection)

            def do_GET(self):
                reg._handle(self, head=False)

            def do_HEAD(self):
                reg._handle(self, head=True)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.host = "127.0.0.1:%d" % self.port
        self.url = "http://" + self.host
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       kwargs={"poll_interval": 0.05})

    # -- content --

    def add_blob(self, repo, data):
        d = digest_of(data)
        with self.lock:
            self.blobs[d] = data
            self.repos.setdefault(repo, set()).add(d)
        return d

    def add_manifest(self, repo, tag, data, media_type=MT_OCI_MANIFEST):
        d = digest_of(data)
        with self.lock:
            self.manifests[(repo, tag)] = (data, media_type, d)
            self.manifests[(repo, d)] = (data, media_type, d)
            self.repos.setdefault(repo, set()).add(d)
        return d

    # -- faults and figures --

    def inject(self, kind, **kw):
        f = Fault(kind, **kw)
        with self.lock:
            self.faults.append(f)
        return f

    def clear_faults(self):
        with self.lock:
            self.faults = []

    def bytes_served(self, digest=None):
        with self.lock:
            if digest is None:
                return sum(self.served.values())
            return self.served.get(digest, 0)

    def requests(self, method=None, contains=None):
        with self.lock:
            return [dict(r) for r in self.log
                    if (method is None or r["method"] == method)
                    and (contains is None or contains in r["path"])]

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- serving --

    def _fault_for(self, method, path, first, last, kind=None):
        with self.lock:
            for f in self.faults:
                if not f.left() or (f.method and f.method != method):
                    continue
                if kind and f.kind != kind:
                    continue
                if f.path and f.path not in path:
                    continue
                if f.kind == "corrupt" and not (first <= f.offset <= last):
                    continue
                f.fired += 1
                return f
        return None

    def _take(self, n, rate):
        """Blocks until n bytes may pass the shared bucket (and a fault's
        own rate, if any)."""
        if rate:
            time.sleep(n / float(rate))
        while True:
            r = self.rate
            if not r:
                return
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.tokens + (now - self.last) * r, r / 20.0)
                self.last = now
                if self.tokens >= n:
                    self.tokens -= n
                    return
                wait = (n - self.tokens) / r
            time.sleep(min(max(wait, 0.001), 0.05))

    def _record(self, h, status, sent, fault, rng):
        with self.lock:
            self.log.append({"time": time.monotonic(), "method": h.command, "path": h.path,
                             "range": rng, "status": status, "bytes": sent,
                             "fault": fault.kind if fault else None})

    def _simple(self, h, status, body, ctype="application/json", headers=None, head=False):
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if not head:
            h.wfile.write(body)

    def _error(self, h, status, code, msg, head):
        body = json.dumps({"errors": [{"code": code, "message": msg}]}).encode()
        self._simple(h, status, body, head=head)
        self._record(h, status, 0, None, None)

    def _handle(self, h, head):
        path = h.path.split("?", 1)[0]
        rng = h.headers.get("Range")
        try:
            if path in ("/v2", "/v2/"):
                self._simple(h, 200, b"{}", head=head,
                             headers={"Docker-Distribution-API-Version": "registry/2.0"})
                self._record(h, 200, 0, None, rng)
                return
            m = _BLOB_RE.match(path)
            if m:
                repo, d = m.group(1), m.group(2)
                with self.lock:
                    data = self.blobs.get(d) if d in self.repos.get(repo, ()) else None
                if data is None:
                    f = self._fault_for(h.command, h.path, 0, 0, kind="delay")
                    if f is not None:
                        time.sleep(f.seconds)
                    self._error(h, 404, "BLOB_UNKNOWN", "blob unknown to registry", head)
                    return
                self._send(h, data, d, "application/octet-stream", rng, head)
                return
            m = _MANIFEST_RE.match(path)
            if m:
                with self.lock:
                    ent = self.manifests.get((m.group(1), m.group(2)))
                if ent is None:
                    self._error(h, 404, "MANIFEST_UNKNOWN", "manifest unknown", head)
                    return
                data, mt, d = ent
                self._send(h, data, d, mt, None, head)
                return
            self._error(h, 404, "NAME_UNKNOWN", "not found", head)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True

    def _send(self, h, data, d, ctype, rng, head):
        size = len(data)
        first, last, status = 0, size - 1, 200
        if rng and not head:
            m = re.match(r"^bytes=(\d*)-(\d*)$", rng.strip())
            ok = False
            if m and (m.group(1) or m.group(2)):
                if m.group(1):
                    first = int(m.group(1))
                    last = int(m.group(2)) if m.group(2) else size - 1
                else:
                    first = max(0, size - int(m.group(2)))
                last = min(last, size - 1)
                ok = first <= last and first < size
            if not ok:
                self._simple(h, 416, b"", headers={"Content-Range": "bytes */%d" % size})
                self._record(h, 416, 0, None, rng)
                return
            status = 206
        f = self._fault_for(h.command, h.path, first, last)
        if f is not None and f.kind == "delay":
            time.sleep(f.seconds)
        if f is not None and f.kind == "status":
            hdrs = dict(f.headers)
            ctype_f = hdrs.pop("Content-Type", "text/html")
            self._simple(h, f.status, f.body, ctype=ctype_f, headers=hdrs, head=head)
            self._record(h, f.status, 0, f, rng)
            return
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(last - first + 1))
        h.send_header("Docker-Content-Digest", d)
        h.send_header("Accept-Ranges", "bytes")
        if status == 206:
            h.send_header("Content-Range", "bytes %d-%d/%d" % (first, last, size))
        h.end_headers()
        if head:
            self._record(h, status, 0, f, rng)
            return
        sent = 0
        off = first
        try:
            while off <= last:
                n = min(CHUNK, last + 1 - off)
                if f is not None and f.kind == "reset" and sent + n > f.after:
                    n = f.after - sent
                    if n > 0:
                        h.wfile.write(data[off:off + n])
                        sent += n
                        with self.lock:
                            self.served[d] = self.served.get(d, 0) + n
                    h.wfile.flush()
                    # Let the client read what was sent (an RST discards
                    # what is still queued), then RST instead of FIN: the
                    # client sees a reset mid-body.
                    time.sleep(0.1)
                    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                            struct.pack("ii", 1, 0))
                    h.connection.close()
                    h.close_connection = True
                    return
                self._take(n, f.rate if f is not None and f.kind == "slow" else None)
                chunk = data[off:off + n]
                if f is not None and f.kind == "corrupt" and off <= f.offset < off + n:
                    b = bytearray(chunk)
                    b[f.offset - off] ^= 0xFF
                    chunk = bytes(b)
                h.wfile.write(chunk)
                sent += n
                off += n
                with self.lock:
                    self.served[d] = self.served.get(d, 0) + n
        finally:
            self._record(h, status, sent, f, rng)


@pytest.fixture
def faulty_registry():
    """A started FaultyRegistry, stopped after the test."""
    r = FaultyRegistry().start()
    yield r
    r.stop()
