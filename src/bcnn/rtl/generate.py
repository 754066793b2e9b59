"""Generate the RTL directory of a network: the units, one engine wrapper per layer, the top level, the
weight/threshold/LUT ``.mem`` files and ``manifest.json``.

Every engine ``bcnn_l<i>`` is self-contained (valid/ready in and out) so it can be synthesized alone:

    [bcnn_input_map] -> bcnn_swu -> bcnn_mvtu -> [bcnn_collect] -> [bcnn_pool]       binary layers
                        bcnn_swu -> bcnn_mvtu -> bcnn_serialize                       the last layer

Streams: the top level takes one raw pixel per beat (channel c at bits [8c+7:8c], raster order) and emits
one signed accumulator per beat (``acc_bits`` wide, class order). Between engines a beat is one pixel of
C_out bits. ``.mem`` files are referenced by bare name: simulators and synthesis run with cwd = the RTL dir.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from bcnn.errors import BcnnError
from bcnn.ir import Layer, Net, signed_bits
from bcnn.ir import save as save_net
from bcnn.plan import W_STYLE_CODE, check_folding, chunk_shape

UNITS_DIR = Path(__file__).parent / "units"
# dependency order: a unit only instantiates units listed before it
UNIT_ORDER = ["bcnn_add_tree", "bcnn_popcount", "bcnn_dot", "bcnn_input_map", "bcnn_swu", "bcnn_mvtu",
              "bcnn_collect", "bcnn_pool", "bcnn_serialize"]


def acc_bits(net: Net, i: int) -> int:
    """Width of layer i's accumulators, thresholds and outputs (see bcnn_mvtu)."""
    layer = net.layers[i]
    if i == 0:
        lo, hi = net.acc_range(0)
        if layer.is_last:
            return max(signed_bits(lo, hi), net.input_bits + 1)  # bcnn_dot needs AW > EW
        return max(signed_bits(lo - 1, hi + 1), net.input_bits + 1)  # thresholds clamped one beyond the range
    n = layer.fan_in
    return signed_bits(-n, n + 1)  # popcount 0..N, thresholds -1..N+1, outputs 2·pc − N in [-N, N]


def hw_thresholds(net: Net, i: int) -> np.ndarray:
    """Layer i's thresholds as the hardware compares them (clamped; binary layers in popcount terms)."""
    layer = net.layers[i]
    t = layer.thresholds.astype(np.int64)
    if i == 0:
        lo, hi = net.acc_range(0)
        return np.clip(t, lo - 1, hi + 1)
    n = layer.fan_in
    # acc = 2·pc − N:  acc >= t  <=>  pc >= ceil((t+N)/2);   acc <= t  <=>  pc <= floor((t+N)/2)
    ge = np.clip(-((-(t + n)) // 2), 0, n + 1)
    le = np.clip((t + n) // 2, -1, n)
    return np.where(layer.ge, ge, le)


def _hex_words(bits: np.ndarray) -> str:
    """Bool (n_words, width) with bit 0 = LSB -> $readmemh text, one word per line."""
    n, width = bits.shape
    digits = (width + 3) // 4
    padded = np.zeros((n, digits * 4), dtype=bool)
    padded[:, :width] = bits
    nibbles = padded.reshape(n, digits, 4)[:, ::-1, :]  # most significant nibble first
    values = (nibbles * np.array([1, 2, 4, 8])).sum(axis=2)
    table = np.array(list("0123456789abcdef"))
    return "".join("".join(row) + "\n" for row in table[values])


def _int_bits(values: np.ndarray, width: int) -> np.ndarray:
    """int64 array (...,) -> bool (..., width) two's complement, bit 0 first."""
    u = values.astype(np.int64) & ((1 << width) - 1)
    return ((u[..., None] >> np.arange(width)) & 1).astype(bool)


def weight_words(layer: Layer, pe: int, simd: int) -> np.ndarray:
    """Bool (nf·sf, pe·simd): word f·sf + s, lane p bits [p·simd, (p+1)·simd).

    Chunk s of a window is elements [s·simd, (s+1)·simd) of its (kh, kw, c) order, whatever its shape."""
    nf, sf = layer.out_ch // pe, layer.fan_in // simd
    # weights (out, kh, kw, c) -> (nf, pe, sf, simd) -> (nf, sf, pe, simd)
    w = layer.weights.reshape(nf, pe, sf, simd).transpose(0, 2, 1, 3)
    return w.reshape(nf * sf, pe * simd)


def threshold_words(net: Net, i: int, pe: int) -> np.ndarray:
    """Bool (nf, pe·(aw+1)): lane p is {ge, thr[aw-1:0]}."""
    layer, aw = net.layers[i], acc_bits(net, i)
    lanes = np.concatenate([_int_bits(hw_thresholds(net, i), aw), layer.ge.astype(bool)[:, None]], axis=1)
    return lanes.reshape(layer.out_ch // pe, pe * (aw + 1))


class _Lit(str):
    """A Verilog literal emitted verbatim (not as a string parameter)."""


def _vparam(name: str, value: int | str) -> str:
    if isinstance(value, str) and not isinstance(value, _Lit):
        return f'.{name}("{value}")'
    return f".{name}({value})"


def _inst(module: str, params: dict, name: str, ports: dict[str, str]) -> str:
    ps = ",\n        ".join(_vparam(k, v) for k, v in params.items())
    pp = ",\n        ".join(f".{k}({v})" for k, v in ports.items())
    return f"    {module} #(\n        {ps}\n    ) {name} (\n        {pp}\n    );\n"


def _stream(prefix: str, width: int) -> str:
    return (f"    wire {prefix}_valid;\n    wire {prefix}_ready;\n"
            f"    wire [{width - 1}:0] {prefix}_data;\n")


def _ports(src: str, dst: str) -> dict[str, str]:
    return {"in_valid": f"{src}_valid", "in_ready": f"{src}_ready", "in_data": f"{src}_data",
            "out_valid": f"{dst}_valid", "out_ready": f"{dst}_ready", "out_data": f"{dst}_data"}


def _engine(net: Net, plan: dict, i: int) -> tuple[str, str, dict, list[str], dict[str, str]]:
    """(module name, Verilog, params, units used, mem files {name: text}) of layer i's engine."""
    layer, lp = net.layers[i], plan["layers"][i]
    pe, simd = lp["pe"], lp["simd"]
    nf, sf = layer.out_ch // pe, layer.fan_in // simd
    h, w, c = layer.in_shape
    oh, ow = layer.conv_shape
    aw = acc_bits(net, i)
    ew = net.input_bits if i == 0 else 1
    module = f"bcnn_l{i}"
    in_w = 8 * c if i == 0 else c
    out_w = aw if layer.is_last else layer.out_ch
    mems = {f"{module}_weights.mem": _hex_words(weight_words(layer, pe, simd))}
    units = ["bcnn_add_tree", "bcnn_popcount", "bcnn_dot", "bcnn_swu", "bcnn_mvtu"]
    body = ""
    clk = {"clk": "clk", "rst": "rst"}
    src = "in"
    if i == 0:
        lut_name = f"{module}_input_lut.mem"
        lut = np.concatenate([_int_bits(net.input_lut[ch], ew) for ch in range(c)], axis=1)  # (256, c·ew)
        mems[lut_name] = _hex_words(lut)
        units.insert(2, "bcnn_input_map")
        body += _stream("px", c * ew)
        body += _inst("bcnn_input_map", {"C": c, "IW": ew, "LUT_FILE": lut_name}, "u_map",
                      {**clk, **_ports(src, "px")})
        src = "px"
    body += _stream("chunk", simd * ew)
    bh, bw, _cs = chunk_shape(layer, simd)
    mem = lp.get("mem", "auto")
    from bcnn.resources import geometry

    buf_style = 1 if geometry(net, i, pe, simd)["buf_bram"] else 2
    body += _inst("bcnn_swu", {"H": h, "W": w, "C": c, "EW": ew, "K": layer.kernel, "PAD": layer.pad,
                               "SIMD": simd, "BH": bh, "BW": bw, "NF": nf,
                               "PADVAL": layer.pad_bit if i else 0, "B_STYLE": buf_style},
                  "u_swu", {**clk, **_ports(src, "chunk")})
    mvtu = {"SIMD": simd, "EW": ew, "PE": pe, "NF": nf, "SF": sf, "AW": aw, "FANIN": layer.fan_in,
            "OUT_ACC": int(layer.is_last), "W_FILE": f"{module}_weights.mem", "W_STYLE": W_STYLE_CODE[mem]}
    if layer.is_last:
        body += _stream("fold", pe * aw)
        body += _inst("bcnn_mvtu", mvtu, "u_mvtu", {**clk, **_ports("chunk", "fold")})
        units.append("bcnn_serialize")
        body += _inst("bcnn_serialize", {"PE": pe, "DW": aw, "DEPTH": 2 * nf}, "u_out",
                      {**clk, **_ports("fold", "out")})
    else:
        t_name = f"{module}_thresholds.mem"
        mems[t_name] = _hex_words(threshold_words(net, i, pe))
        mvtu["T_FILE"] = t_name
        pix = "fold" if nf == 1 else "pix"
        body += _stream("fold", pe)
        body += _inst("bcnn_mvtu", mvtu, "u_mvtu", {**clk, **_ports("chunk", "fold")})
        if nf > 1:
            units.append("bcnn_collect")
            body += _stream("pix", layer.out_ch)
            body += _inst("bcnn_collect", {"PE": pe, "NF": nf, "DW": 1}, "u_collect",
                          {**clk, **_ports("fold", "pix")})
        units.append("bcnn_pool")
        mask = int(sum(1 << ch for ch in range(layer.out_ch) if layer.pool_and[ch])) if layer.pool > 1 else 0
        body += _inst("bcnn_pool", {"OW": ow, "C": layer.out_ch, "P": layer.pool,
                                    "AND_MASK": _Lit(f"{layer.out_ch}'h{mask:x}")},
                      "u_pool", {**clk, **_ports(pix, "out")})
    head = (f"// Engine of layer {i} ({layer.name}): {h}x{w}x{c} -> {layer.out_ch} channels, "
            f"K={layer.kernel} pad={layer.pad} pool={layer.pool}; PE={pe} SIMD={simd} weights in {mem}, "
            f"{lp['cycles']} cycles/image.\n"
            f"// Generated by bcnn.rtl.generate; memory files are read relative to the working directory.\n")
    text = (f"{head}module {module} (\n    input  wire clk,\n    input  wire rst,\n"
            f"    input  wire in_valid,\n    output wire in_ready,\n    input  wire [{in_w - 1}:0] in_data,\n"
            f"    output wire out_valid,\n    input  wire out_ready,\n    output wire [{out_w - 1}:0] out_data\n"
            f");\n{body}endmodule\n")
    params = {"layer": i, "name": layer.name, "in_shape": [h, w, c], "kernel": layer.kernel, "pad": layer.pad,
              "pool": layer.pool, "out_ch": layer.out_ch, "pe": pe, "simd": simd, "nf": nf, "sf": sf,
              "chunk": [bh, bw, _cs], "mem": mem, "buf_style": buf_style,
              "elem_bits": ew, "acc_bits": aw, "in_bits": in_w, "out_bits": out_w, "last": layer.is_last}
    return module, text, params, units, mems


def _top(net: Net, modules: list[str]) -> str:
    c = net.input_shape[2]
    aw = acc_bits(net, len(net.layers) - 1)
    body = ""
    for i in range(1, len(modules)):
        body += _stream(f"s{i}", net.layers[i - 1].out_ch)
    for i, m in enumerate(modules):
        src = "in" if i == 0 else f"s{i}"
        dst = "out" if i == len(modules) - 1 else f"s{i + 1}"
        ports = {"clk": "clk", "rst": "rst", **_ports(src, dst)}
        pp = ",\n        ".join(f".{k}({v})" for k, v in ports.items())
        body += f"    {m} u_{m} (\n        {pp}\n    );\n"
    return ("// bcnn top level: one raw pixel per input beat (channel c at bits [8c+7:8c], raster order),\n"
            "// one signed accumulator per output beat (class order). Generated by bcnn.rtl.generate.\n"
            f"module bcnn_top (\n    input  wire clk,\n    input  wire rst,\n"
            f"    input  wire in_valid,\n    output wire in_ready,\n    input  wire [{8 * c - 1}:0] in_data,\n"
            f"    output wire out_valid,\n    input  wire out_ready,\n    output wire [{aw - 1}:0] out_data\n"
            f");\n{body}endmodule\n")


def generate(net: Net, plan: dict, out_dir: str | Path) -> Path:
    """Write the RTL directory for ``net`` folded as ``plan``; returns its path."""
    net.validate()
    if len(plan.get("layers", [])) != len(net.layers):
        raise BcnnError("plan and network have different numbers of layers")
    for i, lp in enumerate(plan["layers"]):
        check_folding(net, i, lp["pe"], lp["simd"], lp.get("mem"))
    if net.input_bits > 32:
        raise BcnnError(f"input_lut needs {net.input_bits} bits; the RTL supports up to 32")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # manifest.json is written last and marks a complete directory: remove it first, so that an interrupted
    # generate leaves a directory that simulate and synth reject ("no manifest.json"), never a mix of two
    (out / "manifest.json").unlink(missing_ok=True)
    for old in list(out.glob("*.v")) + list(out.glob("*.mem")) + [out / "net.bcnn"]:
        old.unlink(missing_ok=True)  # a previous network's files must not linger
    files: list[str] = []
    for unit in UNIT_ORDER:
        shutil.copyfile(UNITS_DIR / f"{unit}.v", out / f"{unit}.v")
        files.append(f"{unit}.v")
    engines, modules = [], []
    for i in range(len(net.layers)):
        module, text, params, units, mems = _engine(net, plan, i)
        (out / f"{module}.v").write_text(text)
        for name, content in mems.items():
            (out / name).write_text(content)
        files.append(f"{module}.v")
        modules.append(module)
        engines.append({"name": net.layers[i].name, "module": module,
                        "files": [f"{u}.v" for u in UNIT_ORDER if u in units] + [f"{module}.v"],
                        "mem_files": sorted(mems), "params": params})
    (out / "bcnn_top.v").write_text(_top(net, modules))
    files.append("bcnn_top.v")
    h, w, c = net.input_shape
    manifest = {
        "top": "bcnn_top",
        "files": files,
        "input": {"height": h, "width": w, "channels": c, "pixel_bits": 8},
        "output": {"count": net.n_outputs, "acc_bits": acc_bits(net, len(net.layers) - 1)},
        "engines": engines,
        "plan": plan,
    }
    save_net(net, out / "net.bcnn")  # the network this RTL implements: `bcnn simulate` compares against it
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    tmp.replace(out / "manifest.json")
    return out
