"""Per-layer CPU time of the fast engine on one thread: a figure that other processes on the machine disturb
much less than wall-clock images/s (a shared core slows the wall clock, not the CPU seconds of the work).

    python benchmarks/cpu_time.py [--batch 16] [--nets cnv,binarynet]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bcnn import bench
from bcnn.engine.fast import FastEngine, warmup


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--nets", default="cnv,binarynet", help="topologies (random weights)")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    warmup()
    images = np.random.default_rng(0).integers(0, 256, (args.batch, 32, 32, 3), dtype=np.uint8)
    for name in args.nets.split(","):
        net = bench.topology_net(name)
        engine = FastEngine(net)
        engine.run(images, threads=1)
        per_layer = np.zeros(len(engine.layers))
        for _ in range(args.repeats):
            x = engine.prepare_input(images)
            for k, layer in enumerate(engine.layers):
                t0 = time.process_time()
                x = layer.run(x, 1)
                per_layer[k] += time.process_time() - t0
        per_layer /= args.repeats * args.batch
        total = per_layer.sum()
        print(f"{name}: batch {args.batch}, {total * 1e6:.0f} us CPU per image on one thread "
              f"= {1 / total:,.0f} images/s per core")
        for layer, t in zip(engine.layers, per_layer, strict=True):
            print(f"  {layer.layer.name:<7} {t * 1e6:8.1f} us  {layer.layer.macs / t / 1e9:6.0f} G MAC/s")


if __name__ == "__main__":
    main()
