"""Training step speed, float32 against bfloat16 autocast (`bcnn train --precision`), side by side.

    python benchmarks/train_speed.py [--archs cnv,binarynet] [--batch 100] [--steps 6] [--threads 1]

The two precisions alternate step by step on the same model and batch, so a busy shared machine slows
both alike; the figure is the median of each and their ratio. Time is the process's CPU time (threads=1:
what a shared core steals from the wall clock does not count).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from bcnn.models import build_model
from bcnn.train import autocast


def step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
         precision: str) -> float:
    t0 = time.process_time()
    with autocast(x.device, precision):
        loss = F.cross_entropy(model(x), y)
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
    print(f"| arch | batch | fp32 ms/step | bf16 ms/step | bf16 speed-up | threads={args.threads}, CPU time, "
          f"median of {args.steps} |")
    print("|---|---|---|---|---|")
    for arch in args.archs.split(","):
        torch.manual_seed(0)
        model = build_model(arch).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        x = torch.rand(args.batch, model.in_channels, model.input_size, model.input_size)
        y = torch.randint(0, 10, (args.batch,))
        times: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for i in range(args.steps + 1):
            for precision in times:
                t = step(model, opt, x, y, precision)
                if i:
                    times[precision].append(t)
        fp32, bf16 = (statistics.median(times[k]) * 1e3 for k in ("fp32", "bf16"))
        print(f"| {arch} | {args.batch} | {fp32:.0f} | {bf16:.0f} | {fp32 / bf16:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
