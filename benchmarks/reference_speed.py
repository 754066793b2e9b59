"""The reference engine's dot products: numpy int64 matmul (no BLAS) against the exact floating-point BLAS
product it uses (`bcnn.engine.reference.exact_dtype`), side by side on the same images.

    OMP_NUM_THREADS=1 python benchmarks/reference_speed.py [--nets cnv,binarynet] [--images 8] [--repeats 3]

The two alternate call by call, process CPU time (numpy's BLAS takes its thread count from OMP_NUM_THREADS);
medians. Both must give identical
accumulators, or the script stops.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from bcnn import bench
from bcnn.engine import reference


def timed(net, images: np.ndarray) -> tuple[float, np.ndarray]:
    t0 = time.process_time()
    out = reference.run_reference(net, images)
    return time.process_time() - t0, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nets", default="cnv,binarynet", help="topologies (random weights)")
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    exact_dtype = reference.exact_dtype
    print(f"| network | images | int64 s/image | BLAS s/image | speed-up | CPU time, median of {args.repeats} |")
    print("|---|---|---|---|---|")
    for name in args.nets.split(","):
        net = bench.topology_net(name)
        images = np.random.default_rng(0).integers(0, 256, (args.images, *net.input_shape), dtype=np.uint8)
        times: dict[str, list[float]] = {"int64": [], "blas": []}
        for _ in range(args.repeats):
            reference.exact_dtype = lambda bound: np.int64
            t_int, out_int = timed(net, images)
            reference.exact_dtype = exact_dtype
            t_blas, out_blas = timed(net, images)
            if not np.array_equal(out_int, out_blas):
                raise SystemExit(f"{name}: the two products differ")
            times["int64"].append(t_int / args.images)
            times["blas"].append(t_blas / args.images)
        a, b = statistics.median(times["int64"]), statistics.median(times["blas"])
        print(f"| {name} | {args.images} | {a:.3f} | {b:.3f} | {a / b:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
