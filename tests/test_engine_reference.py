"""The reference engine's dot products: exact in every matmul dtype it picks."""

import numpy as np
import pytest

from bcnn.engine.reference import accumulate, exact_dtype, windows
from bcnn.randnet import ConvSpec, random_net


def test_exact_dtype_limits():
    assert exact_dtype(2**24 - 1) is np.float32 and exact_dtype(2**24) is np.float64
    assert exact_dtype(2**53 - 1) is np.float64 and exact_dtype(2**53) is np.int64


@pytest.mark.parametrize("magnitude, dtype, too_small", [
    (127, np.float32, None),
    (2**24 // 27 + 1, np.float64, np.float32),
    (2**53 // 27 + 1, np.int64, np.float64),
], ids=["float32", "float64", "int64"])
def test_accumulate_equals_int64_dot_products(magnitude, dtype, too_small):
    """First-layer inputs of up to ``magnitude`` (odd) push one window's sum past the smaller dtype's exact
    range: the dtype picked must be exact, and the one below it must not be (else the test proves nothing)."""
    rng = np.random.default_rng(0)
    layer = random_net(rng, input_shape=(6, 6, 3), convs=[ConvSpec(4, pad=1)], fcs=[5]).layers[0]
    layer.weights[0] = True
    x = rng.integers(-magnitude, magnitude + 1, (2, 6, 6, 3), dtype=np.int64)
    x[0, 1:4, 1:4, :] = magnitude  # output pixel (2, 2) of channel 0 sums 27 of them: odd, beyond the range
    bound = layer.fan_in * magnitude
    assert exact_dtype(bound) is dtype
    cols = windows(x, layer.kernel, layer.pad, 0).reshape(-1, layer.fan_in)
    w = np.where(layer.weights.reshape(layer.out_ch, -1), 1, -1).astype(np.int64)
    expected = np.einsum("pk,ok->po", cols, w).reshape(2, 6, 6, layer.out_ch)  # int64, no BLAS
    assert np.array_equal(accumulate(layer, x, first=True), expected)
    if too_small is not None:
        rounded = (cols.astype(too_small) @ w.T.astype(too_small)).astype(np.int64).reshape(expected.shape)
        assert not np.array_equal(rounded, expected)
