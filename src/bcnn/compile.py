"""QONNX (as Brevitas ``export_qonnx`` writes it) -> the integer IR of ``bcnn.ir``.

The compiler walks the graph as a chain from the input to the output and folds every float operation
into integers the hardware can run bit-exactly:

* the input affine (e.g. 2x-1) and the 8-bit input ``Quant`` become ``input_lut``, evaluated with
  qonnx's own quantizer on float32 pixel/255 so it matches the QONNX executor;
* a binary ``Conv``/``Gemm``/``MatMul`` (weights from a ``BipolarQuant`` on an initializer) gives integer
  accumulators; everything up to the next bipolar activation (conv scale, batch-norm, Mul/Add/Sub/Div)
  is one per-channel affine a·acc+b, and sign(a·acc+b) (+1 at 0, like Brevitas and qonnx) is one
  integer comparison;
* max-pooling before the sign is OR over bits where the comparison is ``>=`` and AND where it is ``<=``;
  after the sign it is OR;
* the last layer's trailing affine becomes ``output_scale``/``output_bias`` (host side, float64).

Anything else raises BcnnError with one line naming the node, its op type and the reason.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from bcnn.errors import BcnnError
from bcnn.ir import Layer, Net

_QONNX_DOMAIN = "qonnx.custom_op.general"
_PASS_THROUGH = ("Identity", "Dropout")
_AFFINE = ("Mul", "Add", "Sub", "Div")
_PHASE = {"input": "before the input quantizer", "int": "after the input quantizer",
          "acc": "after a layer's accumulators", "bits": "after a 1-bit activation"}


def _where(node: onnx.NodeProto) -> str:
    name = node.name or (node.output[0] if node.output else "?")
    return f"node {name} ({node.op_type})"


def _fail(node: onnx.NodeProto, why: str) -> BcnnError:
    return BcnnError(f"{_where(node)}: {why}")


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


@dataclass
class _Pending:
    """The layer being built: its IR fields plus the affine a·acc+b since its accumulators."""

    node: onnx.NodeProto
    layer: Layer
    a: np.ndarray
    b: np.ndarray
    post_pool_scale: np.ndarray | None = None  # product of scales applied after a pre-activation pool
    pool_node: onnx.NodeProto | None = None
    acc_lo: int = 0
    acc_hi: int = 0


@dataclass
class _State:
    phase: str = "input"  # input -> int (after the input Quant) -> acc (after a layer) -> bits (after sign)
    chw: tuple[int, int, int] = (0, 0, 0)  # (C, H, W) of the current 4-D tensor (or of the flattened one)
    flat: bool = False
    scale: float = 1.0  # scale of the current integer/bit tensor (value = integer · scale)
    pad: int = 0  # pending padding for the next convolution
    pad_bit: int = 0
    input_ops: list = field(default_factory=list)  # (op, constant, constant_first) before the input Quant
    lut: np.ndarray | None = None
    layers: list[Layer] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    cur: _Pending | None = None


class _Graph:
    """Producer/consumer maps and static (constant) tensor evaluation."""

    def __init__(self, model: onnx.ModelProto):
        self.graph = model.graph
        self.init = {t.name: numpy_helper.to_array(t) for t in self.graph.initializer}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.graph.node:
            for o in node.output:
                self.producer[o] = node
            for i in node.input:
                if i:
                    self.consumers.setdefault(i, []).append(node)

    def static(self, name: str, node: onnx.NodeProto) -> np.ndarray:
        """The constant value of tensor ``name`` (an input of ``node``), else BcnnError."""
        if name in self.init:
            return self.init[name]
        p = self.producer.get(name)
        if p is not None and p.op_type == "Constant":
            return numpy_helper.to_array(_attrs(p)["value"])
        raise _fail(node, f"input {name} must be a constant")

    def is_static(self, name: str) -> bool:
        p = self.producer.get(name)
        return name in self.init or (p is not None and p.op_type == "Constant")

    def weight(self, name: str, node: onnx.NodeProto) -> np.ndarray:
        """Value (±scale) of a binary weight tensor: BipolarQuant on a constant, maybe transposed/reshaped."""
        p = self.producer.get(name)
        if p is None or p.op_type == "Constant":
            raise _fail(node, "weights are float, not quantized; bcnn needs 1-bit weights (BipolarQuant)")
        if p.op_type in ("Transpose", "Reshape", "Identity"):
            v = self.weight(p.input[0], node)
            if p.op_type == "Transpose":
                return np.transpose(v, _attrs(p).get("perm"))
            if p.op_type == "Reshape":
                return v.reshape(self.static(p.input[1], p).astype(np.int64))
            return v
        if p.op_type == "BipolarQuant":
            from qonnx.custom_op.general.bipolar_quant import binary_quant

            x, s = self.static(p.input[0], p), self.static(p.input[1], p)
            if np.any(s <= 0):
                raise _fail(p, "weight scale must be positive")
            return binary_quant(x, s)
        if p.op_type in ("Quant", "IntQuant"):
            bits = self.init.get(p.input[3]) if len(p.input) > 3 else None
            width = f"{int(bits)}-bit " if bits is not None and np.size(bits) == 1 else ""
            raise _fail(node, f"{width}weights from {p.op_type} {p.name}; bcnn needs 1-bit weights (BipolarQuant)")
        raise _fail(node, f"weights come from a {p.op_type} node; bcnn needs 1-bit weights (BipolarQuant)")


def _load(path: Path) -> onnx.ModelProto:
    if path.is_dir():
        raise BcnnError(f"{path}: is a folder; expected a QONNX .onnx file (Brevitas export_qonnx)")
    if not path.is_file():
        raise BcnnError(f"{path}: no such file")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf DecodeError and friends: truncated or not ONNX at all
        msg = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise BcnnError(f"{path}: not a readable ONNX model ({msg})") from None
    if not model.graph.node:
        raise BcnnError(f"{path}: not a readable ONNX model (empty graph)")
    for node in model.graph.node:
        if node.op_type in ("Quant", "BipolarQuant", "Trunc"):
            node.domain = _QONNX_DOMAIN
    try:  # fold constant subgraphs (TorchScript exports compute pads etc. with ops), keep quantizers
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.transformation.fold_constants import FoldConstants
        from qonnx.transformation.infer_shapes import InferShapes

        wrapped = ModelWrapper(model).transform(InferShapes())
        model = wrapped.transform(FoldConstants(exclude_op_types=["Quant", "BipolarQuant"])).model
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise BcnnError(f"{path}: cannot fold the model's constants ({msg})") from None
    return model


def _per_channel(node: onnx.NodeProto, c: np.ndarray, shape: tuple[int, ...], channels: int) -> np.ndarray:
    """A constant broadcast against a tensor of ``shape`` (batch 1) -> one value per channel (axis 1)."""
    try:
        full = np.broadcast_to(c, shape) if np.broadcast_shapes(np.shape(c), shape) == shape else None
    except ValueError:
        full = None
    if full is None:
        raise _fail(node, f"constant of shape {list(np.shape(c))} does not broadcast to the tensor {list(shape)}")
    flat = full.reshape(shape[0], channels, -1)
    if not np.all(flat == flat[:, :, :1]):
        raise _fail(node, "affine varies within a channel; bcnn folds scalar or per-channel affines only")
    return flat[0, :, 0].astype(np.float64)


def _threshold(a: float, b: float, lo: int, hi: int) -> tuple[int, bool]:
    """Integer comparison equal to sign(a·acc + b) >= 0 for integer acc in [lo, hi]: (threshold, ge)."""
    if a == 0:  # constant output: a threshold outside the accumulator range
        return (lo - 1, True) if b >= 0 else (hi + 1, True)
    v = -b / a
    k = round(v)
    if abs(v - k) <= 1e-9 * max(1.0, abs(v)):  # an exact tie in real arithmetic: sign(0) = +1
        v = float(k)
    if a > 0:
        t, ge = math.ceil(v) if math.isfinite(v) else (hi + 1 if v > 0 else lo - 1), True
    else:
        t, ge = math.floor(v) if math.isfinite(v) else (hi + 1 if v > 0 else lo - 1), False
    return int(min(max(t, lo - 1), hi + 1)), ge


class _Compiler:
    def __init__(self, model: onnx.ModelProto, path: Path):
        self.g = _Graph(model)
        self.path = path
        self.s = _State()

    # ------------------------------------------------------------------------------------------ helpers

    def _dyn_index(self, node: onnx.NodeProto, cur: str) -> int:
        idx = [i for i, name in enumerate(node.input) if name == cur]
        if len(idx) != 1:
            raise _fail(node, "uses the same tensor twice")
        return idx[0]

    def _shape(self) -> tuple[int, ...]:
        c, h, w = self.s.chw
        return (1, c * h * w) if self.s.flat else (1, c, h, w)

    def _channels(self) -> int:
        c, h, w = self.s.chw
        return c * h * w if self.s.flat else c

    # ------------------------------------------------------------------------------------------- driver

    def run(self) -> Net:
        g = self.g.graph
        inputs = [i for i in g.input if i.name not in self.g.init and i.name in self.g.consumers]
        if len(inputs) != 1 or len(g.output) != 1:
            raise BcnnError(f"{self.path}: the model must have one input and one output, has "
                            f"{len(inputs)} and {len(g.output)}")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
        if len(dims) != 4 or None in dims[1:]:
            raise BcnnError(f"{self.path}: input {inputs[0].name} must be NCHW with fixed C, H, W, got {dims}")
        self.s.chw = (dims[1], dims[2], dims[3])
        input_hwc = (dims[2], dims[3], dims[1])
        cur, out = inputs[0].name, g.output[0].name
        while cur != out:
            nodes = self.g.consumers.get(cur, [])
            if len(nodes) != 1:
                where = f"tensor {cur}"
                if not nodes:
                    raise BcnnError(f"{self.path}: {where} feeds no node and is not the graph output")
                raise BcnnError(f"{self.path}: {where} feeds {len(nodes)} nodes "
                                f"({', '.join(_where(n) for n in nodes)}); bcnn maps a chain of layers")
            node = nodes[0]
            self._step(node, cur)
            cur = node.output[0]
        return self._finish(input_hwc)

    def _step(self, node: onnx.NodeProto, cur: str) -> None:
        op, s = node.op_type, self.s
        idx = self._dyn_index(node, cur)
        for i, name in enumerate(node.input):
            if i != idx and name and not self.g.is_static(name) and op not in ("Conv", "Gemm", "MatMul"):
                raise _fail(node, f"input {name} is not a constant; bcnn maps a chain of layers")
        if op in _PASS_THROUGH:
            return
        handler = getattr(self, f"_op_{op}", None)
        if op in _AFFINE:
            handler = self._op_affine
        if handler is None:
            raise _fail(node, f"unsupported operation ({_PHASE[s.phase]}); bcnn maps Quant, BipolarQuant, Conv, "
                              "Gemm/MatMul, BatchNormalization, MaxPool, Pad, Reshape/Flatten and Mul/Add/Sub/Div")
        handler(node, idx)

    # ------------------------------------------------------------------------------------------ ops

    def _op_affine(self, node: onnx.NodeProto, idx: int) -> None:
        s, op = self.s, node.op_type
        if len(node.input) != 2:
            raise _fail(node, "expects two inputs")
        c = self.g.static(node.input[1 - idx], node)
        const_first = idx == 1
        if op == "Div" and const_first:
            raise _fail(node, "divides a constant by the tensor; not an affine")
        if s.phase == "input":
            if s.flat:
                raise _fail(node, "affine on the flattened input is not supported")
            v = _per_channel(node, c, self._shape(), self._channels())
            s.input_ops.append((op, v.astype(np.asarray(c).dtype).reshape(1, -1, 1, 1), const_first))
            return
        if s.phase != "acc":
            raise _fail(node, f"affine on quantized values ({_PHASE[s.phase]}) is not supported; "
                              "put it between a layer and its activation")
        v = _per_channel(node, c, self._shape(), self._channels())
        p = s.cur
        if op == "Mul":
            p.a, p.b, m = p.a * v, p.b * v, v
        elif op == "Div":
            p.a, p.b, m = p.a / v, p.b / v, 1.0 / v
        elif op == "Add":
            p.b, m = p.b + v, 1.0
        elif const_first:  # c - x
            p.a, p.b, m = -p.a, v - p.b, -1.0
        else:
            p.b, m = p.b - v, 1.0
        if p.post_pool_scale is not None:
            p.post_pool_scale = p.post_pool_scale * m

    def _op_BatchNormalization(self, node: onnx.NodeProto, idx: int) -> None:
        s = self.s
        if s.phase != "acc" or idx != 0:
            raise _fail(node, f"batch-norm must follow a convolution or fully connected layer ({_PHASE[s.phase]})")
        gamma, beta, mean, var = (self.g.static(n, node).astype(np.float64).reshape(-1) for n in node.input[1:5])
        eps = float(_attrs(node).get("epsilon", 1e-5))
        if gamma.size != self._channels():
            raise _fail(node, f"has {gamma.size} channels, the tensor has {self._channels()}")
        m = gamma / np.sqrt(var + eps)
        p = s.cur
        p.a, p.b = p.a * m, (p.b - mean) * m + beta
        if p.post_pool_scale is not None:
            p.post_pool_scale = p.post_pool_scale * m

    def _op_Quant(self, node: onnx.NodeProto, idx: int) -> None:
        s = self.s
        bits = self.g.static(node.input[3], node) if len(node.input) > 3 else None
        if s.phase != "input" or idx != 0:
            width = f"{int(bits)}-bit " if bits is not None and np.size(bits) == 1 else ""
            raise _fail(node, f"{width}activation quantizer after the input; bcnn maps 1-bit activations "
                              "(BipolarQuant) in hidden layers")
        from qonnx.custom_op.general.intquant import int_quant

        scale, zeropt = (self.g.static(n, node) for n in node.input[1:3])
        if np.size(scale) != 1 or np.size(zeropt) != 1 or np.size(bits) != 1:
            raise _fail(node, "input quantizer must be per-tensor (scalar scale, zero point, bit width)")
        a = _attrs(node)
        rounding = a.get("rounding_mode", b"ROUND")
        rounding = rounding.decode() if isinstance(rounding, bytes) else rounding
        c = self.s.chw[0]
        x = (np.arange(256, dtype=np.float32) / np.float32(255)).reshape(1, 1, 1, 256)
        x = np.ascontiguousarray(np.broadcast_to(x, (1, c, 1, 256)))
        for op, const, const_first in s.input_ops:  # float32, in graph order, like the executor
            lhs, rhs = (const, x) if const_first else (x, const)
            x = {"Mul": np.multiply, "Add": np.add, "Sub": np.subtract, "Div": np.divide}[op](lhs, rhs)
            x = np.asarray(x, dtype=np.float32)
        y = int_quant(x, scale, zeropt, bits, int(a.get("signed", 1)), int(a.get("narrow", 0)), rounding)
        ints = np.asarray(y, dtype=np.float64) / float(scale)
        lut = np.rint(ints)
        if np.abs(ints - lut).max() > 1e-6:
            raise _fail(node, "input quantizer output is not an integer multiple of its scale")
        s.lut = lut.reshape(c, 256).astype(np.int64)
        s.scale = float(scale)
        s.phase = "int"

    def _op_BipolarQuant(self, node: onnx.NodeProto, idx: int) -> None:
        s = self.s
        if s.phase != "acc" or idx != 0:
            raise _fail(node, f"a 1-bit activation must follow a layer's accumulators ({_PHASE[s.phase]}); "
                              "the input needs an 8-bit Quant")
        scale = self.g.static(node.input[1], node).astype(np.float64).reshape(-1)
        if np.any(scale <= 0) or np.any(scale != scale[0]):
            raise _fail(node, "activation scale must be one positive value per tensor")
        p = s.cur
        thresholds, ge = zip(*(_threshold(float(a), float(b), p.acc_lo, p.acc_hi)
                               for a, b in zip(p.a, p.b, strict=True)), strict=True)
        layer = p.layer
        layer.ge = np.array(ge, dtype=bool)
        layer.thresholds = np.array(thresholds, dtype=np.int64)
        if s.layers:  # binary layer: acc = 2·popcount − N has the parity of N; move t onto reachable values
            n, t = layer.fan_in, layer.thresholds
            off = np.where((t >= -n) & (t <= n), (t - n) % 2, 0)  # out-of-range (constant) ones stay
            layer.thresholds = t + np.where(layer.ge, off, -off)
        if p.post_pool_scale is not None:
            layer.pool_and = np.asarray(p.post_pool_scale < 0, dtype=bool)
        else:
            layer.pool_and = np.zeros(layer.out_ch, dtype=bool)
        s.layers.append(layer)
        s.names.append(p.node.name or p.node.output[0])
        s.cur, s.phase, s.scale = None, "bits", float(scale[0])

    def _pool_size(self, node: onnx.NodeProto) -> int:
        a = _attrs(node)
        k = list(a.get("kernel_shape", []))
        if len(k) != 2 or k[0] != k[1]:
            raise _fail(node, f"kernel {k} not supported; bcnn maps square max-pooling")
        if list(a.get("strides", k)) != k:
            raise _fail(node, f"strides {list(a.get('strides'))} differ from the kernel {k}")
        if any(a.get("pads", [0])) or any(d != 1 for d in a.get("dilations", [1])):
            raise _fail(node, "padded or dilated max-pooling not supported")
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
            raise _fail(node, "auto_pad not supported")
        c, h, w = self.s.chw
        if self.s.flat or h % k[0] or w % k[0]:
            raise _fail(node, f"pool {k[0]} does not divide the {h}x{w} map")
        return int(k[0])

    def _op_MaxPool(self, node: onnx.NodeProto, idx: int) -> None:
        s = self.s
        if s.phase == "acc":
            p = s.cur
            if p.pool_node is not None:
                raise _fail(node, "a second max-pool in the same layer")
            if s.flat:
                raise _fail(node, "max-pool after a fully connected layer")
            p.layer.pool = k = self._pool_size(node)
            p.pool_node, p.post_pool_scale = node, np.ones(p.layer.out_ch)
        elif s.phase == "bits" and s.layers and s.pad == 0 and not s.flat:
            last = s.layers[-1]
            if last.pool != 1:
                raise _fail(node, "a second max-pool in the same layer")
            last.pool = k = self._pool_size(node)
            last.pool_and = np.zeros(last.out_ch, dtype=bool)
        else:
            raise _fail(node, f"max-pool must follow a layer or its 1-bit activation ({_PHASE[s.phase]})")
        c, h, w = s.chw
        s.chw = (c, h // k, w // k)

    def _op_Pad(self, node: onnx.NodeProto, idx: int) -> None:
        s = self.s
        a = _attrs(node)
        mode = a.get("mode", b"constant")
        if mode not in (b"constant", "constant"):
            raise _fail(node, f"pad mode {mode!r} not supported; bcnn pads with a constant")
        pads = a.get("pads") if len(node.input) < 2 or not node.input[1] else self.g.static(node.input[1], node)
        value = float(a.get("value", 0.0))
        if len(node.input) > 2 and node.input[2]:
            value = float(self.g.static(node.input[2], node).reshape(-1)[0])
        if len(node.input) > 3 and node.input[3]:
            raise _fail(node, "Pad with an axes input not supported")
        pads = [int(v) for v in np.asarray(pads).reshape(-1)]
        spatial = {pads[i] for i in (2, 3, 6, 7)} if len(pads) == 8 else set()
        if s.flat or len(spatial) != 1 or any(pads[i] for i in (0, 1, 4, 5)):
            raise _fail(node, f"pads {pads} not supported; bcnn pads H and W equally on all sides")
        p = pads[2]
        if s.phase == "int":
            if value != 0:
                raise _fail(node, f"the first layer pads its integer input with 0, not {value}")
            s.pad_bit = 0
        elif s.phase == "bits":
            if value not in (s.scale, -s.scale):
                raise _fail(node, f"pad value {value} is not ±{s.scale}: a binary layer pads with a constant "
                                  "±1 (zero padding is not representable in 1 bit)")
            if s.pad and s.pad_bit != int(value > 0):
                raise _fail(node, "two pads with different values")
            s.pad_bit = int(value > 0)
        else:
            raise _fail(node, f"padding must come right before a convolution ({_PHASE[s.phase]})")
        s.pad += p
        c, h, w = s.chw
        s.chw = (c, h + 2 * p, w + 2 * p)

    def _flatten(self, node: onnx.NodeProto) -> None:
        s = self.s
        if s.phase not in ("int", "bits") or s.pad:
            raise _fail(node, f"flatten must follow an activation ({_PHASE[s.phase]})")
        s.flat = True

    def _op_Flatten(self, node: onnx.NodeProto, idx: int) -> None:
        if int(_attrs(node).get("axis", 1)) != 1:
            raise _fail(node, "only axis=1 is supported")
        self._flatten(node)

    def _op_Reshape(self, node: onnx.NodeProto, idx: int) -> None:
        target = [int(v) for v in self.g.static(node.input[1], node).reshape(-1)]
        c, h, w = self.s.chw
        n = c * h * w
        if len(target) != 2 or target[1] not in (n, -1):
            raise _fail(node, f"reshape to {target} not supported; bcnn flattens (N, C, H, W) to (N, {n})")
        self._flatten(node)

    def _new_layer(self, node: onnx.NodeProto, w: np.ndarray, pad: int, bias: np.ndarray | None,
                   alpha: float = 1.0) -> None:
        """Start a layer on the current tensor. ``w``: ±scale weights (out, k, k, in) in IR order;
        ``pad``: padding beyond what Pad nodes already added (pending in ``s.pad``)."""
        s = self.s
        out, kernel = w.shape[0], w.shape[1]
        mag = np.abs(w.reshape(out, -1)).astype(np.float64)
        if np.any(mag != mag[:, :1]) or np.any(mag[:, 0] <= 0):
            raise _fail(node, "weight scale must be positive and the same within an output channel")
        c, h, wd = s.chw
        in_shape = (h - 2 * s.pad, wd - 2 * s.pad, c)  # the tensor as the previous layer wrote it
        layer = Layer(name=f"{'fc' if s.flat else 'conv'}{len(s.layers)}", in_shape=in_shape, kernel=kernel,
                      pad=s.pad + pad, weights=w > 0, pad_bit=s.pad_bit if s.phase == "bits" else 0)
        b = np.zeros(out) if bias is None else bias.astype(np.float64).reshape(-1)
        if b.size != out:
            raise _fail(node, f"bias has {b.size} entries for {out} outputs")
        n = layer.fan_in
        big = int(np.abs(s.lut).max()) if s.phase == "int" else 1
        oh, ow = layer.conv_shape
        if oh < 1 or ow < 1:
            raise _fail(node, f"kernel {kernel} does not fit the {h}x{wd} input")
        s.cur = _Pending(node=node, layer=layer, a=s.scale * mag[:, 0] * alpha, b=b, acc_lo=-big * n,
                         acc_hi=big * n)
        # a convolution whose kernel covers its whole (unpadded) input gives a 1x1 map, still a 4-D tensor
        # that may be padded, convolved or pooled; only Gemm/MatMul (flat input) give a flat output
        s.chw, s.pad, s.pad_bit, s.phase = (out, oh, ow), 0, 0, "acc"

    def _op_Conv(self, node: onnx.NodeProto, idx: int) -> None:
        s = self.s
        if idx != 0:
            raise _fail(node, "the activation must be the first input")
        if s.phase not in ("int", "bits") or s.flat:
            raise _fail(node, f"a convolution must follow the input quantizer or a 1-bit activation "
                              f"({_PHASE[s.phase]})")
        a = _attrs(node)
        w = self.g.weight(node.input[1], node)
        if w.ndim != 4 or w.shape[2] != w.shape[3]:
            raise _fail(node, f"weights {list(w.shape)} not supported; bcnn maps square 2-D kernels")
        if any(v != 1 for v in a.get("strides", [1, 1])):
            raise _fail(node, f"stride {list(a['strides'])} not supported — bcnn maps stride-1 convolutions")
        if any(v != 1 for v in a.get("dilations", [1, 1])):
            raise _fail(node, f"dilation {list(a['dilations'])} not supported")
        if int(a.get("group", 1)) != 1:
            raise _fail(node, f"groups={a['group']} not supported — bcnn maps dense convolutions")
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
            raise _fail(node, "auto_pad SAME not supported; use explicit pads")
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if len(set(pads)) > 1:
            raise _fail(node, f"asymmetric pads {pads} not supported")
        pad = int(pads[0]) if pads else 0
        if pad and s.phase == "bits":
            raise _fail(node, f"zero padding ({pad}) in a binary layer; zero is not a 1-bit value — pad with a "
                              "constant ±1 (e.g. nn.ConstantPad2d(p, -1.0)) and use padding=0")
        if w.shape[1] != s.chw[0]:
            raise _fail(node, f"weights expect {w.shape[1]} input channels, the tensor has {s.chw[0]}")
        bias = self.g.static(node.input[2], node) if len(node.input) > 2 and node.input[2] else None
        self._new_layer(node, np.transpose(w, (0, 2, 3, 1)), pad, bias)

    def _fc(self, node: onnx.NodeProto, w: np.ndarray, bias: np.ndarray | None, alpha: float) -> None:
        """``w``: (out, features) ±scale weights in ONNX's CHW flatten order."""
        s = self.s
        c, h, wd = s.chw
        if not s.flat:
            raise _fail(node, "a fully connected layer needs a flattened (N, features) input")
        if w.shape[1] != c * h * wd:
            raise _fail(node, f"weights expect {w.shape[1]} inputs, the tensor has {c * h * wd}")
        if h != wd:
            raise _fail(node, f"a fully connected layer over a non-square {h}x{wd} map is not supported")
        w4 = w.reshape(w.shape[0], c, h, wd).transpose(0, 2, 3, 1)  # CHW flatten -> HWC kernel
        self._new_layer(node, w4, 0, bias, alpha)

    def _op_Gemm(self, node: onnx.NodeProto, idx: int) -> None:
        if idx != 0 or self.s.phase not in ("int", "bits"):
            raise _fail(node, f"a fully connected layer must follow a 1-bit activation ({_PHASE[self.s.phase]})")
        a = _attrs(node)
        if int(a.get("transA", 0)):
            raise _fail(node, "transA not supported")
        w = self.g.weight(node.input[1], node)
        w = w if int(a.get("transB", 0)) else w.T
        bias = None
        if len(node.input) > 2 and node.input[2]:
            bias = self.g.static(node.input[2], node).astype(np.float64) * float(a.get("beta", 1.0))
            bias = np.broadcast_to(bias.reshape(-1), (w.shape[0],)).copy() if bias.size in (1, w.shape[0]) else bias
        self._fc(node, w, bias, float(a.get("alpha", 1.0)))

    def _op_MatMul(self, node: onnx.NodeProto, idx: int) -> None:
        if idx != 0 or self.s.phase not in ("int", "bits"):
            raise _fail(node, f"a fully connected layer must follow a 1-bit activation ({_PHASE[self.s.phase]})")
        w = self.g.weight(node.input[1], node)
        if w.ndim != 2:
            raise _fail(node, f"weights of rank {w.ndim} not supported")
        self._fc(node, w.T, None, 1.0)

    # ------------------------------------------------------------------------------------------ end

    def _finish(self, input_hwc: tuple[int, int, int]) -> Net:
        s = self.s
        if s.phase != "acc":
            raise BcnnError(f"{self.path}: the graph output must be the last layer's accumulators (with an "
                            f"optional affine), but it ends {_PHASE[s.phase]}")
        p = s.cur
        if p.pool_node is not None:
            raise _fail(p.pool_node, "the last layer cannot pool; its accumulators are the output")
        if p.layer.conv_shape != (1, 1):
            raise _fail(p.node, f"the last layer outputs a {p.layer.conv_shape} map; bcnn needs one vector")
        s.layers.append(p.layer)
        s.names.append(p.node.name or p.node.output[0])
        net = Net(input_shape=input_hwc, input_lut=s.lut, layers=s.layers,
                  output_scale=np.asarray(p.a, dtype=np.float64), output_bias=np.asarray(p.b, dtype=np.float64),
                  meta={"source": self.path.name, "onnx_layers": s.names})
        net.validate()
        return net


def compile_onnx(path: str | os.PathLike) -> Net:
    """Compile a QONNX model file (Brevitas ``export_qonnx`` output) to the integer IR."""
    path = Path(path)
    model = _load(path)
    try:
        return _Compiler(model, path).run()
    except BcnnError:
        raise
    except Exception as e:  # a malformed graph the checks above did not anticipate
        msg = str(e).splitlines()[0] if str(e) else ""
        raise BcnnError(f"{path}: cannot compile ({e.__class__.__name__}: {msg})") from e
