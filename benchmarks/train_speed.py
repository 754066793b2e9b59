"""Training step speed: float32, bfloat16 autocast (`bcnn train --precision bf16`) and bfloat16 with the
model compiled (`--compile`), side by side.

    python benchmarks/train_speed.py [--archs cnv,binarynet] [--batch 100] [--steps 6] [--threads 1]
    python benchmarks/train_speed.py --device cuda --archs binarynet --profile 20   # on a lent GPU machine

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
    """Seconds of one training step: CPU time on the CPU; on a GPU wall time up to its end (synchronized)."""
    cuda = x.device.type == "cuda"
    clock = time.perf_counter if cuda else time.process_time
    t0 = clock()
    with autocast(x.device, precision):
        loss = F.cross_entropy(forward(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if cuda:
        torch.cuda.synchronize()
    return clock() - t0


def profile(forward: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
            steps: int) -> None:
    """Where a bf16 compiled step spends its time: torch.profiler's top operators, host and device."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if x.device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        for _ in range(steps):
            step(forward, opt, x, y, "bf16")
    key = "self_cuda_time_total" if x.device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=20), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--archs", default="cnv,binarynet")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--steps", type=int, default=6, help="timed steps per precision (after one warm-up each)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu, or cuda: wall time per step, synchronized")
    p.add_argument("--profile", type=int, default=0, metavar="STEPS",
                   help="then profile STEPS bf16 compiled steps (torch.profiler's top 20 operators)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    timing = "wall time" if device.type == "cuda" else "CPU time"
    print(f"| arch | batch | fp32 ms/step | bf16 ms/step | bf16+compile ms/step | bf16 speed-up | "
          f"bf16+compile speed-up | {args.device}, threads={args.threads}, {timing}, median of {args.steps} |")
    print("|---|---|---|---|---|---|---|")
    for arch in args.archs.split(","):
        torch.manual_seed(0)
        model = build_model(arch).train().to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        x = torch.rand(args.batch, model.in_channels, model.input_size, model.input_size, device=device)
        y = torch.randint(0, 10, (args.batch,), device=device)
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
        if args.profile:
            profile(compiled, opt, x, y, args.profile)


if __name__ == "__main__":
    main()
