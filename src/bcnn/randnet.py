"""Random networks in the IR, for equivalence tests of the engines and the RTL without training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bcnn.ir import Layer, Net


@dataclass
class ConvSpec:
    out_ch: int
    kernel: int = 3
    pad: int = 0
    pool: int = 1


def random_net(
    rng: np.random.Generator,
    input_shape: tuple[int, int, int] = (8, 8, 3),
    convs: list[ConvSpec] | None = None,
    fcs: list[int] | None = None,
    input_signed: bool = True,
) -> Net:
    """A network of ``convs`` then fully connected layers of ``fcs`` outputs (the last is the output).

    Thresholds fall near the middle of each layer's accumulator distribution so that output bits are
    not constant, and some channels compare with <= and pool with AND, as negative batch-norm scales do.
    """
    convs = [ConvSpec(5), ConvSpec(6, pool=2)] if convs is None else convs
    fcs = [7, 10] if fcs is None else fcs
    h, w, c = input_shape
    lut = np.arange(256, dtype=np.int64)
    lut = np.round((2 * lut / 255 - 1) * 127).astype(np.int64) if input_signed else lut
    net = Net(input_shape=input_shape, input_lut=np.tile(lut, (c, 1)), layers=[],
              output_scale=np.ones(0), output_bias=np.zeros(0))
    shape = input_shape
    specs = [(s.out_ch, s.kernel, s.pad, s.pool) for s in convs]
    specs += [(n, None, 0, 1) for n in fcs]
    for i, (out_ch, kernel, pad, pool) in enumerate(specs):
        kernel = shape[0] if kernel is None else kernel
        if kernel is None or kernel > shape[0] + 2 * pad:
            raise ValueError(f"layer {i}: kernel {kernel} does not fit {shape}")
        layer = Layer(
            name=f"fc{i}" if kernel == shape[0] == shape[1] and pad == 0 else f"conv{i}",
            in_shape=shape, kernel=kernel, pad=pad,
            weights=rng.random((out_ch, kernel, kernel, shape[2])) < 0.5,
            pool=pool, pad_bit=int(rng.integers(0, 2)) if i else 0,
        )
        last = i == len(specs) - 1
        if not last:
            lo, hi = (-1, 1) if i else (-1, 1)
            n = layer.fan_in
            spread = np.sqrt(n) * (60 if i == 0 else 1)
            layer.thresholds = np.round(rng.normal(0, spread * 0.5, out_ch)).astype(np.int64)
            layer.thresholds = np.clip(layer.thresholds, lo * n * 300, hi * n * 300)
            layer.ge = rng.random(out_ch) < 0.7
            layer.pool_and = rng.random(out_ch) < 0.3 if pool > 1 else np.zeros(out_ch, bool)
        net.layers.append(layer)
        shape = layer.out_shape
    n_out = net.layers[-1].out_ch
    net.output_scale = rng.uniform(0.5, 2.0, n_out)
    net.output_bias = rng.normal(0, 1, n_out)
    net.validate()
    return net


def random_images(rng: np.random.Generator, net: Net, n: int) -> np.ndarray:
    return rng.integers(0, 256, (n, *net.input_shape), dtype=np.uint8)
