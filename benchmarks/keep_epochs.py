"""Keep every epoch's weights of a run in progress, for averaging them later (`precise_bn.py E1.pt E2.pt ...`):
bcnn train keeps only the latest epoch (checkpoint.pt) and the best (best.pt).

    python benchmarks/keep_epochs.py RUN OUT [--until EPOCH]   # beside `bcnn train ... --out RUN`

It polls RUN/checkpoint.pt and, for each new epoch, writes OUT/eNNN.pt: the weights, the run's config and its
state without the per-epoch history (a third of a checkpoint: the optimizer's moments are left out). bcnn
train replaces the checkpoint by a rename, so a read always sees one whole epoch.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch


def keep(run: Path, out: Path) -> int | None:
    """Write the epoch that RUN/checkpoint.pt holds to OUT/eNNN.pt unless already there; its number."""
    saved = torch.load(run / "checkpoint.pt", weights_only=False, map_location="cpu")
    epoch = saved["state"]["epoch"]
    dst = out / f"e{epoch:03d}.pt"
    if not dst.exists():
        state = {k: v for k, v in saved["state"].items() if k != "history"}
        torch.save({"model": saved["model"], "state": state, "config": saved["config"]}, dst)
    return epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the --out folder of a bcnn train run")
    parser.add_argument("out", type=Path, help="where the epochs' weights go")
    parser.add_argument("--until", type=int, help="stop after keeping this epoch (default: never)")
    parser.add_argument("--poll", type=float, default=15.0, help="seconds between looks (default 15)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    seen = None
    while True:
        try:
            stamp = (args.run / "checkpoint.pt").stat().st_mtime
            if stamp != seen:
                epoch = keep(args.run, args.out)
                print(f"epoch {epoch}", flush=True)
                seen = stamp
                if args.until is not None and epoch >= args.until:
                    return
        except FileNotFoundError:  # the run has not finished its first epoch
            print(f"no {args.run / 'checkpoint.pt'} yet", file=sys.stderr, flush=True)
        time.sleep(args.poll)


if __name__ == "__main__":
    main()
