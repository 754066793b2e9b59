"""Float CNNs that only teach: a stronger teacher than any binary net for ``bcnn train --teacher``.

``resnet9`` is the residual net of Myrtle.ai's DAWNBench entry (Page, "How to train your ResNet", 2018): 94%
on CIFAR-10 after 24 epochs at full width, 92.2% at half width after 30 epochs on a 2-core CPU (session 24).
The binary nets' best ensemble scores 90.1%: a float teacher's soft labels are wrong less often. It trains
with the same loop as the binary nets (``bcnn train --arch resnet9 --optimizer sgd ...``) and teaches from
its run's ``best.pt``; it has no binary layers, so it is never exported or compiled.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from bcnn.errors import BcnnError

# CIFAR-10's per-channel pixel mean and standard deviation (of x / 255, over the training set)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def conv_bn_relu(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]


class Residual(nn.Module):
    """x + two conv-bn-relu layers of x."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(*conv_bn_relu(channels, channels), *conv_bn_relu(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet9(nn.Module):
    """prep (w) - layer1 (2w, pool, residual) - layer2 (4w, pool) - layer3 (8w, pool, residual) - max pool - FC,
    for ``width`` w (64 in the original, 0.38 G multiply-adds per 32x32 image; 32 costs a quarter)."""

    def __init__(self, input_size: int = 32, in_channels: int = 3, num_classes: int = 10, width: int = 64):
        super().__init__()
        if in_channels != 3:
            raise BcnnError(f"resnet9 normalizes CIFAR-10's three colour channels, got in_channels {in_channels}")
        if width < 1 or input_size < 8:
            raise BcnnError(f"resnet9 needs a width of at least 1 and an input of at least 8x8 (three 2x2 "
                            f"poolings), got width {width}, input_size {input_size}")
        self.input_size, self.in_channels, self.num_classes = input_size, in_channels, num_classes
        self.register_buffer("input_mean", torch.tensor(CIFAR10_MEAN).reshape(1, 3, 1, 1))
        self.register_buffer("input_std", torch.tensor(CIFAR10_STD).reshape(1, 3, 1, 1))
        w = width
        self.body = nn.Sequential(
            *conv_bn_relu(3, w),
            *conv_bn_relu(w, 2 * w), nn.MaxPool2d(2), Residual(2 * w),
            *conv_bn_relu(2 * w, 4 * w), nn.MaxPool2d(2),
            *conv_bn_relu(4 * w, 8 * w), nn.MaxPool2d(2), Residual(8 * w),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8 * w, num_classes, bias=False))
        # the original's final scale: logits of a few units at the start, not of tens
        self.logit_scale = 0.125

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels / 255 (NCHW) -> logits."""
        return self.body((x - self.input_mean) / self.input_std) * self.logit_scale


FLOAT_NETS = {"resnet9": ResNet9}
FLOAT_ARCHS = tuple(FLOAT_NETS)


def build_float_model(arch: str, **options) -> nn.Module:
    """A fresh float net of ``arch`` (FLOAT_ARCHS), its options those of its class (``resnet9``: width (64),
    input_size (32), in_channels (3), num_classes (10))."""
    if arch not in FLOAT_NETS:
        raise BcnnError(f"unknown float architecture {arch!r} (known: {', '.join(FLOAT_ARCHS)})")
    known = set(inspect.signature(FLOAT_NETS[arch].__init__).parameters) - {"self"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise BcnnError(f"unknown {arch} model option(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return FLOAT_NETS[arch](**options)
