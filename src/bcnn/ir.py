"""The integer IR: a binary CNN as packed ±1 weights and integer thresholds.

Every layer is one mechanism, a K×K "convolution" over an H×W×C bit map in HWC order:

* a convolution layer is exactly that (stride 1, optional padding);
* a fully connected layer is the same with K = H = W and no padding (one output pixel), so its
  weights are ordered like an HWC flatten of its input.

Layer ``i`` computes, per output pixel and output channel ``c``::

    acc[c] = Σ x·w          (x, w ∈ {-1, +1}; layer 0: x is the integer pixel from ``input_lut``)
    bit[c] = acc[c] >= thresholds[c]   if ge[c]   else   acc[c] <= thresholds[c]
    bit    = max-pool over ``pool``×``pool`` windows as OR (``pool_and[c]`` False) or AND (True)

The last layer has no thresholds: its integer ``acc`` is the network output, and the host computes
``logits = acc * output_scale + output_bias`` in float64 and takes the argmax.

A bit b stands for +1 when b = 1 and for -1 when b = 0. Binary layers pad with the constant bit
``pad_bit``; layer 0 pads its integer input with 0.

The file format (``.bcnn``) is an ``.npz`` archive holding a JSON header and the arrays, written atomically.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bcnn.errors import BcnnError
from bcnn.fileio import atomic_write

FORMAT_VERSION = 1
MAGIC = "bcnn-ir"


@dataclass
class Layer:
    """One binary matrix layer (convolution or fully connected) with its threshold and pooling."""

    name: str
    in_shape: tuple[int, int, int]  # (H, W, C) of the input bit map (or integer map for layer 0)
    kernel: int
    pad: int
    weights: np.ndarray  # bool (out_ch, kernel, kernel, in_ch); True = +1
    thresholds: np.ndarray | None = None  # int64 (out_ch,); None for the last layer
    ge: np.ndarray | None = None  # bool (out_ch,); True: acc >= t, False: acc <= t
    pool: int = 1  # max-pool window and stride; 1 = no pooling
    pool_and: np.ndarray | None = None  # bool (out_ch,); True: pool with AND, False: OR
    pad_bit: int = 0  # constant bit padded into a binary layer's input (1 = +1, 0 = -1)

    @property
    def in_ch(self) -> int:
        return self.in_shape[2]

    @property
    def out_ch(self) -> int:
        return int(self.weights.shape[0])

    @property
    def conv_shape(self) -> tuple[int, int]:
        """(OH, OW) of the accumulators, before pooling."""
        h, w, _ = self.in_shape
        return h + 2 * self.pad - self.kernel + 1, w + 2 * self.pad - self.kernel + 1

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the layer's output, after pooling."""
        oh, ow = self.conv_shape
        return oh // self.pool, ow // self.pool, self.out_ch

    @property
    def fan_in(self) -> int:
        """Inputs per output (K·K·C): the N in acc = 2·popcount − N."""
        return self.kernel * self.kernel * self.in_ch

    @property
    def is_fully_connected(self) -> bool:
        h, w, _ = self.in_shape
        return self.kernel == h == w and self.pad == 0

    @property
    def is_last(self) -> bool:
        return self.thresholds is None

    @property
    def macs(self) -> int:
        oh, ow = self.conv_shape
        return oh * ow * self.out_ch * self.fan_in


@dataclass
class Net:
    """A whole network: input mapping, layers, and the host-side output affine."""

    input_shape: tuple[int, int, int]  # (H, W, C) of the uint8 image
    input_lut: np.ndarray  # int64 (C, 256): pixel value -> integer fed to layer 0
    layers: list[Layer]
    output_scale: np.ndarray  # float64 (n_out,)
    output_bias: np.ndarray  # float64 (n_out,)
    classes: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)  # free-form provenance: source model, accuracy, ...

    @property
    def input_bits(self) -> int:
        """Width of a signed integer that holds every input_lut value, at least 2: the hardware's first
        layer takes integers, and a 1-bit element would select its binary (XNOR) datapath instead."""
        return max(2, signed_bits(int(self.input_lut.min()), int(self.input_lut.max())))

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].out_ch

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def acc_range(self, index: int) -> tuple[int, int]:
        """Smallest and largest accumulator that layer ``index`` can produce."""
        n = self.layers[index].fan_in
        if index == 0:
            big = int(np.abs(self.input_lut).max())
            return -big * n, big * n
        return -n, n

    def validate(self) -> None:
        """Raise BcnnError unless shapes chain and every array has its documented shape and dtype."""
        if not self.layers:
            raise BcnnError("network has no layers")
        c = self.input_shape[2]
        if self.input_lut.shape != (c, 256):
            raise BcnnError(f"input_lut has shape {self.input_lut.shape}, expected ({c}, 256)")
        shape = self.input_shape
        for i, layer in enumerate(self.layers):
            where = f"layer {i} ({layer.name})"
            if tuple(layer.in_shape) != tuple(shape):
                raise BcnnError(f"{where}: input shape {layer.in_shape} does not match the previous output {shape}")
            k, ci = layer.kernel, layer.in_ch
            if layer.weights.dtype != bool or layer.weights.shape[1:] != (k, k, ci):
                raise BcnnError(f"{where}: weights must be bool (out, {k}, {k}, {ci}), got "
                                f"{layer.weights.dtype} {layer.weights.shape}")
            oh, ow = layer.conv_shape
            if oh < 1 or ow < 1:
                raise BcnnError(f"{where}: kernel {k} with pad {layer.pad} does not fit input {layer.in_shape}")
            last = i == len(self.layers) - 1
            if last != layer.is_last:
                raise BcnnError(f"{where}: only the last layer has no thresholds")
            if not layer.is_last:
                for name in ("thresholds", "ge", "pool_and"):
                    arr = getattr(layer, name)
                    if arr is None or arr.shape != (layer.out_ch,):
                        raise BcnnError(f"{where}: {name} must have shape ({layer.out_ch},)")
            elif layer.pool != 1:
                raise BcnnError(f"{where}: the last layer cannot pool")
            if layer.pool < 1 or oh % layer.pool or ow % layer.pool:
                raise BcnnError(f"{where}: pool {layer.pool} does not divide the {oh}x{ow} output")
            shape = layer.out_shape
        if self.output_scale.shape != (self.n_outputs,) or self.output_bias.shape != (self.n_outputs,):
            raise BcnnError("output_scale and output_bias must have one entry per output")


def signed_bits(lo: int, hi: int) -> int:
    """Bits of the narrowest two's-complement integer holding every value in [lo, hi]."""
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits


# ---------------------------------------------------------------------------------------------- file format

_LAYER_ARRAYS = ("thresholds", "ge", "pool_and")


def save(net: Net, path: str | os.PathLike) -> None:
    """Write ``net`` to ``path`` atomically (a reader never sees a half-written file)."""
    net.validate()
    header = {
        "magic": MAGIC,
        "format_version": FORMAT_VERSION,
        "input_shape": list(net.input_shape),
        "classes": list(net.classes),
        "meta": net.meta,
        "layers": [
            {
                "name": layer.name,
                "in_shape": list(layer.in_shape),
                "kernel": layer.kernel,
                "pad": layer.pad,
                "pad_bit": layer.pad_bit,
                "pool": layer.pool,
                "out_ch": layer.out_ch,
            }
            for layer in net.layers
        ],
    }
    arrays: dict[str, np.ndarray] = {
        "header": np.array(json.dumps(header)),
        "input_lut": net.input_lut.astype(np.int64),
        "output_scale": net.output_scale.astype(np.float64),
        "output_bias": net.output_bias.astype(np.float64),
    }
    for i, layer in enumerate(net.layers):
        arrays[f"l{i}_weights"] = np.packbits(layer.weights.reshape(layer.out_ch, -1), axis=1)
        if not layer.is_last:
            arrays[f"l{i}_thresholds"] = layer.thresholds.astype(np.int64)
            arrays[f"l{i}_ge"] = layer.ge.astype(bool)
            arrays[f"l{i}_pool_and"] = layer.pool_and.astype(bool)
    with atomic_write(path) as f:
        np.savez_compressed(f, **arrays)


def load(path: str | os.PathLike) -> Net:
    """Read a ``.bcnn`` file; BcnnError with the reason if it is missing, corrupt or of another version."""
    path = Path(path)
    if path.is_dir():
        raise BcnnError(f"{path}: is a folder; expected a .bcnn file (`bcnn compile` writes one)")
    if not path.is_file():
        raise BcnnError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        header = json.loads(str(arrays["header"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        # numpy's message for a file that is no archive suggests loading pickles: not advice to pass on
        why = "not a .bcnn archive" if "pickle" in str(e) else f"{e.__class__.__name__}: {e}"
        raise BcnnError(f"{path}: not a bcnn IR file ({why}; `bcnn compile` writes one)") from None
    if header.get("magic") != MAGIC:
        raise BcnnError(f"{path}: not a bcnn IR file")
    if header.get("format_version") != FORMAT_VERSION:
        raise BcnnError(f"{path}: IR format version {header.get('format_version')}, this bcnn reads "
                        f"version {FORMAT_VERSION}; recompile the model with `bcnn compile`")
    try:
        layers = []
        for i, h in enumerate(header["layers"]):
            k, ci = h["kernel"], h["in_shape"][2]
            n = k * k * ci
            bits = np.unpackbits(arrays[f"l{i}_weights"], axis=1, count=n).astype(bool)
            layer = Layer(
                name=h["name"],
                in_shape=tuple(h["in_shape"]),
                kernel=k,
                pad=h["pad"],
                pad_bit=h["pad_bit"],
                pool=h["pool"],
                weights=bits.reshape(h["out_ch"], k, k, ci),
            )
            if f"l{i}_thresholds" in arrays:
                for name in _LAYER_ARRAYS:
                    setattr(layer, name, arrays[f"l{i}_{name}"])
            layers.append(layer)
        net = Net(
            input_shape=tuple(header["input_shape"]),
            input_lut=arrays["input_lut"],
            layers=layers,
            output_scale=arrays["output_scale"],
            output_bias=arrays["output_bias"],
            classes=list(header.get("classes", [])),
            meta=dict(header.get("meta", {})),
        )
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise BcnnError(f"{path}: corrupt bcnn IR file ({e.__class__.__name__}: {e})") from None
    net.validate()
    return net


def bundled_models_dir() -> Path:
    return Path(__file__).parent / "bundled"


def bundled_sample() -> Path:
    """The CIFAR-10 test images every command uses without --data (benchmarks/bundle_sample.py writes them)."""
    return bundled_models_dir() / "cifar10_test_300.npz"


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A path to a ``.bcnn`` file, or the name of a model bundled with the package (``tiny``, ...)."""
    p = Path(name_or_path)
    if p.exists():
        return p
    bundled = bundled_models_dir() / f"{name_or_path}.bcnn"
    if bundled.is_file():
        return bundled
    names = sorted(q.stem for q in bundled_models_dir().glob("*.bcnn"))
    raise BcnnError(f"{name_or_path}: no such file, and not a bundled model (bundled: {', '.join(names) or 'none'})")


def load_net(name_or_path: str | os.PathLike) -> Net:
    return load(resolve(name_or_path))
