"""Data loaders on small generated folders, pickle batches and arrays, and their errors."""

import pickle

import numpy as np
import pytest
from PIL import Image

from bcnn import data
from bcnn.errors import BcnnError


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BCNN_CACHE", str(tmp_path / "cache"))


def _folder(root, classes=("cat", "dog"), per_class=3, size=8):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / c / f"{i:04d}.png")
    return root


def test_class_folder_round_robin_and_cache(tmp_path):
    root = _folder(tmp_path / "imgs")
    ds = data.load(root)
    assert ds.images.shape == (6, 8, 8, 3) and ds.images.dtype == np.uint8
    assert ds.labels.tolist() == [0, 1, 0, 1, 0, 1] and ds.classes == ["cat", "dog"]
    first = np.asarray(Image.open(root / "cat" / "0000.png"))
    assert np.array_equal(ds.images[0], first)  # PNG is lossless: exact pixels
    assert data.load(root, limit=3).labels.tolist() == [0, 1, 0]
    assert list((tmp_path / "cache" / "data").glob("*.npz"))  # decoded once, cached
    assert np.array_equal(data.load(root).images, ds.images)


def test_train_test_split_folder(tmp_path):
    _folder(tmp_path / "ds" / "train", per_class=2)
    _folder(tmp_path / "ds" / "test", per_class=1)
    assert len(data.load(tmp_path / "ds", split="train")) == 4
    assert len(data.load(tmp_path / "ds", split="test")) == 2


def test_cifar_batches(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 256, (5, 3072), dtype=np.uint8)
    with open(d / "test_batch", "wb") as f:
        pickle.dump({b"data": raw, b"labels": [3, 1, 4, 1, 5]}, f)
    ds = data.load(tmp_path)
    assert ds.images.shape == (5, 32, 32, 3)
    assert ds.labels.tolist() == [3, 1, 4, 1, 5]
    # CIFAR rows are channel-major: R plane, G plane, B plane
    assert ds.images[2, 0, 1, 1] == raw[2, 1024 + 1]


def test_npy(tmp_path):
    arr = np.zeros((4, 8, 8, 3), np.uint8)
    np.save(tmp_path / "x.npy", arr)
    ds = data.load(tmp_path / "x.npy")
    assert ds.labels is None and ds.images.shape == (4, 8, 8, 3)


@pytest.mark.parametrize("bad", ["missing", "empty_class", "no_classes", "wrong_size", "corrupt",
                                 "npy_dtype", "npy_shape", "bad_batch"])
def test_bad_data_gives_clear_error(tmp_path, bad):
    target = tmp_path / "d"
    if bad == "empty_class":
        _folder(target)
        (target / "zebra").mkdir()
    elif bad == "no_classes":
        target.mkdir()
    elif bad == "wrong_size":
        _folder(target)
        Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(target / "dog" / "9999.png")
    elif bad == "corrupt":
        _folder(target)
        (target / "dog" / "0001.png").write_bytes(b"\x89PNG not really")
    elif bad == "npy_dtype":
        target = tmp_path / "x.npy"
        np.save(target, np.zeros((2, 8, 8, 3), np.float32))
    elif bad == "npy_shape":
        target = tmp_path / "x.npy"
        np.save(target, np.zeros((2, 8, 8, 7), np.uint8))
    elif bad == "bad_batch":
        target.mkdir()
        (target / "test_batch").write_bytes(b"garbage")
    with pytest.raises(BcnnError) as e:
        data.load(target)
    assert "\n" not in str(e.value) and str(e.value)


def test_to_model_input_is_to_tensor():
    x = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    t = data.to_model_input(x)
    assert tuple(t.shape) == (2, 3, 4, 4)
    assert float(t[1, 2, 3, 1]) == np.float32(x[1, 3, 1, 2]) / np.float32(255)
