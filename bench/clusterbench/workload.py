"""The two workloads: a model artifact with one large weight blob, and an
image shaped like an inference server's (tens of layers, a few large).
Built with tests/system/ocibuild.py (seeded, so a size gives the same
digests every run) and pushed to the upstream registry."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "system"))
import ocibuild  # noqa: E402

REPO = {"model": "bench/model", "image": "bench/inference-server"}
TAG = "v1"

# Fractions of the image size for the large layers, then many small ones,
# after the layer lists of CUDA inference-server images (a multi-GB layer of
# libraries and backends, CUDA/cuDNN, Python packages, then small layers of
# config and scripts).
IMAGE_LARGE = [0.42, 0.21, 0.12, 0.08, 0.05, 0.04, 0.03]
IMAGE_SMALL_LAYERS = 23


def image_layer_sizes(total):
    """~30 layer sizes adding up to `total`: seven large ones and 23 small
    ones (4 KiB up to a few MiB, geometric) sharing what is left."""
    large = [int(total * f) for f in IMAGE_LARGE]
    rest = total - sum(large)
    weights = [2.0 ** (i % 12) for i in range(IMAGE_SMALL_LAYERS)]
    small = [max(512, int(rest * w / sum(weights))) for w in weights]
    large[0] += total - sum(large) - sum(small)
    return large + small


class File:
    def __init__(self, desc, layout):
        self.digest = desc["digest"]
        self.sha256 = self.digest.split(":", 1)[1]
        self.name = "sha256-" + self.sha256
        self.size = desc["size"]
        self.path = layout.blob_path(self.digest)


class Workload:
    def __init__(self, kind, size, built, registry_host):
        self.kind = kind
        self.size = size
        self.repo = REPO[kind]
        self.tag = TAG
        self.ref = "%s/%s:%s" % (registry_host, self.repo, self.tag)
        self.layout_dir = built.layout.path
        man = built.layout.manifest_for(self.tag)[2]
        descs = [man["config"]] + man["layers"]
        self.files = [File(d, built.layout) for d in descs]
        self.total_bytes = sum(f.size for f in self.files)
        self.largest = max(f.size for f in self.files)

    def describe(self):
        if self.kind == "model":
            return ("model artifact (CNCF ModelPack): one %s weight blob + config" %
                    fmt_size(self.largest))
        return ("inference-server image: %d layers, largest %s, %d under 1 MiB" %
                (len(self.files) - 1, fmt_size(self.largest),
                 sum(1 for f in self.files[1:] if f.size < 1 << 20)))


def build(kind, size, workdir, registry_host):
    path = os.path.join(workdir, "layout-%s" % kind)
    if kind == "model":
        built = ocibuild.build_modelpack(path, TAG, size, seed="bench-model-%d" % size)
    else:
        built = ocibuild.build_image(path, TAG, seed="bench-image-%d" % size,
                                     layer_sizes=image_layer_sizes(size))
    return Workload(kind, size, built, registry_host)


def fmt_size(n):
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            return "%.3g %s" % (n / div, unit)
    return "%d B" % n


parse_size = ocibuild.parse_size
