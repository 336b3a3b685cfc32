"""A peer written in Python that speaks the shoal swarm protocol
(docs/protocol.md): signed tracker announces and the peer wire protocol.

Used by the system tests to play parts a real agent never plays: a seed
that answers every REQUEST with corrupted bytes, one that answers with
pieces forged to the same XXH3-128 as the real ones, and a client that tries
the handshake with a wrong secret. Standard library only, but ForgingSeed
checks its forgeries with python3-xxhash.
"""

import hashlib
import hmac
import json
import os
import socket
import struct
import threading
import time

from conftest import http_request

# Frame types and ERROR codes (protocol.md, "Peer wire protocol").
HELLO, AUTH, BITFIELD, HAVE, REQUEST, PIECE, CANCEL, ERROR, KEEPALIVE = range(1, 10)
ERR_PROTOCOL, ERR_AUTH, ERR_UNKNOWN_BLOB, ERR_BUSY, ERR_SHUTTING_DOWN = range(1, 6)
TYPE_NAMES = {HELLO: "hello", AUTH: "auth", BITFIELD: "bitfield", HAVE: "have",
              REQUEST: "request", PIECE: "piece", CANCEL: "cancel", ERROR: "error",
              KEEPALIVE: "keepalive"}
AUTH_LABEL = b"shoal-peer-v1"
MAX_FRAME = (256 << 20) + 64


# ----------------------------------------------------------------- tracker --

def sign(secret, method, path, body=b"", ts=None):
    """X-Shoal-Auth value: "<ts>:<hex HMAC-SHA256(secret, ts\\nMETHOD\\npath\\nbody)>"."""
    ts = int(time.time()) if ts is None else ts
    msg = ("%d\n%s\n%s\n" % (ts, method, path)).encode() + body
    return "%d:%s" % (ts, hmac.new(secret or b"", msg, hashlib.sha256).hexdigest())


def announce(tracker_port, secret, doc, timeout=5):
    """POST /v1/announce signed with secret: (status, reply JSON)."""
    body = json.dumps(doc).encode()
    st, _, data = http_request(tracker_port, "POST", "/v1/announce", body=body, timeout=timeout,
                               headers={"Content-Type": "application/json",
                                        "X-Shoal-Auth": sign(secret, "POST", "/v1/announce",
                                                             body)})
    return st, json.loads(data)


# ------------------------------------------------------------------ frames --

def frame(ftype, payload=b""):
    return struct.pack(">IB", 1 + len(payload), ftype) + payload


def hello_payload(digest, peer_id, nonce):
    d = digest.encode()
    return b"SHOAL" + bytes([1, len(d)]) + d + peer_id + nonce


def parse_hello(payload):
    """-> (digest, peer_id, nonce); raises ValueError on a malformed HELLO."""
    if len(payload) < 7 or payload[:5] != b"SHOAL" or payload[5] != 1:
        raise ValueError("bad HELLO %r" % payload[:16])
    dlen = payload[6]
    if len(payload) != 7 + dlen + 32:
        raise ValueError("bad HELLO length %d" % len(payload))
    digest = payload[7:7 + dlen].decode()
    return digest, payload[7 + dlen:7 + dlen + 16], payload[7 + dlen + 16:]


def auth_mac(secret, peer_nonce, own_nonce, own_id, digest):
    """HMAC-SHA256(secret, "shoal-peer-v1" || peer nonce || own nonce || own id || digest)."""
    msg = AUTH_LABEL + peer_nonce + own_nonce + own_id + digest.encode()
    return hmac.new(secret or b"", msg, hashlib.sha256).digest()


def recv_exact(sock, n):
    out = bytearray()
    while len(out) < n:
        b = sock.recv(min(n - len(out), 1 << 20))
        if not b:
            raise EOFError("connection closed after %d of %d bytes" % (len(out), n))
        out += b
    return bytes(out)


def read_frame(sock):
    """-> (type, payload). Raises EOFError when the peer closed."""
    hdr = recv_exact(sock, 5)
    length, ftype = struct.unpack(">IB", hdr)
    if length < 1 or length > MAX_FRAME:
        raise ValueError("frame length %d" % length)
    return ftype, recv_exact(sock, length - 1)


def piece_size(size, plen, index):
    return min(plen, size - index * plen)


def full_bitfield(npieces):
    bits = bytearray((npieces + 7) // 8)
    for i in range(npieces):
        bits[i // 8] |= 0x80 >> (i % 8)
    return bytes(bits)


# ----------------------------------------------------------- handshake test --

def try_handshake(port, digest, secret, timeout=5):
    """Dials an agent's peer port as the initiator, runs HELLO/AUTH with
    `secret`, then collects what follows until the agent closes or `timeout`
    passes without a frame. Returns a dict: frames [(type, payload)],
    closed (bool), the agent's HELLO fields, and whether its AUTH verified
    with our secret."""
    my_id = os.urandom(16)
    my_nonce = os.urandom(16)
    out = {"frames": [], "closed": False, "agent_auth_ok": None}
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(frame(HELLO, hello_payload(digest, my_id, my_nonce)))
        sent_auth = False
        while True:
            try:
                ftype, payload = read_frame(s)
            except (EOFError, ConnectionResetError):
                out["closed"] = True
                break
            except socket.timeout:
                break
            out["frames"].append((ftype, payload))
            if ftype == HELLO and not sent_auth:
                pdigest, pid, pnonce = parse_hello(payload)
                out["agent_hello"] = (pdigest, pid, pnonce)
                s.sendall(frame(AUTH, auth_mac(secret, pnonce, my_nonce, my_id, digest)))
                sent_auth = True
            elif ftype == AUTH and "agent_hello" in out:
                _, pid, pnonce = out["agent_hello"]
                want = auth_mac(secret, my_nonce, pnonce, pid, digest)
                out["agent_auth_ok"] = hmac.compare_digest(want, payload)
            elif ftype == BITFIELD:
                break  # the handshake succeeded: that is all we wanted to see
    finally:
        s.close()
    return out


def frame_types(result):
    return [TYPE_NAMES.get(t, str(t)) for t, _ in result["frames"]]


def error_codes(result):
    return [struct.unpack(">H", p[:2])[0] for t, p in result["frames"]
            if t == ERROR and len(p) >= 2]


# ------------------------------------------------------------ corrupt seed --

class CorruptSeed:
    """Announces itself to the tracker as a complete seed of `digest` and
    answers every REQUEST with a PIECE of the right index and length whose
    bytes are wrong. Handshakes are done properly with `secret`.

    With hit_and_run it hangs up right after its first PIECE on each
    connection: the end of the connection arrives right behind the piece.

    Records per connection: {"peer_id", "start", "requests", "pieces_sent", "cancels",
    "auth_ok", "end", "error", "initiator"} in self.conns."""

    def __init__(self, tracker_port, secret, digest, size, agent="py-corrupt-seed", my_id=None,
                 hit_and_run=False):
        self.tracker_port = tracker_port
        self.secret = secret
        self.digest = digest
        self.size = size
        self.agent = agent
        # The HELLO peer id (random unless given): of two connections
        # between an agent and this seed, both keep the one dialled by the
        # lower id (docs/protocol.md).
        self.my_id = my_id if my_id is not None else os.urandom(16)
        self.hit_and_run = hit_and_run
        self.lock = threading.Lock()
        self.conns = []
        self.announces = 0
        self.announce_errors = []
        self.plen = None
        self.npieces = None
        self.closing = False
        self.socks = set()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(32)
        self.port = self.lsock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.threads = []

    def start(self):
        """Announces once synchronously (creating the swarm and learning the
        piece table), then keeps announcing every `interval` in a thread."""
        self._announce("started")
        if self.plen is None:
            raise AssertionError("corrupt seed: first announce failed: %r" % self.announce_errors)
        for target in (self._accept, self._announce_loop):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def _announce(self, event):
        doc = {"digest": self.digest, "size": self.size, "agent": self.agent, "addr": self.addr,
               "event": event, "have": self.npieces or 0, "complete": True,
               "want_lease": False}
        try:
            st, r = announce(self.tracker_port, self.secret, doc)
        except (OSError, ValueError) as e:
            self.announce_errors.append(repr(e))
            return
        if st != 200:
            self.announce_errors.append("%d %r" % (st, r))
            return
        with self.lock:
            self.announces += 1
            self.plen = r["piece_length"]
            self.npieces = r["pieces"]

    def _announce_loop(self):
        while not self.closing:
            time.sleep(1.0)
            if not self.closing:
                self._announce("progress")

    def _accept(self):
        while not self.closing:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.socks.add(c)
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()
            self.threads.append(t)

    def dial(self, port):
        """Connects to an agent's peer port (as the initiator) and serves
        corrupt pieces on that connection too, in a thread."""
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        with self.lock:
            self.socks.add(c)
        t = threading.Thread(target=self._serve, args=(c, True), daemon=True)
        t.start()
        self.threads.append(t)

    def _serve(self, c, initiator=False):
        rec = {"peer_id": None, "start": time.monotonic(), "requests": 0, "pieces_sent": 0,
               "cancels": 0, "auth_ok": False, "end": None, "error": None, "initiator": initiator}
        with self.lock:
            self.conns.append(rec)
        my_nonce = os.urandom(16)
        try:
            c.settimeout(30)
            my_hello = frame(HELLO, hello_payload(self.digest, self.my_id, my_nonce))
            if initiator:
                c.sendall(my_hello)
            ftype, payload = read_frame(c)
            if ftype != HELLO:
                raise ValueError("first frame %d %r" % (ftype, payload[:64]))
            digest, pid, pnonce = parse_hello(payload)
            rec["peer_id"] = pid.hex()
            if digest != self.digest:
                c.sendall(frame(ERROR, struct.pack(">H", ERR_UNKNOWN_BLOB) + b"unknown blob"))
                raise ValueError("HELLO for %s" % digest)
            c.sendall((b"" if initiator else my_hello) +
                      frame(AUTH, auth_mac(self.secret, pnonce, my_nonce, self.my_id,
                                           self.digest)))
            ftype, payload = read_frame(c)
            want = auth_mac(self.secret, my_nonce, pnonce, pid, self.digest)
            if ftype != AUTH or not hmac.compare_digest(want, payload):
                c.sendall(frame(ERROR, struct.pack(">H", ERR_AUTH) + b"bad auth"))
                raise ValueError("bad AUTH from the agent")
            rec["auth_ok"] = True
            c.sendall(frame(BITFIELD, full_bitfield(self.npieces)))
            while not self.closing:
                ftype, payload = read_frame(c)
                if ftype == CANCEL:
                    rec["cancels"] += 1
                if ftype != REQUEST:
                    continue  # BITFIELD, HAVE, CANCEL, KEEPALIVE: nothing to do
                index = struct.unpack(">I", payload)[0]
                rec["requests"] += 1
                n = piece_size(self.size, self.plen, index)
                bad = self.piece_bytes(index, n)
                c.sendall(struct.pack(">IBI", 1 + 4 + n, PIECE, index) + bad)
                rec["pieces_sent"] += 1
                rec.setdefault("indexes", []).append(index)
                if self.hit_and_run:
                    # FIN after the piece, then read until the agent closes:
                    # closing with its next REQUEST unread would send a
                    # reset, which can drop the piece before it is read.
                    c.shutdown(socket.SHUT_WR)
                    while c.recv(65536):
                        pass
                    break
        except Exception as e:  # noqa: BLE001 (recorded: the tests read rec["error"])
            rec["error"] = repr(e)
        finally:
            rec["end"] = time.monotonic()
            with self.lock:
                self.socks.discard(c)
            try:
                c.close()
            except OSError:
                pass

    def piece_bytes(self, index, n):
        """Right index and length, wrong bytes: only the piece hash can
        catch it."""
        return (b"\xa5corrupt" * (n // 8 + 1))[:n]

    def snapshot(self):
        with self.lock:
            return [dict(r) for r in self.conns]

    def stop(self):
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
        for t in list(self.threads):
            t.join(timeout=5)


# ------------------------------------------------------------ forging seed --

# XXH3's default secret (its first 192 bytes), which XXH3-128 mixes stripes
# with: what a collision is built from.
_XXH3_SECRET = bytes.fromhex(
    "b8fe6c3923a44bbe7c01812cf721ad1cded46de9839097db7240a4a4b7b3671f"
    "cb79e64eccc0e578825ad07dccff7221b8084674f743248ee03590e6813a264c"
    "3c2852bb91c300cb88d0658b1b532ea371644897a20df94e3819ef46a9deacd8"
    "a8fa763fe39c343ff9dcbbc7c70b4f1d8a51e04bcdb45931c89f7ec9d9787364"
    "eac5ac8334d3ebc3c581a0fffa1363eb170ddd51b7f0da49d316552629d4689e"
    "2b16be587d47a1fc8ff8b8d17ad031ce45cb3a8f95160428afd7fbcabb4b407e")
_M32 = (1 << 32) - 1
_M64 = (1 << 64) - 1


def xxh3_forge(piece):
    """Returns piece with 32 bytes of its first 128 changed so that its
    XXH3-128 (and XXH3-64) stays the same: lanes 0 and 1 of stripes 0 and 1
    are rewritten so both accumulators see the same sums. Needs a piece long
    enough for XXH3's long-input path (well over 240 bytes; pieces are at
    least 256 KiB)."""
    def key(stripe, lane):
        return struct.unpack_from("<Q", _XXH3_SECRET, stripe * 8 + lane * 8)[0]

    def mul(x):
        return ((x & _M32) * (x >> 32)) & _M64

    b = bytearray(piece)
    s, t, i, j = 0, 1, 0, 1

    def off(stripe, lane):
        return stripe * 64 + lane * 8

    def rd(o):
        return struct.unpack_from("<Q", b, o)[0]
    a_s, b_s, a_t, b_t = rd(off(s, i)), rd(off(s, j)), rd(off(t, i)), rd(off(t, j))
    ksi, ksj, kti, ktj = key(s, i), key(s, j), key(t, i), key(t, j)
    ci = (mul(a_s ^ ksi) + b_s + mul(a_t ^ kti) + b_t) & _M64
    cj = (mul(b_s ^ ksj) + a_s + mul(b_t ^ ktj) + a_t) & _M64

    def solve(kx, ky, c):
        # x = kx ^ (h << 32) (low half fixed), y = ky ^ l (high half fixed),
        # x + y = c: both multiplications then see a zero half.
        xl = kx & _M32
        yl = ((c & _M32) - xl) & _M32
        carry = (xl + yl) >> 32
        yh = ky >> 32
        xh = ((c >> 32) - yh - carry) & _M32
        return (xh << 32) | xl, (yh << 32) | yl
    a_s2, a_t2 = solve(ksi, kti, cj)
    b_s2, b_t2 = solve(ksj, ktj, ci)
    for o, v in ((off(s, i), a_s2), (off(s, j), b_s2), (off(t, i), a_t2), (off(t, j), b_t2)):
        struct.pack_into("<Q", b, o, v)
    return bytes(b)


class ForgingSeed(CorruptSeed):
    """A member of the cluster (it holds the secret) that announces itself
    as a complete seed of `data` and answers every REQUEST with the real
    piece forged to the same XXH3-128: a piece hash of that algorithm cannot
    tell it from the real one, a SHA-256 piece hash can. Each forgery is
    checked with python3-xxhash before it is sent (a broken forgery would
    make the test meaningless). self.forged counts pieces sent."""

    def __init__(self, tracker_port, secret, digest, data, agent="py-forging-seed"):
        super().__init__(tracker_port, secret, digest, len(data), agent=agent)
        import xxhash  # python3-xxhash (deploy/install-deps.sh)
        self.xxhash = xxhash
        self.data = data
        self.forged = 0
        self.cache = {}

    def piece_bytes(self, index, n):
        with self.lock:
            got = self.cache.get(index)
        if got is None:
            real = self.data[index * self.plen:index * self.plen + n]
            got = xxh3_forge(real)
            if got == real or \
                    self.xxhash.xxh3_128_digest(got) != self.xxhash.xxh3_128_digest(real):
                raise AssertionError("forgery of piece %d does not collide" % index)
            with self.lock:
                self.cache[index] = got
        with self.lock:
            self.forged += 1
        return got
