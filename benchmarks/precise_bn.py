"""Batch norm's running statistics measured again over the whole training set ("precise BN"), against those
training left: how much of a run's last-epoch accuracy the statistics of its last batches decide.

    python benchmarks/precise_bn.py RUN/best.pt --data ~/.cache/bcnn/cifar10-orig [--plain] [--threads 2]

Training keeps an exponential average of the statistics of its last batches (momentum 0.1, so the last
ten or so); here every batch norm averages all of the training set's batches equally, as the net sees
them in training (augmented, batch 100; --plain: not augmented). cnv's TensorNorm, one scale and shift of
all its logits, keeps its statistics: it changes no image's class. Both are scored on the test set with
the torch model in eval mode, which the compiled net matches exactly.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bcnn import data as bdata
from bcnn.checkpoints import model_from_weights
from bcnn.train import augment, evaluate, to_float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", help="a run's best.pt or checkpoint.pt")
    parser.add_argument("--data", required=True, help="the run's training data (and its test split)")
    parser.add_argument("--plain", action="store_true", help="measure on the training images as they are")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = model_from_weights(Path(args.weights))
    train, test = bdata.load(args.data, split="train"), bdata.load(args.data, split="test")
    print(f"as trained: {evaluate(model, test.images, test.labels):.4f}")

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: every batch counts the same
    gen = torch.Generator().manual_seed(0)
    images = torch.from_numpy(train.images)
    order = torch.randperm(len(images), generator=gen)
    started = time.time()
    model.train()
    with torch.no_grad():
        for i in range(0, len(images), 100):
            batch = images[order[i:i + 100]]
            model(to_float(batch if args.plain else augment(batch, gen)))
    kind = "plain" if args.plain else "augmented"
    print(f"precise BN ({kind} training images, {len(norms)} norms, {time.time() - started:.0f} s): "
          f"{evaluate(model, test.images, test.labels):.4f}")


if __name__ == "__main__":
    main()
