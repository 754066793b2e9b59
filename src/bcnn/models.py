"""Brevitas topologies that the bcnn compiler maps bit-exactly.

The layer conventions are fixed here so that the trained model and the hardware compute the same thing
(see the integer semantics in DESIGN.md):

* input: float pixel/255 (NCHW), optionally 2x-1, then an 8-bit QuantIdentity (Q1.7, power-of-two scale);
* first layer: a 1-bit-weight QuantConv2d that may zero-pad (the integer input padded with 0);
* binary layers: [ConstantPad2d(p, ±1)] QuantConv2d(padding=0) [MaxPool] BatchNorm 1-bit QuantIdentity
  [MaxPool] -- zero is not representable in 1 bit, so binary layers pad with a constant ±1;
* classifier: 1-bit QuantLinear + BatchNorm1d + sign, and a last 1-bit QuantLinear whose integer
  accumulators are the network output, optionally followed by a per-channel affine (TensorNorm or
  BatchNorm1d); argmax runs on the host.

Binary weights and activations use constant scale 1.0, exported by ``export_qonnx`` as BipolarQuant.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import os
from collections.abc import Sequence

import numpy as np
import torch
from brevitas.core.bit_width import BitWidthImplType
from brevitas.core.quant import QuantType
from brevitas.core.restrict_val import FloatToIntImplType, RestrictValueType
from brevitas.core.scaling import ScalingImplType
from brevitas.core.zero_point import ZeroZeroPoint
from brevitas.inject import ExtendedInjector
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
from brevitas.quant.solver import ActQuantSolver, WeightQuantSolver
from dependencies import value
from torch import nn

from bcnn.errors import BcnnError
from bcnn.floatnet import FLOAT_ARCHS, build_float_model

ARCHS = ("tiny", "cnv", "binarynet")


# --------------------------------------------------------------------------------------- quantizers (FINN's)


class CommonQuant(ExtendedInjector):
    """Constant-scale signed quantizer; bit_width 1 selects the binary (sign) quantizer."""

    bit_width_impl_type = BitWidthImplType.CONST
    scaling_impl_type = ScalingImplType.CONST
    restrict_scaling_type = RestrictValueType.FP
    zero_point_impl = ZeroZeroPoint
    float_to_int_impl_type = FloatToIntImplType.ROUND
    scaling_per_output_channel = False
    narrow_range = True
    signed = True

    @value
    def quant_type(bit_width):  # noqa: N805 (dependency-injection signature)
        if bit_width is None:
            return QuantType.FP
        if bit_width == 1:
            return QuantType.BINARY
        return QuantType.INT


class CommonWeightQuant(CommonQuant, WeightQuantSolver):
    scaling_const = 1.0


class CommonActQuant(CommonQuant, ActQuantSolver):
    min_val = -1.0
    max_val = 1.0


def input_quant(bit_width: int = 8) -> QuantIdentity:
    """The 8-bit Q1.7 input quantizer of FINN's CNV (scale 2^-7, range [-1, 1-2^-7])."""
    return QuantIdentity(act_quant=CommonActQuant, bit_width=bit_width, min_val=-1.0,
                         max_val=1.0 - 2.0 ** (1 - bit_width), narrow_range=False,
                         restrict_scaling_type=RestrictValueType.POWER_OF_TWO)


def sign_act() -> QuantIdentity:
    """1-bit activation: +1 where x >= 0, else -1 (exported as BipolarQuant)."""
    return QuantIdentity(act_quant=CommonActQuant, bit_width=1)


def binary_conv(in_ch: int, out_ch: int, kernel: int = 3, padding: int = 0,
                weight_bit_width: int = 1) -> QuantConv2d:
    return QuantConv2d(in_ch, out_ch, kernel, padding=padding, bias=False,
                       weight_quant=CommonWeightQuant, weight_bit_width=weight_bit_width)


def binary_linear(in_features: int, out_features: int, weight_bit_width: int = 1) -> QuantLinear:
    return QuantLinear(in_features, out_features, bias=False,
                       weight_quant=CommonWeightQuant, weight_bit_width=weight_bit_width)


class TensorNorm(nn.Module):
    """FINN's scalar batch-norm on the classifier output: ((x - mean) / sqrt(var + eps)) * w + b."""

    def __init__(self, eps: float = 1e-4, momentum: float = 0.1):
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))
        self.register_buffer("running_mean", torch.zeros(1))
        self.register_buffer("running_var", torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            mean = x.mean()
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * x.var(unbiased=True))
            return (x - mean) / (x.var(unbiased=False) + self.eps).pow(0.5) * self.weight + self.bias
        return (x - self.running_mean) / (self.running_var + self.eps).pow(0.5) * self.weight + self.bias


# ------------------------------------------------------------------------------------------------ topology


class BinaryCNN(nn.Module):
    """Convolutions, then fully connected layers, then the accumulator output and its affine.

    ``convs`` is a list of (out_channels, padding, pool) with pool one of None, "pre" (max-pool 2 right
    after the convolution, before batch-norm) or "post" (after the sign activation).
    """

    def __init__(
        self,
        input_size: int = 8,
        in_channels: int = 3,
        convs: Sequence[tuple[int, int, str | None]] = ((5, 1, None), (6, 0, "pre")),
        fcs: Sequence[int] = (7,),
        num_classes: int = 10,
        head: str | None = "tensornorm",
        input_affine: bool = True,
        pad_value: float = -1.0,
        kernel: int = 3,
        weight_bit_width: int = 1,
        bn_eps: float = 1e-4,
        input_norm: tuple[Sequence[float], Sequence[float]] | None = None,
    ):
        super().__init__()
        if head not in (None, "none", "tensornorm", "bn"):
            raise BcnnError(f"head must be none, tensornorm or bn, got {head!r}")
        if pad_value not in (-1.0, 1.0):
            raise BcnnError(f"binary layers pad with -1 or +1, got {pad_value}")
        self.input_size = input_size
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.input_affine = input_affine
        if input_norm is not None:  # per-channel (x - mean) / std instead of 2x-1
            mean, std = (torch.tensor(v, dtype=torch.float32).reshape(1, -1, 1, 1) for v in input_norm)
            self.register_buffer("input_mean", mean)
            self.register_buffer("input_std", std)
        self.input_norm = input_norm is not None
        layers: list[nn.Module] = [input_quant()]
        size, ch = input_size, in_channels
        for i, (out_ch, pad, pool) in enumerate(convs):
            if pool not in (None, "pre", "post"):
                raise BcnnError(f"conv {i}: pool must be None, 'pre' or 'post', got {pool!r}")
            if i == 0:
                layers.append(binary_conv(ch, out_ch, kernel, padding=pad, weight_bit_width=weight_bit_width))
            else:
                if pad:
                    layers.append(nn.ConstantPad2d(pad, pad_value))
                layers.append(binary_conv(ch, out_ch, kernel, weight_bit_width=weight_bit_width))
            size = size + 2 * pad - kernel + 1
            if pool == "pre":
                layers.append(nn.MaxPool2d(2))
            layers += [nn.BatchNorm2d(out_ch, eps=bn_eps), sign_act()]
            if pool == "post":
                layers.append(nn.MaxPool2d(2))
            if pool:
                size //= 2
            if size < 1:
                raise BcnnError(f"conv {i}: the feature map vanishes (input {input_size}, convs {list(convs)})")
            ch = out_ch
        self.features = nn.Sequential(*layers)
        features = ch * size * size
        cls: list[nn.Module] = [nn.Flatten()]
        for n in fcs:
            cls += [binary_linear(features, n, weight_bit_width), nn.BatchNorm1d(n, eps=bn_eps), sign_act()]
            features = n
        cls.append(binary_linear(features, num_classes, weight_bit_width))
        if head == "tensornorm":
            cls.append(TensorNorm())
        elif head == "bn":
            cls.append(nn.BatchNorm1d(num_classes, eps=bn_eps))
        self.classifier = nn.Sequential(*cls)
        for m in self.modules():
            if isinstance(m, (QuantConv2d, QuantLinear)):
                nn.init.uniform_(m.weight.data, -1, 1)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels/255 (NCHW) -> the values the 8-bit input quantizer sees."""
        if self.input_norm:
            return (x - self.input_mean) / self.input_std
        if self.input_affine:
            return 2.0 * x - 1.0
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))


def build_model(arch: str, **options) -> nn.Module:
    """A fresh model of ``arch``: ``tiny`` (configurable), ``cnv`` (FINN CNV-W1A1) or ``binarynet``, all
    BinaryCNN; or a float teacher (``bcnn.floatnet``, e.g. ``resnet9``).

    ``tiny`` options: input_size (8), in_channels (3), channels ((5, 6)), padding (bool or per-conv
    list; default True on the first conv only), pool (None/"pre"/"post" or per-conv list; default "pre"
    on the last conv), fc ((7,) hidden layer sizes), num_classes (10), head ("tensornorm", "bn", None),
    pad_value (-1.0), input_affine (True: 2x-1), input_norm ((mean, std) per channel, replaces 2x-1),
    weight_bit_width (1; other widths only to test the compiler's error).
    """
    if arch in FLOAT_ARCHS:
        return build_float_model(arch, **options)
    if arch not in ARCHS:
        raise BcnnError(f"unknown architecture {arch!r} (known: {', '.join(ARCHS + FLOAT_ARCHS)})")
    known = set(inspect.signature(BinaryCNN.__init__).parameters) - {"self", "convs", "fcs"}
    known = known | {"channels", "padding", "pool", "fc"} if arch == "tiny" else known - {"head"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise BcnnError(f"unknown {arch} model option(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    if arch == "tiny":
        channels = list(options.pop("channels", (5, 6)))
        n = len(channels)
        padding = options.pop("padding", [True] + [False] * (n - 1))
        padding = [padding] * n if isinstance(padding, bool) else list(padding)
        pool = options.pop("pool", [None] * (n - 1) + ["pre"])
        pool = [pool] * n if pool is None or isinstance(pool, str) else list(pool)
        if len(padding) != n or len(pool) != n:
            raise BcnnError("padding and pool need one entry per conv channel count")
        convs = [(c, int(p), q) for c, p, q in zip(channels, padding, pool, strict=True)]
        fcs = tuple(options.pop("fc", (7,)))
        return BinaryCNN(convs=convs, fcs=fcs, **options)
    if arch == "cnv":
        convs = [(64, 0, None), (64, 0, "post"), (128, 0, None), (128, 0, "post"), (256, 0, None), (256, 0, None)]
        options.setdefault("input_size", 32)
        return BinaryCNN(convs=convs, fcs=(512, 512), head="tensornorm", **options)
    # binarynet (the arch was checked above)
    convs = [(128, 1, None), (128, 1, "pre"), (256, 1, None), (256, 1, "pre"), (512, 1, None), (512, 1, "pre")]
    options.setdefault("input_size", 32)
    return BinaryCNN(convs=convs, fcs=(1024, 1024), head="bn", **options)


# ------------------------------------------------------------------------------------------------- helpers


def randomize_batchnorm(model: nn.Module, rng: np.random.Generator, negative: float = 0.3,
                        calibrate: torch.Tensor | None = None) -> None:
    """Random running statistics and affine parameters on every BatchNorm and TensorNorm, for tests.

    Means and variances follow each layer's accumulator spread so that output bits are not constant:
    measured on the input batch ``calibrate`` when given (then perturbed), else estimated as
    sqrt(fan-in). A fraction ``negative`` of the scales is negative.
    """
    norms: list[tuple[nn.Module, int]] = []
    fan_in = 1
    for m in model.modules():
        if isinstance(m, QuantConv2d):
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, QuantLinear):
            fan_in = m.in_features
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, TensorNorm)):
            norms.append((m, fan_in))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for m, fan_in in norms:
            n = m.running_mean.numel()
            mean, std = np.zeros(n), np.full(n, float(np.sqrt(fan_in)))
            if calibrate is not None:
                seen: list[torch.Tensor] = []
                handle = m.register_forward_hook(lambda _m, i, _o, seen=seen: seen.append(torch.as_tensor(i[0])))
                model(calibrate)
                handle.remove()
                x = seen[0].double().transpose(0, 1).reshape(seen[0].shape[1], -1) if n > 1 else seen[0].reshape(1, -1)
                mean, std = x.mean(1).numpy(), np.maximum(x.std(1).numpy(), 0.5)
            sign = np.where(rng.random(n) < negative, -1.0, 1.0)
            values = {
                "running_mean": mean + rng.normal(0.0, 0.3, n) * std,
                "running_var": (std * rng.uniform(0.7, 1.5, n)) ** 2,
                "weight": sign * rng.uniform(0.3, 1.5, n),
                "bias": rng.normal(0.0, 0.3, n),
            }
            for name, v in values.items():
                t = getattr(m, name)
                t.copy_(torch.as_tensor(v, dtype=t.dtype).reshape(t.shape))
    model.train(was_training)


def quant_input_scale(model: BinaryCNN) -> float:
    """The 8-bit input quantizer's scale: layer 0's accumulators are integers times this."""
    quant = model.features[0]
    return float(quant.act_quant.scale().detach()) if hasattr(quant, "act_quant") else 2.0 ** -7


def last_linear(model: nn.Module) -> QuantLinear:
    layers = [m for m in model.modules() if isinstance(m, QuantLinear)]
    if not layers:
        raise BcnnError("model has no QuantLinear layer")
    return layers[-1]


def last_layer_accumulators(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """The last QuantLinear's integer accumulators, int64 (N, outputs), for float input ``x``.

    A forward hook divides the layer's float output by its binary input scale times its weight scale;
    the result must be integral (it is, for power-of-two or unit scales).
    """
    layer = last_linear(model)
    seen: dict[str, torch.Tensor] = {}

    def hook(_mod: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        seen["x"] = torch.as_tensor(inputs[0]).detach()
        seen["y"] = torch.as_tensor(output).detach()

    handle = layer.register_forward_hook(hook)
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(x)
            w_scale = layer.quant_weight().scale.detach().reshape(1, -1)
        model.train(was_training)
    finally:
        handle.remove()
    xin, y = seen["x"].double(), seen["y"].double()
    if layer.bias is not None:
        y = y - layer.bias.detach().double()
    x_scale = xin.abs().amax()
    if not torch.allclose(xin.abs(), x_scale.expand_as(xin)):
        raise BcnnError("the last layer's input is not binary (±scale)")
    acc = y / (x_scale * w_scale.double())
    rounded = torch.round(acc)
    if (acc - rounded).abs().max() > 1e-3:
        raise BcnnError("the last layer's accumulators are not integral")
    return rounded.to(torch.int64).numpy()


def export_onnx(model: nn.Module, path: str | os.PathLike, input_shape: Sequence[int],
                dynamo: bool | None = None, quiet: bool = True) -> None:
    """Export ``model`` (in eval mode) to QONNX at ``path`` with Brevitas ``export_qonnx``.

    ``dynamo`` None keeps Brevitas' default (the torch.export path on torch >= 2.9).
    """
    from brevitas.export import export_qonnx

    kwargs = {} if dynamo is None else {"dynamo": dynamo}
    was_training = model.training
    model.eval()
    # torch's exporter logs a warning per torchvision op it cannot register: none is used here
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    try:
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext():
            if quiet:
                registration.setLevel(logging.ERROR)
            export_qonnx(model, torch.rand(*input_shape), export_path=str(path), **kwargs)
    finally:
        registration.setLevel(level)
        model.train(was_training)


def snap_thresholds(model: BinaryCNN) -> int:
    """Move every batch-norm+sign crossing to the midpoint between two reachable accumulator values.

    The set of accumulators that give +1 does not change (so the network computes the same function),
    but no reachable accumulator lies near a crossing any more, so float32 batch-norm in torch, onnxruntime
    and float64 thresholds in the compiler agree whatever order they evaluate it in. Reachable values:
    layer 0's integer accumulators (step 1); binary layers' acc = 2·popcount − N (step 2, parity of N).
    Pre-batch-norm values are acc · input scale · weight scale. Returns the number of channels moved.
    """
    if not isinstance(model, BinaryCNN):
        raise BcnnError("snap_thresholds needs a bcnn BinaryCNN model")
    quant_layers = [m for m in model.modules() if isinstance(m, (QuantConv2d, QuantLinear))]
    head = quant_layers[-1]
    layer, first, moved = None, True, 0
    input_scale = quant_input_scale(model)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (QuantConv2d, QuantLinear)):
                first = layer is None
                layer = m
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and layer is not None and layer is not head:
                w_scale = layer.quant_weight().scale.detach().double().reshape(-1).numpy()
                scale = w_scale * (input_scale if first else 1.0)  # binary activations have scale 1
                fan_in = layer.weight[0].numel()
                step, rem = (1.0, 0.0) if first else (2.0, float(fan_in % 2))
                gamma, beta = m.weight.double().numpy(), m.bias.double().numpy()
                mean, var = m.running_mean.double().numpy(), m.running_var.double().numpy()
                a = gamma / np.sqrt(var + m.eps)
                nz = a != 0
                t = np.where(nz, (mean - beta / np.where(nz, a, 1.0)) / scale, 0.0)  # crossing, acc units
                up = rem + step * np.ceil((t - rem) / step) - step / 2  # ge: just below the smallest +1 value
                down = rem + step * np.floor((t - rem) / step) + step / 2  # le: just above the largest +1 value
                t_new = np.where(a > 0, up, down)
                new_bias = np.where(nz, -a * (t_new * scale - mean), beta)
                m.bias.copy_(torch.as_tensor(new_bias, dtype=m.bias.dtype))
                moved += int(nz.sum())
    return moved
