"""A "soup" of compiled nets from one line of warm restarts, made in integer space: each weight the majority of
their signs, each threshold and output affine the median of theirs. Nets warm-started one from the other
agree on 94-99.8% of their signs (binarynet's bundles of sessions 13-23), so the question is whether their
consensus beats the best of them, as averaged weights (SWA, model soups) often do for float nets.

    python benchmarks/sign_soup.py OUT.bcnn A.bcnn B.bcnn C.bcnn [...]   # an odd number of nets, one topology
    bcnn infer OUT.bcnn --data ~/.cache/bcnn/cifar10-orig --json         # its accuracy

Each net's thresholds belong to its own signs, so the median threshold is only a guess for the majority's
signs; the soup is a net like any other, and `bcnn infer` measures it as one.
"""

from __future__ import annotations

import argparse
import copy

import numpy as np

from bcnn import ir
from bcnn.errors import BcnnError


def sign_soup(nets: list[ir.Net]) -> ir.Net:
    """The majority of the nets' signs, the median of their thresholds and output affines."""
    if len(nets) % 2 == 0:
        raise BcnnError(f"{len(nets)} nets: an odd number leaves no sign tied")
    first = nets[0]
    for net in nets[1:]:
        if [layer.weights.shape for layer in net.layers] != [layer.weights.shape for layer in first.layers]:
            raise BcnnError("the nets differ in topology")
        if any((a.ge != b.ge).any() for a, b in zip(first.layers[:-1], net.layers[:-1], strict=True)):
            raise BcnnError("the nets differ in a threshold's direction: not one line of warm restarts")
    soup = copy.deepcopy(first)
    for i, layer in enumerate(soup.layers):
        votes = np.stack([net.layers[i].weights for net in nets]).sum(0, dtype=np.int64)
        layer.weights = votes * 2 > len(nets)
        if layer.thresholds is not None:
            # an odd count: the median is one of the nets' own integer thresholds
            layer.thresholds = np.median(np.stack([net.layers[i].thresholds for net in nets]), 0).astype(np.int64)
    soup.output_scale = np.median(np.stack([net.output_scale for net in nets]), 0)
    soup.output_bias = np.median(np.stack([net.output_bias for net in nets]), 0)
    measured = ("engine_test_acc", "torch_test_acc", "torch_engine_mismatches")  # the first net's, not the soup's
    soup.meta = {**{k: v for k, v in first.meta.items() if k not in measured}, "sign_soup_of": len(nets)}
    return soup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="the soup's .bcnn")
    parser.add_argument("nets", nargs="+", help=".bcnn files or bundled model names, one topology")
    args = parser.parse_args()
    nets = [ir.load_net(name) for name in args.nets]
    ir.save(sign_soup(nets), args.out)
    agree = [np.mean([(a.weights == b.weights).mean() for a, b in zip(nets[-1].layers, net.layers, strict=True)])
             for net in nets[:-1]]
    print(f"{args.out}: {len(nets)} nets; each one's sign agreement with the last, by layer mean: "
          + ", ".join(f"{a:.3f}" for a in agree))


if __name__ == "__main__":
    main()
