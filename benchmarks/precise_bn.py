"""Batch norm's running statistics measured again over the whole training set ("precise BN"), against those
training left: how much of a run's last-epoch accuracy the statistics of its last batches decide. Given
several weight files of one run, it measures their average (stochastic weight averaging, SWA) the same way.

    python benchmarks/precise_bn.py RUN/best.pt --data ~/.cache/bcnn/cifar10-orig [--plain] [--threads 2]
    python benchmarks/precise_bn.py E1.pt E2.pt ... --data DIR [--save OUT/best.pt]   # their average
    bcnn train --arch ARCH --data DIR --out OUT --export-only   # then: its QONNX, compiled net and check

Training keeps an exponential average of the statistics of its last batches (momentum 0.1, so the last
ten or so); here every batch norm averages all of the training set's batches equally, as the net sees
them in training (augmented, batch 100; --plain: not augmented). cnv's TensorNorm, one scale and shift of
all its logits, keeps its statistics: it changes no image's class. Both are scored on the test set with
the torch model in eval mode, which the compiled net matches exactly.

An average's binary weights are the signs of the averaged latent weights: each the vote of the epochs,
weighted by how far each held it from zero. Its statistics must be measured again, since no epoch's fit
the averaged weights; for a fair comparison the last file's are measured again too.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from bcnn import data as bdata
from bcnn.checkpoints import model_from_weights, read_weights, run_settings, torch_save_atomic
from bcnn.train import augment, evaluate, run_recipe, to_float


def averaged_weights(saved: list[dict]) -> dict[str, torch.Tensor]:
    """The mean of the weight files' float tensors (``read_weights``); the others (batch counts) as the last
    file has them."""
    states = [s["model"] for s in saved]
    return {k: torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v
            for k, v in states[-1].items()}


def measure_batch_norm(model: torch.nn.Module, images: np.ndarray, plain: bool = False, seed: int = 0) -> None:
    """Every batch norm's running statistics, the equal average over the training images' batches of 100."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: every batch counts the same
    gen = torch.Generator().manual_seed(seed)
    batches = torch.from_numpy(images)
    order = torch.randperm(len(batches), generator=gen)
    model.train()
    with torch.no_grad():
        for i in range(0, len(batches), 100):
            batch = batches[order[i:i + 100]]
            model(to_float(batch if plain else augment(batch, gen)))
    model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", nargs="+", type=Path, help="best.pt or checkpoint.pt files; several: their average")
    parser.add_argument("--data", required=True, help="the run's training data (and its test split)")
    parser.add_argument("--plain", action="store_true", help="measure on the training images as they are")
    parser.add_argument("--save", type=Path, help="write the measured weights here as a best.pt, which "
                        "bcnn train --export-only exports from its folder")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    last = args.weights[-1]
    model, _ = model_from_weights(last)
    train, test = bdata.load(args.data, split="train"), bdata.load(args.data, split="test")
    kind = "plain" if args.plain else "augmented"
    print(f"{last} as trained: {evaluate(model, test.images, test.labels):.4f}")
    started = time.time()
    measure_batch_norm(model, train.images, args.plain)
    acc = evaluate(model, test.images, test.labels)
    print(f"{last}, precise BN ({kind} training images, {time.time() - started:.0f} s): {acc:.4f}")
    saved = [read_weights(p) for p in args.weights]  # once: binarynet's are 56 MB each
    if len(saved) > 1:
        model.load_state_dict(averaged_weights(saved))
        measure_batch_norm(model, train.images, args.plain)
        acc = evaluate(model, test.images, test.labels)
        print(f"the average of {len(saved)} files, precise BN: {acc:.4f}")
    if args.save:
        save_as_best(model, saved, acc, args.save)


def save_as_best(model: torch.nn.Module, saved: list[dict], acc: float, dst: Path) -> None:
    """The measured weights as bcnn train writes a best.pt: the last file's run, epoch and recipe, with the
    epochs averaged named in the recipe (and so in the compiled net's metadata)."""
    settings = run_settings(saved[-1])
    states = [s.get("state", s) for s in saved]  # checkpoint.pt: its run's state; best.pt: its own fields
    recipe = saved[-1].get("recipe") or run_recipe(settings, states[-1])
    if len(saved) > 1:
        recipe = {**recipe, "averaged_epochs": [s["epoch"] for s in states]}
    torch_save_atomic({"model": model.state_dict(), "epoch": states[-1]["epoch"], "acc": acc,
                       "arch": settings["arch"], "model_options": settings.get("model_options") or {},
                       "epochs_before": states[-1].get("epochs_before", 0), "init_from": settings.get("init_from"),
                       "recipe": recipe}, dst)


if __name__ == "__main__":
    main()
