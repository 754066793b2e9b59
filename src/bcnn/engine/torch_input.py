"""What the float32 and the bit-packed torch models share: the integer first layer in float32.

The 8-bit pixels go through the input LUT and a convolution with ±1 weights; float32 holds every value
exactly while the first layer's accumulators stay below 2^24.
"""

from __future__ import annotations

import numpy as np

from bcnn.errors import BcnnError
from bcnn.ir import Layer, Net

TF32_EXACT = 2**11  # TF32 keeps 11 significant bits: every integer up to 2^11 in magnitude


def require_float32_exact(net: Net, device: str = "cpu") -> None:
    """Refuse a network whose first layer float32 would not compute exactly: accumulators reaching 2^24, or,
    on a GPU, whose convolutions round their operands to TF32 by default, inputs beyond ±2^11 (an 8-bit
    input's LUT holds at most 2^8)."""
    big = int(np.abs(net.input_lut).max())
    if big * net.layers[0].fan_in >= 2**24:
        raise BcnnError(f"first-layer accumulators reach {big * net.layers[0].fan_in}: float32 would not be exact")
    if not str(device).startswith("cpu") and big > TF32_EXACT:
        raise BcnnError(f"first-layer inputs reach {big}: a GPU's TF32 convolutions keep integers up to "
                        f"{TF32_EXACT} only, so they would not be exact")


def pm1_weights(layer: Layer):
    """A layer's weight bits as a float32 (out, in, K, K) tensor of ±1, for ``F.conv2d``."""
    import torch

    w = np.where(layer.weights, 1.0, -1.0).transpose(0, 3, 1, 2)
    return torch.tensor(np.ascontiguousarray(w), dtype=torch.float32)


def lut_pixels(lut, images):
    """uint8 (N, H, W, C) images through a float32 (C, 256) input LUT: float32 (N, C, H, W)."""
    import torch

    n, h, w, c = images.shape
    idx = images.long().permute(0, 3, 1, 2).reshape(n, c, h * w)
    return torch.gather(lut.unsqueeze(0).expand(n, c, 256), 2, idx).view(n, c, h, w)
