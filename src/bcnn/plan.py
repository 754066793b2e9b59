"""Folding plan: per-layer PE (neurons in parallel) and SIMD (inputs per neuron per cycle), and the cycle
model of the generated RTL (bcnn.rtl), so that the plan's II and latency are what simulation measures.

Folding of layer i (see ``bcnn/rtl/units``): the sliding-window unit cuts each output pixel's window into
``sf = K·K·C_in / SIMD`` chunks (SIMD divides C_in, so a chunk lies within one input pixel) and repeats
it for ``nf = C_out / PE`` neuron folds, one chunk per cycle, so the layer needs

    cycles_i = OH·OW · nf · sf          per image (OH, OW before pooling).

The pipeline's initiation interval is the slowest stage: ``ii = max(cycles_i, H·W of the input stream
(one pixel per cycle), n_outputs (one output per cycle))``. The ping-pong frame buffers let every engine
work on a different image.

Latency (first pixel accepted -> last output beat) is computed by ``_latency`` with a per-pixel recurrence
that mirrors the RTL's register stages; the delays are named constants below, each tied to a unit.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from bcnn.errors import BcnnError
from bcnn.ir import Net

FORMAT_VERSION = 1

DEVICES: dict[str, dict[str, int]] = {
    # LUT, FF, 36 Kb block RAM, DSP slices (vendor data sheets)
    "xc7vx690t": {"lut": 433_200, "ff": 866_400, "bram36": 1_470, "dsp": 3_600},
    "xc7z020": {"lut": 53_200, "ff": 106_400, "bram36": 140, "dsp": 220},
    "xc7z045": {"lut": 218_600, "ff": 437_200, "bram36": 545, "dsp": 900},
    "xczu3eg": {"lut": 70_560, "ff": 141_120, "bram36": 216, "dsp": 360},
    "xcvu9p": {"lut": 1_182_240, "ff": 2_364_480, "bram36": 2_160, "dsp": 6_840},
}

# Register stages of the RTL, in clock edges (see the unit files):
MAP_DELAY = 1  # bcnn_input_map: LUT read register between the input port and layer 0's frame buffer
MVTU_DELAY = 2  # bcnn_swu read register -> bcnn_mvtu stage A; stage A -> output register (fold result)
COLLECT_DELAY = 1  # bcnn_collect: only present when nf > 1
POOL_DELAY = 1  # bcnn_pool: only present when pool > 1
SERIAL_DELAY = 1  # bcnn_serialize: fold word written, first beat leaves on the next edge

# Defaults for a plain legal folding; the planner proper (balancing to a device) comes later.
DEFAULT_MAX_PE = 8
DEFAULT_MAX_SIMD = 32


def _largest_divisor(n: int, limit: int) -> int:
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def net_fingerprint(net: Net) -> str:
    """A short hash of the network's structure (not its weights): plans are valid per structure."""
    desc = [list(net.input_shape)] + [
        [layer.name, list(layer.in_shape), layer.kernel, layer.pad, layer.pool, layer.out_ch]
        for layer in net.layers
    ]
    return hashlib.sha256(json.dumps(desc).encode()).hexdigest()[:16]


def check_folding(net: Net, i: int, pe: int, simd: int) -> None:
    """BcnnError unless PE and SIMD are a legal folding of layer i for the RTL."""
    layer = net.layers[i]
    where = f"layer {i} ({layer.name})"
    if not isinstance(pe, int) or pe < 1 or layer.out_ch % pe:
        raise BcnnError(f"{where}: PE {pe} does not divide its {layer.out_ch} output channels")
    if not isinstance(simd, int) or simd < 1 or layer.in_ch % simd:
        raise BcnnError(f"{where}: SIMD {simd} does not divide its {layer.in_ch} input channels")
    if layer.pad > layer.kernel - 1:
        raise BcnnError(f"{where}: padding {layer.pad} >= kernel {layer.kernel} is not supported by the RTL")


def make_plan(net: Net, device: str = "xc7vx690t", clock_mhz: float = 100.0,
              pe: list[int] | None = None, simd: list[int] | None = None) -> dict:
    """A legal folding for ``net`` with its cycle model; ``pe``/``simd`` override the defaults per layer."""
    net.validate()
    if device not in DEVICES:
        raise BcnnError(f"unknown device {device!r}; known: {', '.join(sorted(DEVICES))}")
    if clock_mhz <= 0:
        raise BcnnError(f"clock must be positive, got {clock_mhz} MHz")
    n = len(net.layers)
    for name, arr in (("pe", pe), ("simd", simd)):
        if arr is not None and len(arr) != n:
            raise BcnnError(f"{name} has {len(arr)} entries, the network has {n} layers")
    pes = [int(p) for p in pe] if pe is not None else [_largest_divisor(la.out_ch, DEFAULT_MAX_PE)
                                                       for la in net.layers]
    simds = [int(s) for s in simd] if simd is not None else [_largest_divisor(la.in_ch, DEFAULT_MAX_SIMD)
                                                             for la in net.layers]
    for i in range(n):
        check_folding(net, i, pes[i], simds[i])
    return _complete(net, device, float(clock_mhz), pes, simds)


def _complete(net: Net, device: str, clock_mhz: float, pes: list[int], simds: list[int]) -> dict:
    layers = []
    for i, (layer, p, s) in enumerate(zip(net.layers, pes, simds, strict=True)):
        oh, ow = layer.conv_shape
        nf, sf = layer.out_ch // p, layer.fan_in // s
        h, w, c = layer.in_shape
        layers.append({
            "name": layer.name,
            "pe": p,
            "simd": s,
            "nf": nf,
            "sf": sf,
            "cycles": oh * ow * nf * sf,
            "macs": layer.macs,
            "weight_bits": layer.out_ch * layer.fan_in,
            # two frames of the layer's input; layer 0 stores its mapped integers
            "buffer_bits": 2 * h * w * c * (net.input_bits if i == 0 else 1),
        })
    h, w, _ = net.input_shape
    ii = max([la["cycles"] for la in layers] + [h * w, net.n_outputs])
    for la in layers:
        la["ii_share"] = round(la["cycles"] / ii, 4)
    latency = _latency(net, pes, simds)
    fps = clock_mhz * 1e6 / ii
    return {
        "format_version": FORMAT_VERSION,
        "net": net_fingerprint(net),
        "device": {"name": device, **DEVICES[device]},
        "clock_mhz": clock_mhz,
        "layers": layers,
        "ii_cycles": ii,
        "latency_cycles": latency,
        "latency_us": latency / clock_mhz,
        "fps": fps,
        "macs": net.macs,
        "tops": 2 * net.macs * fps / 1e12,
    }


def _latency(net: Net, pes: list[int], simds: list[int]) -> int:
    """Clock edges from the first input pixel's acceptance to the last output beat, one image alone.

    ``arrive[p]`` is the edge at which pixel p (raster order) is written into the layer's frame buffer.
    The reader may issue a window chunk on the edge after the row it needs last is complete, one chunk
    per edge; nothing stalls downstream when the pipeline is otherwise empty.
    """
    h, w, _ = net.input_shape
    arrive = [p + MAP_DELAY for p in range(h * w)]  # pixel p enters at edge p
    for i, layer in enumerate(net.layers):
        h, w, _ = layer.in_shape
        oh, ow = layer.conv_shape
        nf, sf = layer.out_ch // pes[i], layer.fan_in // simds[i]
        beats = nf * sf
        row_done = [arrive[r * w + w - 1] for r in range(h)]
        look = layer.kernel - 1 - layer.pad
        free = 0  # first edge the reader may issue the next pixel's first chunk
        starts = []
        for oy in range(oh):
            ready = row_done[min(oy + look, h - 1)] + 1
            for _ in range(ow):
                start = max(free, ready)
                starts.append(start)
                free = start + beats
        if layer.is_last:
            # fold f's result register loads MVTU_DELAY edges after its last chunk issues; the
            # serializer takes it one edge later and sends one lane per edge.
            out = -1
            for start in starts:
                for f in range(nf):
                    word = start + (f + 1) * sf - 1 + MVTU_DELAY + 1
                    out = max(out + 1, word + SERIAL_DELAY) + pes[i] - 1
            return out
        # pixel q's result is in the MVTU (nf == 1) or collector output register at this edge
        done = [s + beats - 1 + MVTU_DELAY + (COLLECT_DELAY if nf > 1 else 0) for s in starts]
        p = layer.pool
        if p == 1:
            arrive = [d + 1 for d in done]
        else:
            ph, pw = oh // p, ow // p
            arrive = [done[(py * p + p - 1) * ow + px * p + p - 1] + POOL_DELAY + 1
                      for py in range(ph) for px in range(pw)]
    raise AssertionError("unreachable: the last layer returns")


def save_plan(plan: dict, path: str | os.PathLike) -> None:
    """Write ``plan`` as JSON atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(plan, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_plan(path: str | os.PathLike, net: Net) -> dict:
    """Read a plan and check it against ``net``: BcnnError if it belongs to another network or is illegal."""
    path = Path(path)
    try:
        plan = json.loads(path.read_text())
    except FileNotFoundError:
        raise BcnnError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:
        raise BcnnError(f"{path}: not a plan file ({e.__class__.__name__}: {e})") from None
    if not isinstance(plan, dict) or plan.get("format_version") != FORMAT_VERSION:
        raise BcnnError(f"{path}: not a bcnn plan of format version {FORMAT_VERSION}")
    layers = plan.get("layers")
    if not isinstance(layers, list) or len(layers) != len(net.layers):
        raise BcnnError(f"{path}: plan has {len(layers) if isinstance(layers, list) else 'no'} layers, "
                        f"the network has {len(net.layers)}")
    if plan.get("net") not in (None, net_fingerprint(net)):
        raise BcnnError(f"{path}: plan was made for a network of another structure")
    for i, (la, layer) in enumerate(zip(layers, net.layers, strict=True)):
        if la.get("name") != layer.name:
            raise BcnnError(f"{path}: plan layer {i} is {la.get('name')!r}, the network's is {layer.name!r}")
        try:
            check_folding(net, i, la["pe"], la["simd"])
        except KeyError as e:
            raise BcnnError(f"{path}: plan layer {i} lacks {e}") from None
        except BcnnError as e:
            raise BcnnError(f"{path}: {e}") from None
    return plan
