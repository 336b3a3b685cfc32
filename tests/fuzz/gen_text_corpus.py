#!/usr/bin/env python3
"""Writes the seed inputs of the text-parser fuzz targets into
tests/fuzz/corpus/<target>/: http_request, range, config, manifest,
challenge and image_ref. Each seed follows its target's input layout (the
parameter bytes described at the top of tests/fuzz/fuzz_<target>.c) and is a
well-formed input or a near miss, so the fuzzer starts from the grammar
rather than from random bytes. Files starting with "regress-" are not
written here: they are inputs that once crashed a target, kept by hand.
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
D256 = "sha256:" + "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
D256B = "sha256:" + "ab" * 32
D512 = "sha512:" + "cf" * 64


def write(target, name, data):
    out = os.path.join(HERE, "corpus", target)
    os.makedirs(out, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


def http_request():
    # chunk byte, head-cap byte (256 << b % 6), body-cap byte (odd: read).
    p = bytes([7, 3, 0])
    write("http_request", "get-blob", p + b"GET /v2/library/alpine/blobs/" + D256.encode()
          + b"?ns=docker.io HTTP/1.1\r\nHost: 127.0.0.1:5080\r\nRange: bytes=0-99\r\n"
          b"Accept: */*\r\n\r\n")
    write("http_request", "pipelined", p + b"HEAD /v2/ HTTP/1.1\r\nHost: a\r\n\r\n"
          b"GET /v2/a/b/manifests/latest?ns=ghcr.io&x=%41%42+c HTTP/1.1\r\nHost: a\r\n"
          b"Connection: keep-alive\r\n\r\nGET /_shoal/health HTTP/1.0\r\n\r\n")
    body = json.dumps({"image": "docker.io/library/alpine:3", "platforms": ["linux/amd64"]})
    write("http_request", "post-body", bytes([3, 2, 17]) + (
        "POST /_shoal/prewarm HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        "Expect: 100-continue\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)).encode())
    write("http_request", "chunked", bytes([5, 2, 9]) + b"POST /x HTTP/1.1\r\n"
          b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    write("http_request", "body-unread", bytes([9, 2, 0]) + b"PUT /v2/a/b/blobs/uploads/ "
          b"HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcdGET / HTTP/1.1\r\n\r\n")
    write("http_request", "too-big", bytes([200, 0, 0]) + b"GET /" + b"a" * 400 + b" HTTP/1.1\r\n\r\n")
    write("http_request", "bad-version", bytes([1, 1, 0]) + b"GET / HTTP/2.0\r\n\r\n")
    write("http_request", "folded", bytes([4, 1, 0]) + b"GET /%zz?%00=1&ns HTTP/1.1\r\n"
          b"X-A: 1\r\n  continued\r\nrange:bytes=-5\r\n\r\n")


def rng():
    def p(size, hdr):
        return struct.pack(">Q", size) + hdr.encode()
    for i, (size, hdr) in enumerate([
            (1000, "bytes=0-499"), (1000, "bytes=500-"), (1000, "bytes=-200"),
            (1000, " BYTES = 5 - 7 "), (1000, "bytes=0-0,5-6"), (0, "bytes=-1"),
            (10, "bytes=10-"), (10, "bytes=7-3"), (1 << 63, "bytes=18446744073709551615-"),
            (1000, "bytes=18446744073709551616-"), (1000, "items=0-1"), (5, "bytes=-0")]):
        write("range", "seed-%02d" % i, p(size, hdr))


def config():
    agent = {"listen": "127.0.0.1:5080", "data-dir": "/var/lib/shoal",
             "cache-max-bytes": "1.5GiB", "tag-cache-ttl": "30s", "upstream-allow-unlisted": False,
             "upstreams": [{"host": "docker.io", "url": "https://registry-1.docker.io/",
                            "username": "u", "password": "p"},
                           {"host": "[::1]:5000", "url": "http://[::1]:5000", "insecure": True}]}
    write("config", "agent-file", b"\x00" + json.dumps(agent).encode() + b"\x00"
          b"--log-level\x00debug\x00--max-connections=100\x00--peer-listen\x00[::]:5081")
    write("config", "agent-flags", b"\x00\x00--listen=:0\x00--cache-high-watermark\x0095\x00"
          b"--upstream\x00https://ghcr.io/\x00--ban-time\x001h\x00--swarm-min-size\x000B")
    tracker = {"listen": ":5090", "interval": "500ms", "hash-algo": "sha256",
               "piece-length": "4MiB", "max-peers": 30}
    write("config", "tracker-file", b"\x01" + json.dumps(tracker).encode())
    write("config", "tracker-bad", b"\x01{\"lisen\": 1}\x00--max-peers\x00--interval=1.5")
    write("config", "upstreams-bad", b"\x00{\"upstreams\": [{\"host\": \"a\", \"url\": "
          b"\"ftp://a\"}, {\"host\": \"a\"}, 3]}")


def manifest():
    image = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
             "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                        "digest": D256, "size": 1469},
             "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                         "digest": D256B, "size": 3623807},
                        {"mediaType": "application/vnd.oci.image.layer.v1.tar",
                         "digest": D512, "size": 0}]}
    write("manifest", "oci-image", b"\x03" + json.dumps(image).encode())
    index = {"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": D256, "size": 1,
         "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"digest": D256B, "size": 2, "platform": {"os": "linux", "architecture": "amd64"}}]}
    write("manifest", "oci-index", b"\x00" + json.dumps(index).encode())
    docker = dict(image, mediaType="application/vnd.docker.distribution.manifest.v2+json")
    write("manifest", "docker-v2", b"\x05" + json.dumps(docker).encode())
    artifact = {"mediaType": "application/vnd.oci.artifact.manifest.v1+json",
                "artifactType": "application/vnd.cncf.model", "blobs": [
                    {"digest": D256, "size": 9007199254740991}]}
    write("manifest", "artifact", b"\x07" + json.dumps(artifact).encode())
    write("manifest", "schema1", b"\x06{\"schemaVersion\": 1, \"fsLayers\": []}")
    write("manifest", "bad-size", b"\x02{\"manifests\": [{\"digest\": \"%s\", \"size\": -1}]}"
          % D256.encode())


def challenge():
    for i, v in enumerate([
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:library/alpine:pull"',
            'Basic realm="Registry Realm"',
            'bearer REALM=https://h/token, error="insufficient_scope",Service=reg ,'
            'scope=repository:a/b:pull,,charset=UTF-8',
            'Bearer realm="a\\"b\\\\c",service="s\\,t", Basic realm="b"',
            'Bearer realm="unterminated', 'Bearer realm=x;y', '  Basic  ']):
        write("challenge", "seed-%02d" % i, bytes([31, 255]) + v.encode())
    write("challenge", "small-buffers", bytes([3, 4]) + b'Bearer realm="abcd",scope="ab"')


def image_ref():
    for i, v in enumerate([
            "alpine", "library/alpine:3.19", "docker.io/library/alpine@" + D256,
            "ghcr.io/org/model:v1@" + D512, "127.0.0.1:5000/a/b/c:latest", "localhost/x",
            "[::1]:5000/a:b", "UPPER/case", "a:b:c", "host.example/" + "n" * 300,
            "a@sha256:xyz", "name:-bad"]):
        write("image_ref", "seed-%02d" % i, v)


if __name__ == "__main__":
    http_request()
    rng()
    config()
    manifest()
    challenge()
    image_ref()
