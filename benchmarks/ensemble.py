"""How good a teacher an ensemble of compiled nets makes: each net's and each combination's test accuracy
with the mean of the members' logits (what `bcnn train --teacher A,B,...` distils), on the integer engine.

    python benchmarks/ensemble.py binarynet cnv RUN1/model.bcnn RUN2/model.bcnn \
        --data ~/.cache/bcnn/cifar10-orig

Also prints the mean of the members' softmaxes, which an ensemble is often scored by, to show that the
simpler mean of logits loses nothing.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from bcnn import data as bdata
from bcnn import ir
from bcnn.engine.fast import run_fast
from bcnn.engine.reference import logits as net_logits


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("nets", nargs="+", help="compiled nets: .bcnn files or bundled models' names")
    ap.add_argument("--data", default=str(Path.home() / ".cache/bcnn/cifar10-orig"),
                    help="labelled test data (default: the original CIFAR-10 that `bcnn fetch-cifar10` writes)")
    args = ap.parse_args()
    test = bdata.load(args.data, split="test")
    logits = {}
    for name in args.nets:
        net = ir.load(ir.resolve(name))
        logits[name] = net_logits(net, run_fast(net, test.images))
        print(f"{(logits[name].argmax(1) == test.labels).mean():.2%}  {name}", flush=True)
    print("mean of logits / of softmaxes  members")
    for k in range(2, len(args.nets) + 1):
        for members in itertools.combinations(args.nets, k):
            by_logits = np.mean([logits[m] for m in members], 0).argmax(1)
            by_softmax = np.mean([softmax(logits[m]) for m in members], 0).argmax(1)
            print(f"{(by_logits == test.labels).mean():.2%} / {(by_softmax == test.labels).mean():.2%}  "
                  f"{' + '.join(members)}", flush=True)


if __name__ == "__main__":
    main()
