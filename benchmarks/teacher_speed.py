"""A distillation teacher's cost and exactness on the CPU: a compiled net on the integer engine against the
same net as its integer function in float32 torch (the teacher `bcnn train --teacher NET` uses on a GPU;
eager, and through torch.compile as a compiled run uses it) and rebuilt as a Brevitas model (a GPU's teacher
until session 22), side by side; also what each takes to set up.

    python benchmarks/teacher_speed.py [--net binarynet] [--data DIR] [--batch 100] [--batches 10] [--threads 1]

The runners alternate batch by batch on the same augmented training images, so a busy shared machine slows
them alike; each figure is the median CPU time per 1,000 images (threads=1: time a shared core steals does
not count). Each torch runner's logits are compared with the engine's, which are the net's exactly: the
largest difference, and the images whose predicted class differs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bcnn import data as bdata
from bcnn import ir
from bcnn.decompile import load_net_weights
from bcnn.distill import engine_logits, float_torch_logits, model_logits
from bcnn.models import build_model
from bcnn.train import CALIBRATION_IMAGES, augment, autocast


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--net", default="binarynet", help="a bundled name or a .bcnn file that names its --arch")
    ap.add_argument("--data", help="training images (default: the 300 bundled sample images)")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net = ir.load_net(args.net)
    train_images = bdata.load(args.data or ir.bundled_sample(), "train").images
    model = build_model(net.meta["arch"], **net.meta.get("model_options", {}))
    torch.manual_seed(0)
    t0 = time.perf_counter()
    load_net_weights(model, net, train_images[:CALIBRATION_IMAGES])
    rebuilt_s = time.perf_counter() - t0
    model.eval().requires_grad_(False)
    cpu = torch.device("cpu")
    t0 = time.perf_counter()
    integer_fn = float_torch_logits(net, cpu)
    integer_fn_s = time.perf_counter() - t0
    # the integer function is called inside bf16 autocast, as a training step does
    runners = {"engine": (engine_logits(net), None), "integer fn fp32": (integer_fn, "bf16"),
               "integer fn comp": (float_torch_logits(net, cpu, compiled=True), "bf16"),  # compiles on batch 1
               "torch fp32": (model_logits(model), "fp32"), "torch bf16": (model_logits(model), "bf16")}
    gen = torch.Generator().manual_seed(0)
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in runners}
    for _ in range(args.batches + 1):  # the first batch warms up (the engine's kernels load from numba's cache)
        idx = torch.randint(0, len(train_images), (args.batch,), generator=gen)
        batch = augment(torch.from_numpy(train_images[idx.numpy()]), gen)
        for name, (logits, precision) in runners.items():
            t0 = time.process_time()
            with torch.no_grad(), autocast(torch.device("cpu"), precision or "fp32"):
                y = logits(batch).float()
            seconds[name].append(time.process_time() - t0)
            outputs[name].append(y)
    exact = torch.cat(outputs["engine"][1:])
    print(f"set-up (wall clock): the torch model rebuilt and calibrated on {CALIBRATION_IMAGES} images "
          f"{rebuilt_s:.1f} s, the integer function {integer_fn_s:.2f} s")
    print(f"{args.net}, batch {args.batch}, {args.batches} batches, {args.threads} thread(s), CPU time")
    print(f"{'runner':<16} {'s / 1,000 images':>17} {'vs engine':>10} {'max |logit diff|':>17} {'class differs':>14}")
    base = statistics.median(seconds["engine"][1:])
    for name in runners:
        s = statistics.median(seconds[name][1:])
        y = torch.cat(outputs[name][1:])
        differs = int((y.argmax(1) != exact.argmax(1)).sum())
        print(f"{name:<16} {s * 1000 / args.batch:>17.2f} {s / base:>9.1f}x {float((y - exact).abs().max()):>17.3g} "
              f"{differs:>7} of {len(y)}")


if __name__ == "__main__":
    main()
