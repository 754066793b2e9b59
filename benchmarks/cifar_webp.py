"""CIFAR-10 as lossless WebP, small enough to carry to a lent GPU machine in two calls.

A device call carries 64 MiB; the original CIFAR-10 is 184 MB of pixels, 139 MB as PNG rows. Lossless
WebP of each 10,000-image batch tiled as a 100 x 100 grid of 32 x 32 images (2-D neighbours to predict
from) takes about 4.4 bits a sample, 17 MB a batch, so the six batches split into two carries:

    python benchmarks/cifar_webp.py pack DATA FIRST SECOND   # FIRST: test_batch, data_batch_1-2; SECOND: 3-5
    python benchmarks/cifar_webp.py unpack OUT FIRST [SECOND]   # there: OUT/cifar-10-batches-py, as it was

DATA is anything ``bcnn.data.load`` reads with 32 x 32 RGB images (the original batches of ``bcnn
fetch-cifar10``, the JPEG tree, or a small set for tests); its training images are split into five
batches, as CIFAR-10's. Each batch is one ``NAME.webp`` and its labels ``NAME.labels.npy``; unpack
checks every batch's pixels against the SHA-256 that pack wrote beside it, so a damaged carry fails
before training on it.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from bcnn import data

GRID = 100  # images per grid row: 100 x 100 tiles of one CIFAR-10 batch
FIRST = ("test_batch", "data_batch_1", "data_batch_2")  # the first call's carry; the rest comes with the second


def _batches(ds_train: data.Dataset, ds_test: data.Dataset) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {"test_batch": (ds_test.images, ds_test.labels)}
    per = -(-len(ds_train) // 5)
    for i in range(5):
        part = slice(i * per, (i + 1) * per)
        out[f"data_batch_{i + 1}"] = (ds_train.images[part], ds_train.labels[part])
    return out


def _to_grid(images: np.ndarray) -> np.ndarray:
    n = len(images)
    rows = -(-n // GRID)
    padded = np.zeros((rows * GRID, 32, 32, 3), np.uint8)
    padded[:n] = images
    return padded.reshape(rows, GRID, 32, 32, 3).transpose(0, 2, 1, 3, 4).reshape(rows * 32, GRID * 32, 3)


def _from_grid(grid: np.ndarray, n: int) -> np.ndarray:
    rows = grid.shape[0] // 32
    return grid.reshape(rows, 32, GRID, 32, 3).transpose(0, 2, 1, 3, 4).reshape(-1, 32, 32, 3)[:n]


def pack(source: str, first: str, second: str) -> None:
    train, test = data.load(source, "train"), data.load(source, "test")
    if train.images.shape[1:] != (32, 32, 3):
        sys.exit(f"{source}: images {train.images.shape[1:]}, expected CIFAR-10's (32, 32, 3)")
    for name, (images, labels) in _batches(train, test).items():
        folder = Path(first if name in FIRST else second)
        folder.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        Image.fromarray(_to_grid(images)).save(buf, "WEBP", lossless=True, quality=100, method=6)
        (folder / f"{name}.webp").write_bytes(buf.getvalue())
        np.save(folder / f"{name}.labels.npy", labels.astype(np.uint8))
        (folder / f"{name}.sha256").write_text(hashlib.sha256(images.tobytes()).hexdigest())
        print(f"{folder}/{name}.webp: {len(buf.getvalue()) / 1e6:.1f} MB", file=sys.stderr)


def unpack(out: str, folders: list[str]) -> Path:
    dest = Path(out) / "cifar-10-batches-py"
    dest.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        for webp in sorted(Path(folder).glob("*.webp")):
            name = webp.name.removesuffix(".webp")
            if (dest / name).is_file():
                continue
            labels = np.load(webp.with_name(f"{name}.labels.npy"))
            images = _from_grid(np.asarray(Image.open(webp).convert("RGB")), len(labels))
            if hashlib.sha256(images.tobytes()).hexdigest() != webp.with_name(f"{name}.sha256").read_text().strip():
                sys.exit(f"{webp}: its pixels do not match the SHA-256 packed beside it")
            data.save_cifar_batch(dest / name, images, labels)
    return dest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("pack", help="DATA -> NAME.webp per batch: the test batch and training batches 1-2 in "
                        "FIRST, 3-5 in SECOND")
    sp.add_argument("source")
    sp.add_argument("first")
    sp.add_argument("second")
    sp = sub.add_parser("unpack", help="the .webp batches in FOLDERS -> OUT/cifar-10-batches-py (those present)")
    sp.add_argument("out")
    sp.add_argument("folders", nargs="+")
    args = p.parse_args()
    if args.cmd == "pack":
        pack(args.source, args.first, args.second)
    else:
        print(unpack(args.out, args.folders))


if __name__ == "__main__":
    main()
