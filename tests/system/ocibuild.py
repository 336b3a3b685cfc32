#!/usr/bin/python3
"""Offline builder of OCI image layouts and model artifacts, and a pusher.

Importable by the system tests and usable from the shell (the demo script
uses it). Everything is standard library only, so it runs with Debian's
/usr/bin/python3 on a machine without pip packages.

A layout directory holds `oci-layout`, `index.json` and `blobs/sha256/<hex>`;
`skopeo copy oci:DIR:TAG docker://...` and `push_layout_http()` both accept
it. Content is random; with a seed it is reproducible (same seed, same
digests), which the demo and the benchmarks rely on.

Examples:
    ocibuild.py image DIR --tag v1 --layers 3 --layer-size 1MiB
    ocibuild.py ormb DIR --tag v1 --size 4MiB
    ocibuild.py modelpack DIR --tag v1 --size 64MiB
    ocibuild.py modelpack-parts DIR --tag v1 --size 8MiB
    ocibuild.py kitops DIR --tag v1 --size 4MiB
    ocibuild.py blob DIR --size 2048
    ocibuild.py push DIR --tag v1 --registry 127.0.0.1:5000 --repo test/img
"""

import argparse
import base64
import gzip
import hashlib
import http.client
import json
import os
import random
import re
import sys
import tarfile
import tempfile
import urllib.parse

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_ORMB_CONFIG = "application/vnd.caicloud.model.config.v1alpha1+json"
MT_ORMB_LAYER = "application/tar+gzip"
MT_MODELPACK_ARTIFACT = "application/vnd.cncf.model.manifest.v1+json"
MT_MODELPACK_CONFIG = "application/vnd.cncf.model.config.v1+json"
MT_MODELPACK_WEIGHT_RAW = "application/vnd.cncf.model.weight.v1.raw"
MT_MODELPACK_WEIGHT_CONFIG_RAW = "application/vnd.cncf.model.weight.config.v1.raw"
MT_MODELPACK_DOC_RAW = "application/vnd.cncf.model.doc.v1.raw"
MT_MODELPACK_CODE_TAR = "application/vnd.cncf.model.code.v1.tar"
MT_KITOPS_ARTIFACT = "application/vnd.kitops.modelkit.manifest.v1+json"
MT_KITOPS_CONFIG = "application/vnd.kitops.modelkit.config.v1+json"
MT_KITOPS_MODEL = "application/vnd.kitops.modelkit.model.v1.tar+gzip"
MT_KITOPS_DATASET = "application/vnd.kitops.modelkit.dataset.v1.tar+gzip"
MT_KITOPS_DOCS = "application/vnd.kitops.modelkit.docs.v1.tar+gzip"
MT_OCTET = "application/octet-stream"

CHUNK = 1 << 20
# Fixed timestamps keep seeded builds byte-for-byte reproducible.
FIXED_TIME = "2024-01-01T00:00:00Z"
FIXED_MTIME = 1704067200

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_SIZE_MULT = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "ki": 1024,
              "m": 1000**2, "mb": 1000**2, "mib": 1024**2, "mi": 1024**2,
              "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "gi": 1024**3,
              "t": 1000**4, "tb": 1000**4, "tib": 1024**4, "ti": 1024**4}


def parse_size(text):
    """'2048', '4KiB', '64MiB', '1GB' -> bytes (int)."""
    if isinstance(text, int):
        return text
    m = _SIZE_RE.match(str(text))
    if not m:
        raise ValueError("invalid size %r" % (text,))
    unit = (m.group(2) or "").lower()
    if unit not in _SIZE_MULT:
        raise ValueError("invalid size unit %r" % (text,))
    return int(m.group(1)) * _SIZE_MULT[unit]


class RandomStream:
    """File-like reader of `size` random bytes, generated in 1 MiB chunks.

    With a seed the bytes are reproducible (random.Random.randbytes); without
    one they come from os.urandom. Never holds more than one chunk."""

    def __init__(self, size, seed=None):
        self.remaining = size
        self.rng = random.Random(seed) if seed is not None else None
        self.buf = b""

    def _gen(self, n):
        if self.rng is not None:
            return self.rng.randbytes(n)
        return os.urandom(n)

    def read(self, n=-1):
        if n is None or n < 0:
            n = self.remaining + len(self.buf)
        out = []
        want = n
        while want > 0 and (self.buf or self.remaining > 0):
            if not self.buf:
                k = min(CHUNK, self.remaining)
                self.buf = self._gen(k)
                self.remaining -= k
            take = self.buf[:want]
            self.buf = self.buf[len(take):]
            out.append(take)
            want -= len(take)
        return b"".join(out)


class _HashingWriter:
    """Write-through wrapper that hashes and counts what passes."""

    def __init__(self, f):
        self.f = f
        self.h = hashlib.sha256()
        self.n = 0

    def write(self, data):
        self.h.update(data)
        self.n += len(data)
        if self.f is not None:
            self.f.write(data)
        return len(data)

    def flush(self):
        if self.f is not None:
            self.f.flush()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(CHUNK)
            if not b:
                break
            h.update(b)
    return "sha256:" + h.hexdigest()


class Layout:
    """An OCI image layout directory being written."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.blobdir = os.path.join(self.path, "blobs", "sha256")
        os.makedirs(self.blobdir, exist_ok=True)
        with open(os.path.join(self.path, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        idx = os.path.join(self.path, "index.json")
        if os.path.exists(idx):
            with open(idx) as f:
                self.index = json.load(f)
        else:
            self.index = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": []}
            self._write_index()

    def blob_path(self, digest):
        return os.path.join(self.blobdir, digest.split(":", 1)[1])

    def _tmp(self):
        fd, p = tempfile.mkstemp(dir=self.blobdir, prefix=".tmp-")
        return os.fdopen(fd, "wb"), p

    def _commit(self, tmp_path, digest):
        dst = self.blob_path(digest)
        if os.path.exists(dst):
            os.unlink(tmp_path)
        else:
            os.rename(tmp_path, dst)

    def add_bytes(self, data, media_type=MT_OCTET, annotations=None):
        """Stores `data` as a blob; returns its descriptor."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        dst = self.blob_path(digest)
        if not os.path.exists(dst):
            f, tmp = self._tmp()
            with f:
                f.write(data)
            self._commit(tmp, digest)
        return _desc(media_type, digest, len(data), annotations)

    def add_stream(self, reader, media_type=MT_OCTET, annotations=None):
        """Stores everything `reader.read()` yields; returns its descriptor."""
        f, tmp = self._tmp()
        hw = _HashingWriter(f)
        with f:
            while True:
                b = reader.read(CHUNK)
                if not b:
                    break
                hw.write(b)
        digest = "sha256:" + hw.h.hexdigest()
        self._commit(tmp, digest)
        return _desc(media_type, digest, hw.n, annotations)

    def add_random(self, size, seed=None, media_type=MT_OCTET, annotations=None):
        return self.add_stream(RandomStream(size, seed), media_type, annotations)

    def add_tar_gz_layer(self, files, media_type=MT_OCI_LAYER_GZIP, annotations=None):
        """A real gzip-compressed tar with `files` = [(name, size, seed)] of
        random bytes. Returns (descriptor, diff_id). Headers use fixed
        mtime/uid so seeded layers are reproducible."""
        f, tmp = self._tmp()
        compressed = _HashingWriter(f)
        with f:
            # compresslevel 1: random data does not compress anyway, and
            # level 1 is several times faster for big layers.
            gz = gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=1, mtime=0,
                               filename="")
            uncompressed = _HashingWriter(gz)
            with tarfile.open(fileobj=uncompressed, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                dirs = set()
                for name, size, seed in files:
                    parts = name.split("/")[:-1]
                    for i in range(1, len(parts) + 1):
                        d = "/".join(parts[:i])
                        if d not in dirs:
                            dirs.add(d)
                            ti = _tarinfo(d + "/", 0)
                            ti.type = tarfile.DIRTYPE
                            ti.mode = 0o755
                            tar.addfile(ti)
                    tar.addfile(_tarinfo(name, size), RandomStream(size, seed))
            gz.close()
        digest = "sha256:" + compressed.h.hexdigest()
        self._commit(tmp, digest)
        diff_id = "sha256:" + uncompressed.h.hexdigest()
        return _desc(media_type, digest, compressed.n, annotations), diff_id

    def add_manifest(self, manifest, tag=None, media_type=MT_OCI_MANIFEST):
        """Serialises `manifest`, stores it and lists it in index.json under
        `tag`. Returns (descriptor, raw bytes)."""
        raw = json.dumps(manifest, indent=2, sort_keys=False).encode()
        desc = self.add_bytes(raw, media_type)
        entry = dict(desc)
        if manifest.get("artifactType"):
            entry["artifactType"] = manifest["artifactType"]
        if tag:
            entry["annotations"] = {"org.opencontainers.image.ref.name": tag}
            self.index["manifests"] = [
                m for m in self.index["manifests"]
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
        self.index["manifests"].append(entry)
        self._write_index()
        return desc, raw

    def _write_index(self):
        p = os.path.join(self.path, "index.json")
        with open(p + ".tmp", "w") as f:
            json.dump(self.index, f, indent=2)
        os.rename(p + ".tmp", p)

    def manifest_for(self, tag):
        """(descriptor, raw bytes, parsed) of the manifest tagged `tag`."""
        for m in self.index["manifests"]:
            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
                with open(self.blob_path(m["digest"]), "rb") as f:
                    raw = f.read()
                return m, raw, json.loads(raw)
        raise KeyError("tag %r not in %s" % (tag, self.path))

    def tags(self):
        return [m["annotations"]["org.opencontainers.image.ref.name"]
                for m in self.index["manifests"]
                if "org.opencontainers.image.ref.name" in m.get("annotations", {})]


def _desc(media_type, digest, size, annotations=None):
    d = {"mediaType": media_type, "digest": digest, "size": size}
    if annotations:
        d["annotations"] = dict(annotations)
    return d


def _tarinfo(name, size):
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = FIXED_MTIME
    ti.mode = 0o644
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    return ti


def _sub_seed(seed, *parts):
    if seed is None:
        return None
    return "%s/%s" % (seed, "/".join(str(p) for p in parts))


class Built:
    """What a build function made: layout, tag, manifest descriptor and bytes,
    parsed manifest, and every blob descriptor (config first)."""

    def __init__(self, layout, tag, desc, raw, media_type):
        self.layout = layout
        self.tag = tag
        self.desc = desc
        self.raw = raw
        self.media_type = media_type
        self.manifest = json.loads(raw)
        self.digest = desc["digest"]
        self.blobs = [self.manifest["config"]] + list(self.manifest.get("layers", []))

    def blob_digests(self):
        return [b["digest"] for b in self.blobs]

    def to_json(self):
        return {"layout": self.layout.path, "tag": self.tag, "digest": self.digest,
                "mediaType": self.media_type, "size": len(self.raw),
                "blobs": self.blobs}


def build_image(path, tag="latest", layers=1, layer_size=1 << 20, seed=None,
                layer_sizes=None):
    """A runnable-by-unpacking image: `layers` gzip tar layers, each holding
    one file of random bytes (layer_sizes overrides sizes per layer)."""
    lay = Layout(path)
    sizes = list(layer_sizes) if layer_sizes else [layer_size] * layers
    descs, diff_ids = [], []
    for i, sz in enumerate(sizes):
        d, diff = lay.add_tar_gz_layer([("data/layer%d.bin" % i, sz, _sub_seed(seed, "layer", i))])
        descs.append(d)
        diff_ids.append(diff)
    config = {
        "created": FIXED_TIME,
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["/bin/true"],
                   "Labels": {"org.shoal.test": str(seed) if seed is not None else "random"}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": FIXED_TIME, "created_by": "ocibuild layer %d" % i}
                    for i in range(len(sizes))],
    }
    cdesc = lay.add_bytes(json.dumps(config, indent=2).encode(), MT_OCI_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST, "config": cdesc,
                "layers": descs,
                "annotations": {"org.opencontainers.image.created": FIXED_TIME}}
    desc, raw = lay.add_manifest(manifest, tag)
    return Built(lay, tag, desc, raw, MT_OCI_MANIFEST)


def build_multilayer(path, tag="latest", seed=None):
    """An image with layers of varied sizes (tiny to 2 MiB), several files."""
    return build_image(path, tag, seed=seed,
                       layer_sizes=[1, 4096, 300 * 1024, 2 << 20, 77777])


def build_ormb(path, tag="v1", size=1 << 20, seed=None):
    """An ORMB model artifact: OCI image manifest without a mediaType field
    in the body, caicloud model config, one application/tar+gzip layer."""
    lay = Layout(path)
    ldesc, _ = lay.add_tar_gz_layer([("model/saved_model.pb", size, _sub_seed(seed, "model")),
                                     ("model/variables/variables.index", 1234,
                                      _sub_seed(seed, "idx"))], media_type=MT_ORMB_LAYER)
    config = {
        "format": "SavedModel",
        "framework": "TensorFlow",
        "version": "v1",
        "signature": {
            "inputs": [{"name": "input_1", "size": [-1, 28, 28, 1], "dtype": "float32"}],
            "outputs": [{"name": "dense_1", "size": [-1, 10], "dtype": "float32"}],
            "layers": [{"name": "conv2d"}, {"name": "flatten"}, {"name": "dense_1"}],
        },
        "training": {"git": {"repository": "https://example.invalid/mnist.git",
                             "revision": "22f1d8406d464b0c0874075539c1f2e96c253775"}},
        "dataset": {"git": {"repository": "https://example.invalid/data.git",
                            "revision": "3b8a7fa4b5c8d2c9a1e2f0d1c2b3a4f5e6d7c8b9"}},
        "author": "shoal-tests",
        "description": "MNIST classifier used by shoal system tests",
        "tags": ["cv", "mnist"],
        "labels": {"tensorflow.version": "2.1.0"},
        "metrics": [{"name": "acc", "value": "0.97"}],
        "hyperParameters": [{"name": "batch_size", "value": "32"}],
        "created": FIXED_TIME,
        "directoryStructure": ["model/", "model/saved_model.pb", "model/variables/"],
        "size": size + 1234,
    }
    cdesc = lay.add_bytes(json.dumps(config, indent=2).encode(), MT_ORMB_CONFIG)
    # ORMB writes the OCI image manifest without "mediaType" in the body.
    manifest = {"schemaVersion": 2, "config": cdesc, "layers": [ldesc]}
    desc, raw = lay.add_manifest(manifest, tag)
    return Built(lay, tag, desc, raw, MT_OCI_MANIFEST)


def build_modelpack(path, tag="v1", size=1 << 20, seed=None, filepath="model.safetensors"):
    """A CNCF ModelPack artifact: artifactType model manifest, model config,
    one raw weight layer with the org.cncf.model.filepath annotation."""
    lay = Layout(path)
    wdesc = lay.add_random(size, _sub_seed(seed, "weight"), MT_MODELPACK_WEIGHT_RAW,
                           {"org.cncf.model.filepath": filepath,
                            "org.cncf.model.file.metadata+json": json.dumps(
                                {"name": filepath, "mode": 420, "uid": 0, "gid": 0,
                                 "size": size, "mtime": FIXED_TIME, "typeflag": 0})})
    config = {
        "descriptor": {"createdAt": FIXED_TIME, "authors": ["shoal-tests"],
                       "family": "llama3", "name": "tiny-llama", "version": "0.1",
                       "licenses": ["Apache-2.0"], "vendor": "shoal",
                       "title": "tiny test model"},
        "config": {"architecture": "transformer", "format": "safetensors",
                   "paramSize": "8b", "precision": "bf16",
                   "quantization": "awq"},
        "modelfs": {"type": "layers", "diffIds": [wdesc["digest"]]},
    }
    cdesc = lay.add_bytes(json.dumps(config, indent=2).encode(), MT_MODELPACK_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                "artifactType": MT_MODELPACK_ARTIFACT, "config": cdesc,
                "layers": [wdesc],
                "annotations": {"org.opencontainers.image.created": FIXED_TIME}}
    desc, raw = lay.add_manifest(manifest, tag)
    return Built(lay, tag, desc, raw, MT_OCI_MANIFEST)


def _modelpack_file(lay, media_type, name, size, seed):
    return lay.add_random(size, seed, media_type,
                          {"org.cncf.model.filepath": name,
                           "org.cncf.model.file.metadata+json": json.dumps(
                               {"name": name, "mode": 420, "uid": 0, "gid": 0, "size": size,
                                "mtime": FIXED_TIME, "typeflag": 0})})


def build_modelpack_parts(path, tag="v1", size=1 << 20, seed=None):
    """A ModelPack artifact as model tools write them: two weight shards
    (*.safetensors, `size` bytes each), the weight config files
    (config.json, tokenizer.json), a README and a code tarball, each a layer
    with its org.cncf.model.filepath. For layer-selection tests."""
    lay = Layout(path)
    layers = [
        _modelpack_file(lay, MT_MODELPACK_WEIGHT_RAW, "model-00001-of-00002.safetensors", size,
                        _sub_seed(seed, "w1")),
        _modelpack_file(lay, MT_MODELPACK_WEIGHT_RAW, "model-00002-of-00002.safetensors", size,
                        _sub_seed(seed, "w2")),
        _modelpack_file(lay, MT_MODELPACK_WEIGHT_CONFIG_RAW, "config.json", 3000,
                        _sub_seed(seed, "cfg")),
        _modelpack_file(lay, MT_MODELPACK_WEIGHT_CONFIG_RAW, "tokenizer.json", 70000,
                        _sub_seed(seed, "tok")),
        _modelpack_file(lay, MT_MODELPACK_DOC_RAW, "README.md", 5000, _sub_seed(seed, "doc")),
    ]
    code, _ = lay.add_tar_gz_layer([("src/serve.py", 20000, _sub_seed(seed, "code"))],
                                   media_type=MT_MODELPACK_CODE_TAR,
                                   annotations={"org.cncf.model.filepath": "src"})
    layers.append(code)
    config = {
        "descriptor": {"createdAt": FIXED_TIME, "authors": ["shoal-tests"], "family": "qwen2",
                       "name": "tiny-qwen", "version": "2.5", "licenses": ["Apache-2.0"]},
        "config": {"architecture": "transformer", "format": "safetensors", "paramSize": "0.5b",
                   "precision": "fp16", "quantization": "gptq"},
        "modelfs": {"type": "layers", "diffIds": [d["digest"] for d in layers]},
    }
    cdesc = lay.add_bytes(json.dumps(config, indent=2).encode(), MT_MODELPACK_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                "artifactType": MT_MODELPACK_ARTIFACT, "config": cdesc, "layers": layers}
    desc, raw = lay.add_manifest(manifest, tag)
    return Built(lay, tag, desc, raw, MT_OCI_MANIFEST)


def build_kitops(path, tag="v1", size=1 << 20, seed=None):
    """A KitOps ModelKit: the Kitfile as the JSON config, a model layer, a
    dataset and docs (gzip tars), as `kit pack` lays them out."""
    lay = Layout(path)
    model, _ = lay.add_tar_gz_layer([("models/mnist.onnx", size, _sub_seed(seed, "model"))],
                                    media_type=MT_KITOPS_MODEL,
                                    annotations={"org.opencontainers.image.title": "models"})
    data, _ = lay.add_tar_gz_layer([("data/train.csv", 50000, _sub_seed(seed, "data"))],
                                   media_type=MT_KITOPS_DATASET,
                                   annotations={"org.opencontainers.image.title": "data"})
    docs, _ = lay.add_tar_gz_layer([("README.md", 4000, _sub_seed(seed, "docs"))],
                                   media_type=MT_KITOPS_DOCS,
                                   annotations={"org.opencontainers.image.title": "README.md"})
    kitfile = {
        "manifestVersion": "1.0.0",
        "package": {"name": "mnist-kit", "version": "1.2.0",
                    "description": "Digit classifier used by shoal system tests",
                    "authors": ["shoal-tests"], "license": "Apache-2.0"},
        "model": {"name": "mnist", "path": "models/mnist.onnx", "framework": "onnx",
                  "version": "1.2.0", "license": "Apache-2.0",
                  "description": "a small CNN"},
        "datasets": [{"name": "training", "path": "data/train.csv",
                      "description": "train split"}],
        "docs": [{"path": "README.md", "description": "model card"}],
    }
    cdesc = lay.add_bytes(json.dumps(kitfile, indent=2).encode(), MT_KITOPS_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                "artifactType": MT_KITOPS_ARTIFACT, "config": cdesc,
                "layers": [model, data, docs],
                "annotations": {"org.opencontainers.image.created": FIXED_TIME}}
    desc, raw = lay.add_manifest(manifest, tag)
    return Built(lay, tag, desc, raw, MT_OCI_MANIFEST)


def build_blob(path, size, seed=None):
    """One raw random blob in the layout (not referenced by any manifest).
    Returns its descriptor; push it with push_blob_http()."""
    return Layout(path).add_random(size, seed)


# ---------------------------------------------------------------- pushing --

class RegistryError(Exception):
    def __init__(self, status, body, what):
        super().__init__("%s: HTTP %s: %s" % (what, status, body[:300]))
        self.status = status
        self.body = body


class RegistryClient:
    """Minimal OCI distribution push/pull client over plain http (tests only
    ever talk to 127.0.0.1). Supports HTTP Basic credentials."""

    def __init__(self, hostport, username=None, password=None, timeout=120):
        self.hostport = hostport
        self.timeout = timeout
        self.auth = None
        if username is not None:
            tok = base64.b64encode(("%s:%s" % (username, password or "")).encode()).decode()
            self.auth = "Basic " + tok

    def _conn(self):
        host, port = self.hostport.rsplit(":", 1)
        return http.client.HTTPConnection(host, int(port), timeout=self.timeout)

    def request(self, method, path, body=None, headers=None, length=None):
        """Returns (status, headers dict lower-cased, body bytes)."""
        h = dict(headers or {})
        if self.auth:
            h["Authorization"] = self.auth
        c = self._conn()
        try:
            if body is not None and not isinstance(body, (bytes, bytearray)):
                # A file object: stream it with an explicit length.
                h["Content-Length"] = str(length)
                c.putrequest(method, path, skip_accept_encoding=True)
                for k, v in h.items():
                    c.putheader(k, v)
                c.endheaders()
                while True:
                    b = body.read(CHUNK)
                    if not b:
                        break
                    c.send(b)
            else:
                if body is None and method in ("PUT", "POST", "PATCH"):
                    body = b""
                c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def blob_exists(self, repo, digest):
        st, _, _ = self.request("HEAD", "/v2/%s/blobs/%s" % (repo, digest))
        return st == 200

    def push_blob_file(self, repo, path, digest=None, size=None):
        if digest is None:
            digest = sha256_file(path)
        if size is None:
            size = os.path.getsize(path)
        if self.blob_exists(repo, digest):
            return digest
        st, hd, body = self.request("POST", "/v2/%s/blobs/uploads/" % repo)
        if st != 202:
            raise RegistryError(st, body, "start upload %s" % repo)
        loc = hd["location"]
        u = urllib.parse.urlsplit(loc)
        q = urllib.parse.parse_qsl(u.query, keep_blank_values=True)
        q.append(("digest", digest))
        target = u.path + "?" + urllib.parse.urlencode(q)
        with open(path, "rb") as f:
            st, _, body = self.request("PUT", target, body=f, length=size,
                                       headers={"Content-Type": MT_OCTET})
        if st != 201:
            raise RegistryError(st, body, "put blob %s" % digest)
        return digest

    def push_blob_bytes(self, repo, data):
        with tempfile.NamedTemporaryFile() as t:
            t.write(data)
            t.flush()
            return self.push_blob_file(repo, t.name)

    def put_manifest(self, repo, ref, raw, media_type):
        st, hd, body = self.request("PUT", "/v2/%s/manifests/%s" % (repo, ref), body=raw,
                                    headers={"Content-Type": media_type})
        if st != 201:
            raise RegistryError(st, body, "put manifest %s:%s" % (repo, ref))
        return hd.get("docker-content-digest")

    def get_manifest(self, repo, ref, accept=None):
        acc = accept or ", ".join([MT_OCI_MANIFEST, MT_OCI_INDEX,
                                   "application/vnd.docker.distribution.manifest.v2+json",
                                   "application/vnd.docker.distribution.manifest.list.v2+json"])
        return self.request("GET", "/v2/%s/manifests/%s" % (repo, ref), headers={"Accept": acc})


def push_layout_http(layout_dir, registry, repo, tag=None, username=None, password=None,
                     dest_tag=None):
    """Pushes every tagged manifest of the layout (or only `tag`, then
    optionally under the name `dest_tag`) with the plain distribution API:
    blobs first (monolithic upload), then the manifest. Works for any media
    type. Returns {tag pushed: manifest digest}."""
    lay = Layout(layout_dir)
    cli = RegistryClient(registry, username, password)
    out = {}
    for t in ([tag] if tag else lay.tags()):
        desc, raw, man = lay.manifest_for(t)
        blobs = []
        if "config" in man:
            blobs.append(man["config"])
        blobs += man.get("layers", [])
        for b in blobs:
            cli.push_blob_file(repo, lay.blob_path(b["digest"]), b["digest"], b["size"])
        mt = man.get("mediaType") or desc.get("mediaType") or MT_OCI_MANIFEST
        t_dst = dest_tag if (tag and dest_tag) else t
        cli.put_manifest(repo, t_dst, raw, mt)
        out[t_dst] = desc["digest"]
    return out


def push_blob_http(layout_dir, registry, repo, digest, username=None, password=None):
    """Pushes one blob of the layout (e.g. from build_blob())."""
    lay = Layout(layout_dir)
    cli = RegistryClient(registry, username, password)
    return cli.push_blob_file(repo, lay.blob_path(digest), digest)


def push_layout_skopeo(layout_dir, registry, repo, tag, username=None, password=None):
    """Pushes with skopeo, keeping digests. Raises CalledProcessError."""
    import subprocess
    cmd = ["skopeo", "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false"]
    if username is not None:
        cmd += ["--dest-creds", "%s:%s" % (username, password)]
    cmd += ["oci:%s:%s" % (layout_dir, tag), "docker://%s/%s:%s" % (registry, repo, tag)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)


# -------------------------------------------------------------------- CLI --

def _main(argv=None):
    p = argparse.ArgumentParser(
        prog="ocibuild.py",
        description="Build OCI image layouts / model artifacts offline and push them.")
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp, tag_default="latest"):
        sp.add_argument("dir", help="OCI layout directory (created if missing)")
        sp.add_argument("--tag", default=tag_default)
        sp.add_argument("--seed", default=None, help="reproducible content (same seed, same digests)")

    sp = sub.add_parser("image", help="image with N random gzip tar layers")
    common(sp)
    sp.add_argument("--layers", type=int, default=1)
    sp.add_argument("--layer-size", default="1MiB")
    sp = sub.add_parser("multilayer", help="image with 5 layers of varied sizes")
    common(sp)
    sp = sub.add_parser("ormb", help="ORMB-style model artifact")
    common(sp, "v1")
    sp.add_argument("--size", default="1MiB")
    sp = sub.add_parser("modelpack", help="CNCF ModelPack-style model artifact (raw weight layer)")
    common(sp, "v1")
    sp.add_argument("--size", default="1MiB")
    sp.add_argument("--filepath", default="model.safetensors")
    sp = sub.add_parser("modelpack-parts",
                        help="ModelPack with weight shards, weight config, docs and code layers")
    common(sp, "v1")
    sp.add_argument("--size", default="1MiB", help="size of each weight shard")
    sp = sub.add_parser("kitops", help="KitOps ModelKit (Kitfile config, model/dataset/docs)")
    common(sp, "v1")
    sp.add_argument("--size", default="1MiB")
    sp = sub.add_parser("blob", help="one raw random blob (prints its digest)")
    sp.add_argument("dir")
    sp.add_argument("--size", required=True)
    sp.add_argument("--seed", default=None)
    sp = sub.add_parser("push", help="push a layout (or one blob) to a registry")
    sp.add_argument("dir")
    sp.add_argument("--registry", required=True, help="HOST:PORT (plain http)")
    sp.add_argument("--repo", required=True)
    sp.add_argument("--tag", default=None, help="only this tag (default: all tags)")
    sp.add_argument("--blob", default=None, help="push only this blob digest")
    sp.add_argument("--username")
    sp.add_argument("--password")
    sp.add_argument("--skopeo", action="store_true", help="push with skopeo instead of HTTP")
    a = p.parse_args(argv)

    if a.cmd == "image":
        b = build_image(a.dir, a.tag, a.layers, parse_size(a.layer_size), a.seed)
    elif a.cmd == "multilayer":
        b = build_multilayer(a.dir, a.tag, a.seed)
    elif a.cmd == "ormb":
        b = build_ormb(a.dir, a.tag, parse_size(a.size), a.seed)
    elif a.cmd == "modelpack":
        b = build_modelpack(a.dir, a.tag, parse_size(a.size), a.seed, a.filepath)
    elif a.cmd == "modelpack-parts":
        b = build_modelpack_parts(a.dir, a.tag, parse_size(a.size), a.seed)
    elif a.cmd == "kitops":
        b = build_kitops(a.dir, a.tag, parse_size(a.size), a.seed)
    elif a.cmd == "blob":
        d = build_blob(a.dir, parse_size(a.size), a.seed)
        print(json.dumps(d))
        return 0
    else:
        if a.blob:
            print(push_blob_http(a.dir, a.registry, a.repo, a.blob, a.username, a.password))
        elif a.skopeo:
            tags = [a.tag] if a.tag else Layout(a.dir).tags()
            for t in tags:
                push_layout_skopeo(a.dir, a.registry, a.repo, t, a.username, a.password)
                print(json.dumps({t: Layout(a.dir).manifest_for(t)[0]["digest"]}))
        else:
            print(json.dumps(push_layout_http(a.dir, a.registry, a.repo, a.tag,
                                              a.username, a.password)))
        return 0
    print(json.dumps(b.to_json(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
