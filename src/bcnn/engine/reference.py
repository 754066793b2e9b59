"""The reference engine: numpy, written to be obviously correct rather than fast.

It follows the IR's definition line by line (see ``bcnn.ir``): integer input through ``input_lut``,
then per layer an im2col in HWC order, an exact integer dot product with ±1 weights, the threshold
comparison and OR/AND pooling on bits.
"""

from __future__ import annotations

import numpy as np

from bcnn.errors import BcnnError
from bcnn.ir import Layer, Net


def map_input(net: Net, images: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W, C) -> the integers layer 0 sees, int64 (N, H, W, C)."""
    if images.dtype != np.uint8:
        raise BcnnError(f"images must be uint8, got {images.dtype}")
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(net.input_shape):
        raise BcnnError(f"images must have shape (N, {', '.join(map(str, net.input_shape))}), got {images.shape}")
    channels = np.arange(images.shape[3])
    return net.input_lut[channels, images]


def windows(x: np.ndarray, kernel: int, pad: int, pad_value: int) -> np.ndarray:
    """(N, H, W, C) -> (N, OH, OW, K·K·C): each output pixel's window, flattened in (kh, kw, c) order."""
    if pad:
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=pad_value)
    n, h, w, c = x.shape
    oh, ow = h - kernel + 1, w - kernel + 1
    cols = np.empty((n, oh, ow, kernel, kernel, c), dtype=x.dtype)
    for kh in range(kernel):
        for kw in range(kernel):
            cols[:, :, :, kh, kw, :] = x[:, kh:kh + oh, kw:kw + ow, :]
    return cols.reshape(n, oh, ow, kernel * kernel * c)


def exact_dtype(bound: int) -> type:
    """The fastest matmul dtype that is exact for integers whose every partial sum is within ±bound.

    Floating point holds every integer below 2**24 (float32) or 2**53 (float64) exactly, so a BLAS product
    of such integers rounds nothing, in whatever order it sums; numpy's int64 matmul has no BLAS.
    """
    if bound < 2**24:
        return np.float32
    return np.float64 if bound < 2**53 else np.int64


def accumulate(layer: Layer, x: np.ndarray, first: bool) -> np.ndarray:
    """acc = Σ x·w for every output pixel and channel, int64 (N, OH, OW, out_ch).

    ``x`` is int64 integers for the first layer and bool bits (1 = +1) otherwise.
    """
    if first:
        values, pad_value = x, 0
    else:
        values, pad_value = np.where(x, 1, -1), 2 * layer.pad_bit - 1
    dtype = exact_dtype(layer.fan_in * max(int(np.abs(values).max(initial=0)), abs(pad_value)))
    cols = windows(values.astype(dtype), layer.kernel, layer.pad, pad_value)
    w = np.where(layer.weights.reshape(layer.out_ch, -1), 1, -1).astype(dtype)
    return (cols @ w.T).astype(np.int64)


def threshold_and_pool(layer: Layer, acc: np.ndarray) -> np.ndarray:
    """Integer accumulators -> output bits (bool), pooled with OR/AND per channel."""
    bits = np.where(layer.ge, acc >= layer.thresholds, acc <= layer.thresholds)
    p = layer.pool
    if p == 1:
        return bits
    n, oh, ow, c = bits.shape
    blocks = bits.reshape(n, oh // p, p, ow // p, p, c)
    return np.where(layer.pool_and, blocks.all(axis=(2, 4)), blocks.any(axis=(2, 4)))


def run_layers(net: Net, images: np.ndarray) -> list[np.ndarray]:
    """Every layer's output for uint8 images: bool bit maps, and the last layer's int64 accumulators."""
    x = map_input(net, images)
    outputs = []
    for i, layer in enumerate(net.layers):
        acc = accumulate(layer, x, first=i == 0)
        x = acc if layer.is_last else threshold_and_pool(layer, acc)
        outputs.append(x)
    return outputs


def run_reference(net: Net, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """The last layer's integer accumulators, int64 (N, n_outputs), for uint8 images (N, H, W, C)."""
    out = [run_layers(net, images[i:i + batch])[-1] for i in range(0, len(images), batch)]
    if not out:
        return np.zeros((0, net.n_outputs), dtype=np.int64)
    return np.concatenate(out).reshape(len(images), net.n_outputs)


def logits(net: Net, accumulators: np.ndarray) -> np.ndarray:
    """The host-side affine of the last layer, in float64."""
    return accumulators.astype(np.float64) * net.output_scale + net.output_bias


def predict(net: Net, accumulators: np.ndarray) -> np.ndarray:
    return np.argmax(logits(net, accumulators), axis=1)
