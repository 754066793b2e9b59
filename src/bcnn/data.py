"""Images in, uint8 arrays out: class-folder trees, CIFAR-10 python batches, .npy/.npz files.

Every loader returns a ``Dataset``: uint8 images (N, H, W, C) as they lie on disk, int64 labels (or None
when unknown) and class names. Models see pixel/255 in NCHW (``to_model_input``); the IR maps the uint8
pixels itself. Decoded folders are cached as ``.npz`` so that 60,000 JPEGs are decoded once.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bcnn.errors import BcnnError
from bcnn.fileio import atomic_write, cache_root

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm"}
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@dataclass
class Dataset:
    images: np.ndarray  # uint8 (N, H, W, C)
    labels: np.ndarray | None  # int64 (N,)
    classes: list[str]
    source: str = ""  # the format read: "cifar-10-batches-py", "class-folder tree", ".npy" or ".npz"

    def __len__(self) -> int:
        return len(self.images)

    def head(self, n: int | None) -> Dataset:
        if n is None:
            return self
        return replace(self, images=self.images[:n], labels=None if self.labels is None else self.labels[:n])


def load(path: str | os.PathLike, split: str = "test", limit: int | None = None) -> Dataset:
    """Load images from a class-folder tree, a CIFAR-10 batches folder, or a .npy/.npz file.

    A folder holding ``train``/``test`` sub-folders (or CIFAR-10 batch files) is read at ``split``.
    With ``limit``, the first ``limit`` images are taken round-robin over classes, so that a small
    sample still covers every class.
    """
    p = Path(path)
    if not p.exists():
        raise BcnnError(f"{p}: no such file or folder (expected a class-folder tree, a cifar-10-batches-py "
                        "folder, or a .npy/.npz of uint8 images shaped (N, H, W, C))")
    if p.is_file():
        if p.suffix == ".npy":
            return replace(_check(_load_npy(p), p).head(limit), source=".npy")
        if p.suffix == ".npz":
            return replace(_check(_load_npz(p), p).head(limit), source=".npz")
        raise BcnnError(f"{p}: unsupported file type {p.suffix!r} (expected .npy or .npz)")
    if (p / "data_batch_1").exists() or (p / "test_batch").exists():
        return replace(_check(_load_cifar_batches(p, split), p).head(limit), source="cifar-10-batches-py")
    if (p / "cifar-10-batches-py").is_dir():
        return load(p / "cifar-10-batches-py", split, limit)
    if (p / split).is_dir():
        return load(p / split, split, limit)
    return replace(_check(_load_folder(p, limit), p), source="class-folder tree")


def _check(ds: Dataset, where: Path) -> Dataset:
    if ds.images.dtype != np.uint8 or ds.images.ndim != 4 or ds.images.shape[3] not in (1, 3, 4):
        raise BcnnError(f"{where}: images must be uint8 shaped (N, H, W, C) with C in 1, 3, 4; "
                        f"got {ds.images.dtype} {ds.images.shape}")
    if len(ds.images) == 0:
        raise BcnnError(f"{where}: no images")
    if ds.labels is not None and ds.labels.shape != (len(ds.images),):
        raise BcnnError(f"{where}: {len(ds.labels)} labels for {len(ds.images)} images")
    return ds


def _load_npy(p: Path) -> Dataset:
    try:
        images = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise BcnnError(f"{p}: not a readable .npy file ({e})") from None
    if images.ndim == 3:  # a single image
        images = images[None]
    return Dataset(images, None, [])


def _load_npz(p: Path) -> Dataset:
    try:
        with np.load(p, allow_pickle=False) as z:
            if "images" not in z.files:
                raise BcnnError(f"{p}: .npz must hold an 'images' array (and optionally 'labels', 'classes')")
            labels = z["labels"].astype(np.int64) if "labels" in z.files else None
            classes = [str(c) for c in z["classes"]] if "classes" in z.files else []
            return Dataset(z["images"], labels, classes)
    except (OSError, ValueError) as e:
        raise BcnnError(f"{p}: not a readable .npz file ({e})") from None


def _load_cifar_batches(p: Path, split: str) -> Dataset:
    names = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    images, labels = [], []
    for name in names:
        f = p / name
        if not f.is_file():
            raise BcnnError(f"{p}: missing CIFAR-10 batch file {name}")
        try:
            with open(f, "rb") as fh:
                d = pickle.load(fh, encoding="bytes")  # the format users download is a pickle
            data = np.asarray(d[b"data"], dtype=np.uint8)
            labels.append(np.asarray(d[b"labels"], dtype=np.int64))
        except Exception as e:  # noqa: BLE001 - any unpickling failure means a malformed file
            raise BcnnError(f"{f}: not a CIFAR-10 batch file ({e.__class__.__name__}: {e})") from None
        if data.ndim != 2 or data.shape[1] != 3072:
            raise BcnnError(f"{f}: expected rows of 3072 bytes, got {data.shape}")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    classes = CIFAR10_CLASSES
    meta = p / "batches.meta"
    if meta.is_file():
        try:
            with open(meta, "rb") as fh:
                classes = [c.decode() for c in pickle.load(fh, encoding="bytes")[b"label_names"]]
        except Exception:  # noqa: BLE001 - fall back to the standard names
            pass
    return Dataset(np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels), classes)


def save_cifar_batch(path: Path, images: np.ndarray, labels) -> None:
    """Write uint8 images (N, 32, 32, 3) and their labels as one python batch file, atomically: the inverse of
    ``_load_cifar_batches`` (rows of 3072 bytes, the R, G and B planes one after another)."""
    rows = np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), 3072))
    with atomic_write(path) as f:
        pickle.dump({b"batch_label": Path(path).name.encode(), b"labels": [int(v) for v in labels], b"data": rows},
                    f, protocol=4)


def _folder_listing(p: Path) -> tuple[list[str], list[list[Path]]]:
    classes = sorted(d.name for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise BcnnError(f"{p}: no class folders (expected {p}/<class name>/<image>.jpg, or a .npy file)")
    files = [sorted(f for f in (p / c).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) for c in classes]
    empty = [c for c, fs in zip(classes, files, strict=True) if not fs]
    if empty:
        raise BcnnError(f"{p}: class folder(s) with no images: {', '.join(empty)}")
    return classes, files


def _round_robin(files: list[list[Path]], limit: int | None) -> list[tuple[Path, int]]:
    order: list[tuple[Path, int]] = []
    for i in range(max(len(fs) for fs in files)):
        for label, fs in enumerate(files):
            if i < len(fs):
                order.append((fs[i], label))
    return order if limit is None else order[:limit]


def _load_folder(p: Path, limit: int | None) -> Dataset:
    from PIL import Image

    classes, files = _folder_listing(p)
    order = _round_robin(files, limit)
    key = hashlib.sha256(repr([(str(f), f.stat().st_mtime_ns, y) for f, y in order]).encode()).hexdigest()[:20]
    cached = cache_root() / "data" / f"{key}.npz"
    if cached.is_file():
        try:
            return _load_npz(cached)
        except BcnnError:
            cached.unlink(missing_ok=True)
    images = []
    shape = None
    for f, _ in _progress(order, f"decoding {p}"):
        try:
            with Image.open(f) as im:
                arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
        except Exception as e:  # noqa: BLE001 - PIL raises many types for corrupt files
            raise BcnnError(f"{f}: cannot decode image ({e.__class__.__name__}: {e})") from None
        if shape is None:
            shape = arr.shape
        elif arr.shape != shape:
            raise BcnnError(f"{f}: image size {arr.shape[1]}x{arr.shape[0]} differs from the first image's "
                            f"{shape[1]}x{shape[0]}")
        images.append(arr)
    ds = Dataset(np.stack(images), np.array([y for _, y in order], dtype=np.int64), classes)
    save_npz(cached, ds)
    return ds


def _progress(items: list, desc: str):
    if len(items) < 2000:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="img", leave=False, disable=None)  # quiet when not a terminal


def save_npz(path: Path, ds: Dataset) -> None:
    """Write a dataset as .npz atomically."""
    arrays = {"images": ds.images, "classes": np.array(ds.classes)}
    if ds.labels is not None:
        arrays["labels"] = ds.labels
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def to_model_input(images: np.ndarray):
    """uint8 (N, H, W, C) -> float32 torch tensor pixel/255 in NCHW, exactly as torchvision's ToTensor."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    return x.float().div(255)


def default_data_dir() -> Path | None:
    """The shared CIFAR-10 copy beside the project, where present."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        d = base.parent / "shared" / "datasets" / "cifar10"
        if d.is_dir():
            return d
    return None
