"""Training step speed: float32, bfloat16 autocast (`bcnn train --precision bf16`) and bfloat16 with the
model compiled (`--compile`), side by side.

    python benchmarks/train_speed.py [--archs cnv,binarynet] [--batch 100] [--steps 6] [--threads 1]
    python benchmarks/train_speed.py --device cuda --archs binarynet --channels-last --profile 20   # on a GPU

The three variants alternate step by step on the same model and batch, so a busy shared machine slows
them alike; the figures are the median of each and the ratios to float32. Time is the process's CPU time
(threads=1: what a shared core steals from the wall clock does not count). The one-off compile (about a
minute the first time, seconds from torch's compile cache) is the untimed warm-up step.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from bcnn.models import build_model
from bcnn.train import autocast

VARIANTS = {"fp32": ("fp32", False), "bf16": ("bf16", False), "bf16+compile": ("bf16", True)}
NHWC = "bf16+compile+NHWC"  # with --channels-last: a copy of the model in channels-last layout


def step(forward: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, precision: str,
         y: torch.Tensor) -> float:
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
            step(forward, opt, x, "bf16", y)
    key = "self_cuda_time_total" if x.device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=20), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--archs", default="cnv,binarynet")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--steps", type=int, default=6, help="timed steps per precision (after one warm-up each)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu, or cuda: wall time per step, synchronized")
    p.add_argument("--channels-last", action="store_true",
                   help="one more variant: bf16 compiled on NHWC activations and weights (bcnn train --channels-last)")
    p.add_argument("--profile", type=int, default=0, metavar="STEPS",
                   help="then profile STEPS bf16 compiled steps (torch.profiler's top 20 operators)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    timing = "wall time" if device.type == "cuda" else "CPU time"
    names = list(VARIANTS) + ([NHWC] if args.channels_last else [])
    print("| arch | batch | " + " | ".join(f"{n} ms/step" for n in names) + " | " +
          " | ".join(f"{n} speed-up" for n in names[1:]) +
          f" | {args.device}, threads={args.threads}, {timing}, median of {args.steps} |")
    print("|---" * (2 * len(names) + 2) + "|")
    for arch in args.archs.split(","):
        torch.manual_seed(0)
        model = build_model(arch).train().to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        x = torch.rand(args.batch, model.in_channels, model.input_size, model.input_size, device=device)
        y = torch.randint(0, 10, (args.batch,), device=device)
        compiled = torch.compile(model)
        # each variant: (module, its optimizer, its input, precision)
        variants = {name: (compiled if use_compiled else model, opt, x, precision)
                    for name, (precision, use_compiled) in VARIANTS.items()}
        if args.channels_last:
            nhwc = copy.deepcopy(model).to(memory_format=torch.channels_last)
            variants[NHWC] = (torch.compile(nhwc), torch.optim.Adam(nhwc.parameters(), lr=1e-4),
                                             x.contiguous(memory_format=torch.channels_last), "bf16")
        for v in variants.values():
            step(*v, y)  # warm-up, and the compile
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.steps):
            for name, v in variants.items():
                times[name].append(step(*v, y))
        ms = [statistics.median(times[n]) * 1e3 for n in names]
        print(f"| {arch} | {args.batch} | " + " | ".join(f"{t:.0f}" for t in ms) + " | " +
              " | ".join(f"{ms[0] / t:.2f}x" for t in ms[1:]) + " |", flush=True)
        if args.profile:
            profile(compiled, opt, x, y, args.profile)


if __name__ == "__main__":
    main()
