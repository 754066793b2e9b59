"""Training step speed: float32, bfloat16 autocast (`bcnn train --precision bf16`) and bfloat16 with the
model compiled (`--compile`), side by side.

    python benchmarks/train_speed.py [--archs cnv,binarynet] [--batch 100] [--steps 6] [--threads 1]

The three variants alternate step by step on the same model and batch, so a busy shared machine slows
them alike; the figures are the median of each and the ratios to float32. Time is the process's CPU time
(threads=1: what a shared core steals from the wall clock does not count). The one-off compile (about a
minute the first time, seconds from torch's compile cache) is the untimed warm-up step.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from bcnn.models import build_model
from bcnn.train import autocast

VARIANTS = {"fp32": ("fp32", False), "bf16": ("bf16", False), "bf16+compile": ("bf16", True)}


def step(forward: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
         precision: str) -> float:
    t0 = time.process_time()
    with autocast(x.device, precision):
        loss = F.cross_entropy(forward(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return time.process_time() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--archs", default="cnv,binarynet")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--steps", type=int, default=6, help="timed steps per precision (after one warm-up each)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"| arch | batch | fp32 ms/step | bf16 ms/step | bf16+compile ms/step | bf16 speed-up | "
          f"bf16+compile speed-up | threads={args.threads}, CPU time, median of {args.steps} |")
    print("|---|---|---|---|---|---|---|")
    for arch in args.archs.split(","):
        torch.manual_seed(0)
        model = build_model(arch).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        x = torch.rand(args.batch, model.in_channels, model.input_size, model.input_size)
        y = torch.randint(0, 10, (args.batch,))
        compiled = torch.compile(model)
        variants = {name: (compiled if use_compiled else model, precision)
                    for name, (precision, use_compiled) in VARIANTS.items()}
        for forward, precision in variants.values():
            step(forward, opt, x, y, precision)  # warm-up, and the compile
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for _ in range(args.steps):
            for name, (forward, precision) in variants.items():
                times[name].append(step(forward, opt, x, y, precision))
        ms = {name: statistics.median(t) * 1e3 for name, t in times.items()}
        print(f"| {arch} | {args.batch} | {ms['fp32']:.0f} | {ms['bf16']:.0f} | {ms['bf16+compile']:.0f} | "
              f"{ms['fp32'] / ms['bf16']:.2f}x | {ms['fp32'] / ms['bf16+compile']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
