#!/usr/bin/env python3
"""Writes seed inputs for fuzz_wire into tests/fuzz/corpus/wire/.

Input layout (see fuzz_wire.c): size u24 BE, piece-length byte, chunk byte,
handshake byte, then the frame stream. Valid frames are hard for a fuzzer to
guess (a HELLO needs "SHOAL" and a 71-byte digest), so the seeds start it
off with a well-formed session and a few near misses.
"""
import os
import struct
import sys

DIGEST = b"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def frame(t, payload=b""):
    return struct.pack(">IB", 1 + len(payload), t) + payload


def hello(digest=DIGEST, version=1, magic=b"SHOAL"):
    return frame(1, magic + bytes([version, len(digest)]) + digest + bytes(range(16)) + bytes(range(16, 32)))


def params(size, plen_byte, chunk, handshake):
    return struct.pack(">I", size)[1:] + bytes([plen_byte, chunk, handshake])


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "wire")
    os.makedirs(out, exist_ok=True)
    size, plen = 10000, 4096  # 3 pieces, the last 1808 bytes
    p = params(size, 8, 7, 2)
    session = (hello() + frame(2, bytes(range(32))) + frame(3, b"\xe0") + frame(4, struct.pack(">I", 1))
               + frame(5, struct.pack(">I", 2)) + frame(6, struct.pack(">I", 2) + b"x" * (size - 2 * plen))
               + frame(7, struct.pack(">I", 0)) + frame(8, b"\x00\x04busy") + frame(9))
    seeds = {
        "session": p + session,
        "session-bytewise": params(size, 8, 0, 2) + session,
        "hello-only": p + hello(),
        "hello-v2": p + hello(version=2),
        "hello-sha512": p + hello(digest=b"sha512:" + b"ab" * 64),
        "piece-first": params(size, 8, 3, 0) + frame(6, struct.pack(">I", 0) + b"y" * plen),
        "bitfield-spare": params(size, 8, 1, 0) + frame(3, b"\xe1"),
        "length-zero": p + b"\x00\x00\x00\x00\x09",
        "too-big": p + b"\xff\xff\xff\xff\x06",
        "unknown-type": params(size, 8, 2, 0) + frame(42, b"abc") + frame(0),
        "error-long": params(size, 8, 5, 0) + frame(8, b"\x00\x01" + b"e" * 201),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
