"""Write the CIFAR-10 sample bundled in the package (`src/bcnn/bundled/cifar10_test_300.npz`), the images
every command uses when no --data is given: the first 30 test images of each class, taken class by class
in turn (airplane, automobile, ..., truck, then the next of each), so that any first N hold every class
about equally.

    python benchmarks/bundle_sample.py [DATA]   # DATA: default ~/.cache/bcnn/cifar10-orig (bcnn fetch-cifar10)

Since session 14 the pixels are the original CIFAR-10's, the images the targets and the shipped models'
accuracies were measured on; until then they were the same images from the JPEG copy beside the project.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bcnn import data
from bcnn.ir import bundled_sample

PER_CLASS = 30


def sample(ds: data.Dataset, per_class: int = PER_CLASS) -> np.ndarray:
    """The indices of the first ``per_class`` images of each class, classes in turn."""
    by_class = [np.flatnonzero(ds.labels == c) for c in range(len(ds.classes))]
    if min(len(ix) for ix in by_class) < per_class:
        raise SystemExit(f"fewer than {per_class} test images in some class")
    return np.array([ix[k] for k in range(per_class) for ix in by_class])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default=str(Path.home() / ".cache/bcnn/cifar10-orig"))
    ap.add_argument("--out", default=str(bundled_sample()))
    args = ap.parse_args()
    ds = data.load(args.data, split="test")
    index = sample(ds)
    np.savez(args.out, images=ds.images[index], labels=ds.labels[index], classes=np.array(ds.classes))
    print(f"{args.out}: {len(index)} test images of {args.data} ({ds.source})")


if __name__ == "__main__":
    main()
