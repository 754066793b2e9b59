"""Compile's inverse: the torch model that computes a compiled net, to warm-start training from a ``.bcnn``.

A ``.bcnn`` keeps each layer's signs and integer thresholds, not the float weights behind them, so
``load_net_weights`` rebuilds what training needs:

* latent weights: the net's sign times a magnitude drawn from (0, 1], as at initialisation (trained latent
  weights average about 0.55 in magnitude, so the draw is close to what training leaves);
* batch norm: running statistics measured on calibration images, and an affine whose zero crossing lies
  half an accumulator step from the threshold, so that eval mode computes the net's bits exactly and
  train mode, which normalises with each batch's statistics, starts close to them;
* the output affine (TensorNorm or per-class batch norm): the net's ``output_scale`` and ``output_bias``.

It ends by checking that the rebuilt model's last-layer accumulators equal the engine's on every
calibration image.
"""

from __future__ import annotations

import numpy as np
import torch
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
from torch import nn

from bcnn.errors import BcnnError
from bcnn.ir import Net
from bcnn.models import BinaryCNN, TensorNorm, last_layer_accumulators, quant_input_scale

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, TensorNorm)


def _layer_modules(model: BinaryCNN) -> list[tuple[nn.Module, nn.Module | None, str | None, int]]:
    """Per binary matrix layer: (QuantConv2d or QuantLinear, its norm or None, pool "pre"/"post"/None, pool
    window), in order."""
    found: list[list] = []
    prev = None
    for m in list(model.features) + list(model.classifier):
        if isinstance(m, (QuantConv2d, QuantLinear)):
            found.append([m, None, None, 1])
        elif found and isinstance(m, _NORMS):
            found[-1][1] = m
        elif found and isinstance(m, nn.MaxPool2d):
            found[-1][2] = "post" if isinstance(prev, QuantIdentity) else "pre"
            found[-1][3] = int(m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0])
        prev = m
    return [tuple(f) for f in found]


def _check_input(model: BinaryCNN, net: Net) -> float:
    """Layer 0's input must be the net's ``input_lut``; returns the input scale."""
    scale = quant_input_scale(model)
    c = net.input_shape[2]
    if model.in_channels != c or model.input_size != net.input_shape[0]:
        raise BcnnError(f"the net takes {net.input_shape} images, the model {model.input_size}x{model.input_size}"
                        f"x{model.in_channels}")
    pixels = (torch.arange(256, dtype=torch.float32) / 255).reshape(1, 1, 1, 256).expand(1, c, 1, 256)
    with torch.no_grad():
        lut = torch.round(model.features[0](model.normalize(pixels)) / scale).reshape(c, 256).to(torch.int64)
    if not np.array_equal(lut.numpy(), net.input_lut):
        raise BcnnError("the net's input mapping (input_lut) differs from this model's input quantizer: "
                        "was it compiled with other --options (input_norm, input_affine)?")
    return scale


def _set_affine(norm: nn.Module, a: np.ndarray, c: np.ndarray, mean: np.ndarray, var: np.ndarray) -> None:
    """Batch-norm parameters whose eval-mode output is ``a·x + c``, with running statistics (mean, var)."""
    std = np.sqrt(var + norm.eps)
    values = {"running_mean": mean, "running_var": var, "weight": a * std, "bias": c + a * mean}
    for name, v in values.items():
        t = getattr(norm, name)
        t.copy_(torch.as_tensor(v, dtype=t.dtype).reshape(t.shape))


def _crossings(net: Net, index: int, pool: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Hidden layer ``index``'s sign s (+1: acc ≥ t) and crossing τ = t ∓ ½ in accumulator units."""
    layer = net.layers[index]
    lo, hi = net.acc_range(index)
    ge, t = layer.ge, layer.thresholds.astype(np.float64)
    if pool is not None:
        varies = np.where(ge, (t > lo) & (t <= hi), (t >= lo) & (t < hi))  # constant channels pool either way
        # max-pool before the norm is OR for a rising threshold and AND for a falling one; after it, OR
        want_and = ~ge if pool == "pre" else np.zeros_like(ge)
        if np.any(varies & (layer.pool_and != want_and)):
            raise BcnnError(f"layer {index} ({layer.name}): its pooling (AND/OR per channel) cannot come from "
                            f"this topology's max-pool {'before' if pool == 'pre' else 'after'} the sign")
    return np.where(ge, 1.0, -1.0), np.where(ge, t - 0.5, t + 0.5)


def _norm_input_stats(model: BinaryCNN, norms: list[nn.Module], images: np.ndarray,
                      batch: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per norm, the mean and variance of its input per channel (TensorNorm: over all) in eval mode."""
    from bcnn.train import to_float

    sums = [None] * len(norms)

    def hook(i: int, norm: nn.Module):
        def record(_m: nn.Module, inputs: tuple, _out: torch.Tensor) -> None:
            x = torch.as_tensor(inputs[0]).detach().double()
            x = x.reshape(1, -1) if isinstance(norm, TensorNorm) else x.transpose(0, 1).reshape(x.shape[1], -1)
            s = torch.stack([torch.full((x.shape[0],), float(x.shape[1]), dtype=torch.float64),
                             x.sum(1), (x * x).sum(1)])
            sums[i] = s if sums[i] is None else sums[i] + s
        return record

    handles = [n.register_forward_hook(hook(i, n)) for i, n in enumerate(norms)]
    try:
        model.eval()
        with torch.no_grad():
            for i in range(0, len(images), batch):
                model(to_float(torch.from_numpy(images[i:i + batch])))
    finally:
        for h in handles:
            h.remove()
    stats = []
    for s in sums:
        n, total, squares = s.numpy()
        mean = total / n
        stats.append((mean, np.maximum(squares / n - mean * mean, 0.0)))
    return stats


def load_net_weights(model: BinaryCNN, net: Net, images: np.ndarray, batch: int = 250) -> None:
    """Set ``model``'s weights so that it computes ``net``; ``images`` (uint8 NHWC, a few thousand training
    images) calibrate the batch-norm statistics and the check. The latent magnitudes draw from torch's
    global generator (seed it for a reproducible result)."""
    from bcnn.engine.fast import run_fast
    from bcnn.train import to_float

    layers = _layer_modules(model)
    if len(layers) != len(net.layers):
        raise BcnnError(f"the net has {len(net.layers)} layers, the model {len(layers)}")
    if len(images) == 0:
        raise BcnnError("no calibration images")
    unit = _check_input(model, net)  # layer 0's accumulators in torch are integers times the input scale
    affines = []  # (norm, a, c): the eval-mode affine a·x + c each norm must compute
    with torch.no_grad():
        for i, ((quant, norm, pool, window), layer) in enumerate(zip(layers, net.layers, strict=True)):
            w = np.where(layer.weights, 1.0, -1.0).transpose(0, 3, 1, 2)  # (out, k, k, in) -> (out, in, k, k)
            if int(np.prod(w.shape)) != quant.weight.numel() or w.shape[0] != quant.weight.shape[0]:
                raise BcnnError(f"layer {i} ({layer.name}): weights {layer.weights.shape} do not fit the model's "
                                f"{tuple(quant.weight.shape)}")
            if (pool is None) != (layer.pool == 1) or (pool is not None and window != layer.pool):
                raise BcnnError(f"layer {i} ({layer.name}): pools {layer.pool}, the model {window if pool else 1}")
            magnitude = 1.0 - torch.rand(quant.weight.shape)  # (0, 1]: no zero, whose sign would be ambiguous
            quant.weight.copy_(torch.as_tensor(w.reshape(quant.weight.shape), dtype=quant.weight.dtype) * magnitude)
            u = unit if i == 0 else 1.0
            if not layer.is_last:
                s, tau = _crossings(net, i, pool)
                affines.append((norm, s, -s * tau * u))  # then divided by the measured spread, below
            elif norm is None:
                if not (np.allclose(net.output_scale, u) and np.allclose(net.output_bias, 0.0)):
                    raise BcnnError("the net has an output affine, but this model's head has none")
            else:
                a, c = net.output_scale / u, net.output_bias
                if isinstance(norm, TensorNorm) and (np.ptp(a) or np.ptp(c)):
                    raise BcnnError("the net's output affine differs per class, but this model's head "
                                    "(TensorNorm) has one scale and one bias")
                affines.append((norm, a[:1] if isinstance(norm, TensorNorm) else a,
                                c[:1] if isinstance(norm, TensorNorm) else c))
        for norm, a, c in affines:  # exact in eval mode, before the statistics are known
            zero = np.zeros_like(a)
            _set_affine(norm, a, c, zero, np.ones_like(a) - norm.eps)
        stats = _norm_input_stats(model, [n for n, _, _ in affines], images, batch)
        for (norm, a, c), (mean, var) in zip(affines, stats, strict=True):
            last = norm is layers[-1][1]
            spread = 1.0 if last else np.sqrt(np.maximum(var, 1e-12) + norm.eps)  # hidden: standardise
            _set_affine(norm, a / spread, c / spread, mean, var)
    rebuilt = np.concatenate([last_layer_accumulators(model, to_float(torch.from_numpy(images[i:i + batch])))
                              for i in range(0, len(images), batch)])
    differ = int((rebuilt != run_fast(net, images)).any(axis=1).sum())
    if differ:
        raise BcnnError(f"the rebuilt model's outputs differ from the net's on {differ} of {len(images)} images: "
                        f"the net was not compiled from this topology")
