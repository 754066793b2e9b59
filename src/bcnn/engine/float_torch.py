"""The IR network's integer function as a float32 torch module: convolutions with ±1 weights, exact.

Every value is an integer below 2^24 (``require_float32_exact``), so float32 holds it exactly, on a CPU and
on a GPU, whose TF32 convolutions keep the ±1 and 8-bit operands exactly too (wider inputs are refused
there). `bcnn bench` times it as the torch backends; `bcnn train --teacher NET` teaches through it on a GPU
(``bcnn.distill``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bcnn.engine.torch_input import lut_pixels, pm1_weights, require_float32_exact
from bcnn.ir import Net


class IntegerFunction(torch.nn.Module):
    """The network's integer function; one class for every net, so that ``torch.compile`` traces one graph
    per architecture and batch shape, which nets of that architecture share (their weights and thresholds
    are buffers, inputs to the graph): an ensemble of six teachers in two shapes would otherwise pass
    dynamo's limit of 8 recompiles and run partly eager."""

    def __init__(self, net: Net):
        super().__init__()
        self.register_buffer("lut", torch.tensor(net.input_lut, dtype=torch.float32))
        self.specs = []
        for i, layer in enumerate(net.layers):
            self.register_buffer(f"w{i}", pm1_weights(layer))
            if not layer.is_last:
                col = (1, layer.out_ch, 1, 1)
                self.register_buffer(f"t{i}", torch.tensor(layer.thresholds, dtype=torch.float32).view(col))
                self.register_buffer(f"ge{i}", torch.tensor(layer.ge).view(col))
                self.register_buffer(f"and{i}", torch.tensor(layer.pool_and).view(col))
            self.specs.append((layer.pad, 2.0 * layer.pad_bit - 1.0, layer.pool, layer.is_last, i == 0))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        x = lut_pixels(self.lut, images)
        for i, (pad, pad_value, pool, last, first) in enumerate(self.specs):
            if pad:
                x = F.pad(x, (pad, pad, pad, pad), value=0.0 if first else pad_value)
            # cuDNN may pick a Winograd or FFT convolution (train.py sets cudnn.benchmark), whose float
            # results can miss the integer a little: rounding restores it while the miss stays below 0.5
            acc = F.conv2d(x, getattr(self, f"w{i}")).round()
            if last:
                return acc.permute(0, 2, 3, 1).reshape(n, -1)
            t = getattr(self, f"t{i}")
            bits = torch.where(getattr(self, f"ge{i}"), acc >= t, acc <= t).to(acc.dtype)
            if pool > 1:
                por = F.max_pool2d(bits, pool)
                pand = -F.max_pool2d(-bits, pool)
                bits = torch.where(getattr(self, f"and{i}"), pand, por)
            x = 2.0 * bits - 1.0
        raise AssertionError("unreachable: the last layer returns")


def float_torch_model(net: Net, device: str = "cpu") -> IntegerFunction:
    """A float32 torch.nn.Module computing the network's integer function; input uint8 (N, H, W, C).

    Convolutions with ±1 weights, the per-channel comparison, OR/AND pooling as max/min pooling of 0/1 bits,
    and binary padding with ±1: all values are integers below 2^24, so float32 is exact, once each
    accumulator is rounded to the integer it stands for.
    """
    require_float32_exact(net, device)
    return IntegerFunction(net).to(device).eval()
