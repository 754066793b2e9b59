"""Folding plan: per-layer PE (neurons in parallel) and SIMD (inputs per neuron per cycle), and the cycle
model of the generated RTL (bcnn.rtl), so that the plan's II and latency are what simulation measures.

Folding of layer i (see ``bcnn/rtl/units``): the sliding-window unit cuts each output pixel's window into
``sf = K·K·C_in / SIMD`` chunks (a chunk is part of one input pixel, several pixels of a kernel row, or
several kernel rows: see ``chunk_shape``) and repeats it for ``nf = C_out / PE`` neuron folds, one chunk
per cycle, so the layer needs

    cycles_i = OH·OW · nf · sf          per image (OH, OW before pooling).

The pipeline's initiation interval is the slowest stage: ``ii = max(cycles_i, H·W of the input stream
(one pixel per cycle), n_outputs (one output per cycle))``. The ping-pong frame buffers let every engine
work on a different image.

The planner proper (choosing PE, SIMD and the weight memory style per layer) is ``bcnn.planner``; the
resource model is ``bcnn.resources`` and the power model ``bcnn.power``.

Latency (first pixel accepted -> last output beat) is computed by ``_latency`` with a per-pixel recurrence
that mirrors the RTL's register stages; the delays are named constants below, each tied to a unit.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from bcnn.errors import BcnnError
from bcnn.fileio import read_json, write_json
from bcnn.ir import Layer, Net

FORMAT_VERSION = 1

# Register stages of the RTL, in clock edges (see the unit files):
MAP_DELAY = 1  # bcnn_input_map: LUT read register between the input port and layer 0's frame buffer
MVTU_DELAY = 2  # bcnn_swu read register -> bcnn_mvtu stage A; stage A -> output register (fold result)
COLLECT_DELAY = 1  # bcnn_collect: only present when nf > 1
POOL_DELAY = 1  # bcnn_pool: only present when pool > 1
SERIAL_DELAY = 1  # bcnn_serialize: fold word written, first beat leaves on the next edge

MEM_STYLES = ("logic", "lutram", "bram")  # where a layer's weights live (bcnn_mvtu W_STYLE 3, 2, 1)
W_STYLE_CODE = {"auto": 0, "bram": 1, "lutram": 2, "logic": 3}


def _device(name: str) -> dict:
    from bcnn.devices import get_device

    return get_device(name)


class _Devices(dict):
    """``DEVICES[name]`` -> {lut, ff, bram36, dsp} from the device files (kept for older callers)."""

    def __missing__(self, key):
        d = _device(key)
        return {k: d[k] for k in ("lut", "ff", "bram36", "dsp")}

    def __contains__(self, key):
        try:
            _device(key)
            return True
        except BcnnError:
            return False


DEVICES = _Devices()


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _largest_divisor(n: int, limit: int) -> int:
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def chunk_shape(layer: Layer, simd: int) -> tuple[int, int, int] | None:
    """(BH, BW, CS) of a window chunk of ``simd`` elements (see bcnn_swu), or None if illegal.

    SIMD divides C (CS = C/SIMD chunks per pixel); or SIMD = m·C with m dividing K (m pixels of a kernel
    row); or SIMD = m·K·C with m dividing K (m whole kernel rows)."""
    c, k = layer.in_ch, layer.kernel
    if not isinstance(simd, int) or simd < 1:
        return None
    if c % simd == 0:
        return 1, 1, c // simd
    if simd % c:
        return None
    m = simd // c
    if m <= k and k % m == 0:
        return 1, m, 1
    if m % k == 0 and k % (m // k) == 0:
        return m // k, k, 1
    return None


def legal_simds(layer: Layer) -> list[int]:
    """Every SIMD the RTL accepts for ``layer``, ascending."""
    c, k = layer.in_ch, layer.kernel
    out = set(divisors(c)) | {m * c for m in divisors(k)} | {m * k * c for m in divisors(k)}
    return sorted(s for s in out if chunk_shape(layer, s) is not None)


def net_fingerprint(net: Net) -> str:
    """A short hash of the network's structure (not its weights): plans are valid per structure."""
    desc = [list(net.input_shape)] + [
        [layer.name, list(layer.in_shape), layer.kernel, layer.pad, layer.pool, layer.out_ch]
        for layer in net.layers
    ]
    return hashlib.sha256(json.dumps(desc).encode()).hexdigest()[:16]


def check_folding(net: Net, i: int, pe: int, simd: int, mem: str | None = None) -> None:
    """BcnnError unless PE, SIMD (and the weight memory style) are a legal folding of layer i for the RTL."""
    layer = net.layers[i]
    where = f"layer {i} ({layer.name})"
    if not isinstance(pe, int) or pe < 1 or layer.out_ch % pe:
        raise BcnnError(f"{where}: PE {pe} does not divide its {layer.out_ch} output channels")
    if chunk_shape(layer, simd) is None:
        raise BcnnError(f"{where}: SIMD {simd} is not a legal chunk of its {layer.kernel}x{layer.kernel}x"
                        f"{layer.in_ch} window (legal: {', '.join(map(str, legal_simds(layer)))})")
    if layer.pad > layer.kernel - 1:
        raise BcnnError(f"{where}: padding {layer.pad} >= kernel {layer.kernel} is not supported by the RTL")
    if mem is not None and mem not in MEM_STYLES:
        raise BcnnError(f"{where}: memory style {mem!r} is not one of {', '.join(MEM_STYLES)}")


# No FPGA fabric clocks a design faster (7-series block RAM tops out near 600 MHz); a clock above it is a
# typo (100000 for 100), and every figure planned at it would be fiction.
MAX_CLOCK_MHZ = 1000.0


def make_plan(net: Net, device: str = "xc7vx690t", clock_mhz: float = 100.0,
              pe: list[int] | None = None, simd: list[int] | None = None, mem: list[str] | None = None,
              target_fps: float | None = None, max_util: float = 0.8, planner: str = "bcnn") -> dict:
    """The folding of ``net`` for ``device`` at ``clock_mhz`` with its cycle, resource and power model.

    Without ``pe``/``simd`` the planner chooses every layer's PE, SIMD and weight memory style: the
    highest images/s whose estimated LUT, FF and BRAM stay within ``max_util`` of the part, or, with
    ``target_fps``, the fewest LUTs that meet it. ``planner="finn"`` applies FINN's heuristic instead
    (per layer raise SIMD through the divisors of C_in, then PE, until the layer meets the target).
    ``pe``/``simd``/``mem`` fix the folding (a missing ``mem`` takes the cheapest style per layer).
    """
    from bcnn import resources as res

    net.validate()
    dev = _device(device)
    if not 0 < clock_mhz <= MAX_CLOCK_MHZ:
        raise BcnnError(f"clock must be above 0 and at most {MAX_CLOCK_MHZ:,.0f} MHz, got {clock_mhz} MHz")
    if not 0 < max_util <= 1:
        raise BcnnError(f"max_util must be in (0, 1], got {max_util}")
    if target_fps is not None and target_fps <= 0:
        raise BcnnError(f"target fps must be positive, got {target_fps}")
    n = len(net.layers)
    for name, arr in (("pe", pe), ("simd", simd), ("mem", mem)):
        if arr is not None and len(arr) != n:
            raise BcnnError(f"{name} has {len(arr)} entries, the network has {n} layers")
    if pe is not None or simd is not None:
        # one given alone: the other takes the plain defaults (largest divisor up to 8 / 32)
        pes = [int(p) for p in pe] if pe is not None else [_largest_divisor(la.out_ch, 8) for la in net.layers]
        simds = [int(s) for s in simd] if simd is not None else [_largest_divisor(la.in_ch, 32)
                                                                 for la in net.layers]
        for i in range(n):
            check_folding(net, i, pes[i], simds[i], mem[i] if mem else None)
        mems = list(mem) if mem else [res.cheapest_style(net, i, pes[i], simds[i], dev) for i in range(n)]
        how = "given"
    else:
        from bcnn.planner import plan_folding

        pes, simds, mems = plan_folding(net, dev, clock_mhz, target_fps=target_fps, max_util=max_util,
                                        method=planner)
        how = planner
    plan = _complete(net, dev, float(clock_mhz), pes, simds, mems)
    plan["planner"] = {"method": how, "max_util": max_util, "target_fps": target_fps}
    return plan


def _complete(net: Net, dev: dict, clock_mhz: float, pes: list[int], simds: list[int],
              mems: list[str]) -> dict:
    from bcnn import power
    from bcnn import resources as res

    layers = []
    for i, (layer, p, s, m) in enumerate(zip(net.layers, pes, simds, mems, strict=True)):
        oh, ow = layer.conv_shape
        bh, bw, cs = chunk_shape(layer, s)
        nf, sf = layer.out_ch // p, layer.fan_in // s
        h, w, c = layer.in_shape
        est = res.estimate_layer(net, i, p, s, m, dev)
        layers.append({
            "name": layer.name,
            "pe": p,
            "simd": s,
            "nf": nf,
            "sf": sf,
            "chunk": [bh, bw, cs],
            "mem": m,
            "cycles": oh * ow * nf * sf,
            "macs": layer.macs,
            "weight_bits": layer.out_ch * layer.fan_in,
            "weight_bits_per_cycle": p * s,
            # two frames of the layer's input; layer 0 stores its mapped integers
            "buffer_bits": 2 * h * w * c * (net.input_bits if i == 0 else 1),
            # the ping-pong frame buffer is the FIFO in front of the engine: 2 frames (see fifo_frames)
            "fifo_frames": 2,
            **{k: est[k] for k in ("lut", "ff", "bram36", "dsp")},
        })
    h, w, _ = net.input_shape
    ii = max([la["cycles"] for la in layers] + [h * w, net.n_outputs])
    for la in layers:
        la["ii_share"] = round(la["cycles"] / ii, 4)
    latency = _latency(net, pes, simds)
    fps = clock_mhz * 1e6 / ii
    totals = {k: sum(la[k] for la in layers) for k in ("lut", "ff", "bram36", "dsp")}
    totals["lut"] += res.TOP_LUT
    totals["bram36"] = round(totals["bram36"], 1)
    util = {k: round(totals[k] / dev[k], 4) if dev[k] else None for k in ("lut", "ff", "bram36", "dsp")}
    pw = power.estimate(dev, clock_mhz, totals)
    gops = 2 * net.macs * fps / 1e9
    return {
        "format_version": FORMAT_VERSION,
        "net": net_fingerprint(net),
        "device": {k: v for k, v in dev.items() if k != "source"},
        "clock_mhz": clock_mhz,
        "layers": layers,
        "ii_cycles": ii,
        "latency_cycles": latency,
        "latency_us": latency / clock_mhz,
        "fps": fps,
        "macs": net.macs,
        "tops": gops / 1e3,
        **totals,
        "utilization": util,
        "watts": pw["watts"],
        "power": pw,
        "gops_per_w": gops / pw["watts"] if pw["watts"] else None,
        "estimate_note": "lut/ff/bram36 from the Yosys-calibrated resource model; watts from the power "
                         "model (an estimate, see docs/planner.md)",
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
    write_json(path, plan, indent=1)


def load_plan(path: str | os.PathLike, net: Net) -> dict:
    """Read a plan and check it against ``net``: BcnnError if it belongs to another network or is illegal."""
    path = Path(path)
    plan = read_json(path, "a plan file")
    if not isinstance(plan, dict) or plan.get("format_version") != FORMAT_VERSION:
        raise BcnnError(f"{path}: not a bcnn plan of format version {FORMAT_VERSION}")
    layers = plan.get("layers")
    if not isinstance(layers, list) or len(layers) != len(net.layers):
        raise BcnnError(f"{path}: plan has {len(layers) if isinstance(layers, list) else 'no'} layers, "
                        f"the network has {len(net.layers)}")
    if plan.get("net") not in (None, net_fingerprint(net)):
        raise BcnnError(f"{path}: plan was made for a network of another structure")
    for i, (la, layer) in enumerate(zip(layers, net.layers, strict=True)):
        if not isinstance(la, dict):
            raise BcnnError(f"{path}: plan layer {i} is {type(la).__name__} {la!r}, not an object with pe and simd")
        if la.get("name") != layer.name:
            raise BcnnError(f"{path}: plan layer {i} is {la.get('name')!r}, the network's is {layer.name!r}")
        try:
            check_folding(net, i, la["pe"], la["simd"], la.get("mem"))
        except KeyError as e:
            raise BcnnError(f"{path}: plan layer {i} lacks {e}") from None
        except BcnnError as e:
            raise BcnnError(f"{path}: {e}") from None
    return plan
