"""Random legal networks and the equivalence checks run on them (tests and ``benchmarks/fuzz_equivalence.py``).

One generator serves both: every structural choice goes through a ``Draw`` (``d.int``, ``d.choice``,
``d.bool``), which hypothesis implements with its strategies (so failures shrink) and the long-running
benchmark with a seeded numpy generator (so case ``i`` of seed ``s`` is reproducible and a run resumes).
Bulk data (weights, thresholds, batch-norm statistics, images) comes from a numpy generator seeded by one
drawn integer.

Three kinds of case:

* ``ir_case``: a network made directly in the IR (``bcnn.randnet``) with edge cases a trained model rarely
  has: thresholds outside, at and one step beyond the accumulator range (constant bits), every channel
  ``<=`` or every channel pooling with AND, odd input look-up tables (unsigned, arbitrary, all zero, wide);
  checked reference engine == fast engine.
* ``brevitas_case``: a Brevitas ``tiny`` model with random topology and batch-norm (negative scales, zero
  variance, zero scale), exported to QONNX and compiled; checked torch == qonnx executor == reference ==
  fast on the last layer's integer accumulators.
* ``folding`` + ``check_rtl``: a random legal PE/SIMD/weight memory per layer, the generated Verilog
  linted and simulated with Verilator, outputs == reference.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bcnn.ir import Net
from bcnn.randnet import ConvSpec, random_net

MAX_CH = 70
WORD_EDGES = (63, 64, 65)  # channel counts around one 64-bit word of the fast engine


class Draw(Protocol):
    def int(self, lo: int, hi: int) -> int: ...  # inclusive

    def choice(self, options: Sequence[Any]) -> Any: ...

    def bool(self, p: float = 0.5) -> bool: ...


class RngDraw:
    """A ``Draw`` from a numpy generator."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def int(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi + 1))

    def choice(self, options: Sequence[Any]) -> Any:
        return options[int(self.rng.integers(len(options)))]

    def bool(self, p: float = 0.5) -> bool:
        return bool(self.rng.random() < p)


def divisors(n: int) -> list[int]:
    return [k for k in range(1, n + 1) if n % k == 0]


def _channels(d: Draw) -> int:
    return d.choice(WORD_EDGES) if d.bool(0.1) else d.int(1, MAX_CH)


# ------------------------------------------------------------------------------------------ IR networks


def ir_spec(d: Draw, rtl: bool = False) -> dict:
    """A random legal IR topology. ``rtl``: only what the RTL maps (padding < kernel), smaller nets."""
    size = d.int(4, 12 if rtl else 16)
    cin = d.choice([1, 2, 3, 4])
    convs = []
    s = size
    for _ in range(d.int(0, 2 if rtl else 3)):
        out_ch = d.int(1, 24) if rtl else _channels(d)
        kernel = d.int(1, min(5, s + 4))
        pad_lo = max(0, math.ceil((kernel - s) / 2))  # the kernel must fit the padded map
        pad = d.int(pad_lo, min(2, kernel - 1) if rtl else 2)  # (pad_lo <= kernel - 1 always)
        conv = s + 2 * pad - kernel + 1
        pool = d.choice([p for p in (1, 2, 3) if conv % p == 0])
        convs.append((out_ch, kernel, pad, pool))
        s = conv // pool
    n_fc = d.int(1, 3)
    fcs = [(d.int(1, 24) if rtl else _channels(d)) for _ in range(n_fc)]
    return {"input_shape": (size, size, cin), "convs": convs, "fcs": fcs,
            "lut": d.choice(["signed", "unsigned", "random", "zero", "wide"] if not rtl
                            else ["signed", "unsigned", "random", "zero"]),
            "thresholds": d.choice(["random", "edges", "constant", "mixed"]),
            "ge": d.choice([0.0, 0.5, 1.0, 0.7]),
            "pool_and": d.choice([0.0, 0.3, 1.0]),
            "n_images": d.int(1, 6),
            "special_images": d.bool(0.3),
            "seed": d.int(0, 2**32 - 1)}


def ir_net(spec: dict) -> tuple[Net, np.ndarray]:
    """The network and uint8 images of an ``ir_spec``."""
    rng = np.random.default_rng(spec["seed"])
    convs = [ConvSpec(o, kernel=k, pad=p, pool=q) for o, k, p, q in spec["convs"]]
    net = random_net(rng, tuple(spec["input_shape"]), convs=convs, fcs=list(spec["fcs"]),
                     input_signed=spec["lut"] != "unsigned")
    c = net.input_shape[2]
    scale = 1
    if spec["lut"] == "random":
        net.input_lut = rng.integers(-128, 128, (c, 256)).astype(np.int64)
    elif spec["lut"] == "zero":
        net.input_lut = np.zeros((c, 256), np.int64)
    elif spec["lut"] == "wide":
        scale = int(rng.choice([300, 2**20]))
        net.input_lut = net.input_lut * scale
    for i, layer in enumerate(net.layers[:-1]):
        lo, hi = net.acc_range(i)
        n = layer.out_ch
        t = layer.thresholds * scale if i == 0 else layer.thresholds
        kind = spec["thresholds"]
        if kind in ("edges", "mixed"):  # at, inside and one beyond the reachable range, both parities
            edges = np.array([lo - 1, lo, lo + 1, hi - 1, hi, hi + 1, 0, 1, -1])
            pick = rng.random(n) < (1.0 if kind == "edges" else 0.3)
            t = np.where(pick, rng.choice(edges, n), t)
        if kind in ("constant", "mixed"):  # what a zero batch-norm scale compiles to
            pick = rng.random(n) < (0.5 if kind == "constant" else 0.2)
            t = np.where(pick, rng.choice([lo - 1, hi + 1], n), t)
        layer.thresholds = np.clip(t, lo - 1, hi + 1).astype(np.int64)
        layer.ge = rng.random(n) < spec["ge"]
        if layer.pool > 1:
            layer.pool_and = rng.random(n) < spec["pool_and"]
    net.validate()
    images = rng.integers(0, 256, (spec["n_images"], *net.input_shape), dtype=np.uint8)
    if spec["special_images"]:
        images[0] = 0
        if len(images) > 1:
            images[1] = 255
    return net, images


def folding(d: Draw, net: Net) -> tuple[list[int], list[int], list[str] | None]:
    """A random legal (PE, SIMD, weight memory style) per layer: PE divides C_out; SIMD is any chunk the RTL
    accepts (``bcnn.plan.legal_simds``: divisors of C_in, or whole kernel pixels / rows); memory style random
    where the planner has styles (None: the planner's choice)."""
    from bcnn import plan as bplan

    legal = getattr(bplan, "legal_simds", lambda layer: divisors(layer.in_ch))
    pe = [d.choice(divisors(layer.out_ch)) for layer in net.layers]
    simd = [d.choice(legal(layer)) for layer in net.layers]
    styles = getattr(bplan, "MEM_STYLES", None)
    mem = [d.choice(styles) for _ in net.layers] if styles and d.bool(0.7) else None
    return pe, simd, mem


# --------------------------------------------------------------------------------------- engines


class Mismatch(AssertionError):
    """Two backends disagree; the message names them and the first differing image and output."""


def assert_same(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise Mismatch(f"{name_a} shape {a.shape} != {name_b} shape {b.shape}")
    if not np.array_equal(a, b):
        idx = tuple(int(v) for v in np.argwhere(a != b)[0])
        raise Mismatch(f"{name_a} != {name_b}: {int((a != b).sum())} of {a.size} accumulators differ, "
                       f"first at {idx}: {a[idx]} vs {b[idx]}")


def check_engines(net: Net, images: np.ndarray) -> np.ndarray:
    """reference == fast; returns the reference accumulators."""
    from bcnn.engine.fast import run_fast
    from bcnn.engine.reference import run_reference

    ref = run_reference(net, images)
    assert_same("reference", ref, "fast", run_fast(net, images, threads=1))
    return ref


# ------------------------------------------------------------------------------------- Brevitas models


def brevitas_spec(d: Draw) -> dict:
    """Random ``build_model("tiny", ...)`` options (legal for the compiler) and batch-norm edge cases."""
    size = d.int(4, 16)
    kernel = d.int(1, 5)
    channels, padding, pool = [], [], []
    s = size
    for _ in range(d.int(0, 3)):
        pad_lo = max(0, math.ceil((kernel - s) / 2))
        pad_hi = max(pad_lo, min(2, kernel - 1))
        pad = d.int(pad_lo, pad_hi)
        conv = s + 2 * pad - kernel + 1
        p = d.choice([None, "pre", "post"]) if conv % 2 == 0 else None
        channels.append(_channels(d))
        padding.append(pad)
        pool.append(p)
        s = conv // 2 if p else conv
    fc = [_channels(d) for _ in range(d.int(0 if channels else 1, 2))]
    options = {"input_size": size, "in_channels": d.choice([1, 3]), "kernel": kernel, "channels": channels,
               "padding": padding, "pool": pool, "fc": fc, "num_classes": d.int(1, 16),
               "head": d.choice([None, "tensornorm", "bn"]), "pad_value": d.choice([-1.0, 1.0])}
    norm = d.choice(["affine", "plain", "norm"])
    if norm == "plain":
        options["input_affine"] = False
    elif norm == "norm":
        options["input_norm"] = "random"  # filled in by brevitas_model from the seed
    return {"options": options,
            "negative": d.choice([0.0, 0.3, 0.5, 1.0]),
            "zero_var": d.choice([0.0, 0.0, 0.2, 1.0]),  # fraction of hidden channels with running_var 0
            "zero_scale": d.choice([0.0, 0.0, 0.2]),  # fraction with gamma 0 (constant bit), bias +, - or 0
            "snap": d.bool(0.8),
            "dynamo": d.bool(0.1),  # torch.export path (about 2 s) instead of TorchScript (about 0.3 s)
            "n_images": d.int(1, 6),
            "seed": d.int(0, 2**31 - 1)}


def brevitas_model(spec: dict):
    """The Brevitas model of a ``brevitas_spec`` (eval mode) and its uint8 images."""
    import torch
    from torch import nn

    from bcnn.data import to_model_input
    from bcnn.models import TensorNorm, build_model, randomize_batchnorm, snap_thresholds

    rng = np.random.default_rng(spec["seed"])
    torch.manual_seed(spec["seed"])
    options = dict(spec["options"])
    c = options["in_channels"]
    if options.get("input_norm") == "random":
        options["input_norm"] = (rng.uniform(0.3, 0.7, c).tolist(), rng.uniform(0.2, 0.3, c).tolist())
    model = build_model("tiny", **options)
    size = options["input_size"]
    images = rng.integers(0, 256, (spec["n_images"], size, size, c), dtype=np.uint8)
    calib = rng.integers(0, 256, (16, size, size, c), dtype=np.uint8)
    randomize_batchnorm(model, rng, negative=spec["negative"], calibrate=to_model_input(calib))
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, TensorNorm))]
    hidden = norms[:-1] if options["head"] else norms
    with torch.no_grad():
        for m in hidden:
            n = m.running_var.numel()
            zv = rng.random(n) < spec["zero_var"]
            m.running_var[torch.from_numpy(zv)] = 0.0
            zs = torch.from_numpy(rng.random(n) < spec["zero_scale"])
            m.weight[zs] = 0.0
            m.bias[zs] = torch.from_numpy(rng.choice([-0.5, 0.0, 0.5], n)).to(m.bias.dtype)[zs]
    model.eval()
    if spec["snap"]:
        snap_thresholds(model)
    return model, images


def _qonnx_run(path: Path, x: np.ndarray) -> np.ndarray:
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    model = ModelWrapper(str(path)).transform(InferShapes())
    return execute_onnx(model, {model.graph.input[0].name: x})[model.graph.output[0].name]


@dataclass
class BrevitasResult:
    net: Net
    images: np.ndarray
    accumulators: np.ndarray
    seconds: dict = field(default_factory=dict)


def check_brevitas(spec: dict, work_dir: str | Path | None = None) -> BrevitasResult:
    """Export, compile and run one ``brevitas_spec``: torch == qonnx == reference == fast, else Mismatch."""
    import time

    import torch

    from bcnn.compile import compile_onnx
    from bcnn.data import to_model_input
    from bcnn.models import export_onnx, last_layer_accumulators

    t0 = time.perf_counter()
    model, images = brevitas_model(spec)
    x = to_model_input(images)
    with tempfile.TemporaryDirectory(prefix="bcnn-fuzz", dir=work_dir) as td:
        path = Path(td) / "m.onnx"
        t1 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_onnx(model, path, tuple(x.shape), dynamo=None if spec["dynamo"] else False)
        t2 = time.perf_counter()
        net = compile_onnx(path)
        out_q = np.asarray(_qonnx_run(path, x.numpy()), dtype=np.float64)
    t3 = time.perf_counter()
    acc_torch = last_layer_accumulators(model, x)
    acc_ref = check_engines(net, images)
    assert_same("torch", acc_torch, "reference", acc_ref)
    scale = net.output_scale
    if np.all(scale != 0):  # the executor gives logits; turn them back into accumulators
        acc_q = (out_q - net.output_bias) / scale
        if np.abs(acc_q - np.rint(acc_q)).max() > 1e-3 * max(1.0, float(np.abs(acc_q).max())):
            raise Mismatch("qonnx executor logits do not map back to integer accumulators")
        assert_same("qonnx", np.rint(acc_q).astype(np.int64), "reference", acc_ref)
    with torch.no_grad():
        out_torch = model(x).double().numpy()
    from bcnn.engine.reference import logits

    np.testing.assert_allclose(logits(net, acc_ref), out_torch, rtol=1e-4, atol=1e-3)
    return BrevitasResult(net, images, acc_ref, {"build": t1 - t0, "export": t2 - t1, "compile_qonnx": t3 - t2,
                                                 "check": time.perf_counter() - t3})


# ------------------------------------------------------------------------------------------------ RTL


def check_rtl(net: Net, images: np.ndarray, pe: list[int], simd: list[int], rtl_dir: str | Path,
              build_dir: str | Path | None = None, lint: bool = True, mem: list[str] | None = None) -> dict:
    """Plan with the folding, generate, lint (``verilator --lint-only -Wall``) and simulate: RTL == reference."""
    from bcnn.engine.reference import run_reference
    from bcnn.plan import make_plan
    from bcnn.rtl.generate import generate
    from bcnn.sim import lint as run_lint
    from bcnn.sim import simulate

    plan = make_plan(net, pe=pe, simd=simd, **({"mem": mem} if mem else {}))
    generate(net, plan, rtl_dir)
    if lint:
        warnings_ = run_lint(rtl_dir)
        if warnings_:
            raise Mismatch(f"lint: {len(warnings_)} warnings, first: {warnings_[0]}")
    expected = run_reference(net, images)
    res = simulate(rtl_dir, images, expected=expected, build_dir=build_dir)
    assert_same("rtl", res["outputs"], "reference", expected)
    res["plan_ii_cycles"] = plan["ii_cycles"]
    return res
