"""Resource model of one layer's engine: LUT, FF, BRAM36, DSP as a function of its folding.

BRAM36 is counted analytically (the Xilinx RAMB18/RAMB36 aspect ratios, as Yosys' memory mapper packs
them). LUT and FF are linear in a few structural features of the generated units (XNOR-popcount bits,
accumulator bits, weight-ROM bits by memory style, frame-buffer banks, window rotation muxes...), with
coefficients fitted to Yosys ``synth_xilinx`` runs of generated engines over a grid of foldings by
``bcnn calibrate`` (:func:`calibrate`), shipped in ``devices/resources.json``.

Weight-memory bandwidth is what the memory style trades: every cycle a layer reads PE·SIMD weight bits.
Block RAM gives at most 72 bits per BRAM36 per cycle, so a wide, shallow weight memory (few words of
many bits) costs many BRAMs for few bits stored and belongs in LUTs: as a ROM of constants folded into the
XNOR logic ("logic"), or as LUT RAM ("lutram").
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from bcnn.errors import BcnnError
from bcnn.ir import Layer, Net

COEFF_FILE = Path(__file__).parent / "devices" / "resources.json"
TOP_LUT = 0  # the top level only wires engines together
BUF_BRAM_MIN_BITS = 4096  # a frame-buffer bank of at least this many bits goes to block RAM, else LUT RAM
# Styles the planner chooses from. "lutram" (a ROM in distributed RAM) is legal RTL and Vivado maps it, but
# Yosys 0.70's memory_libmap finds no LUT-RAM mapping for a ROM, so it is neither planned nor calibrated.
PLAN_STYLES = ("logic", "bram")

LUT_FEATURES = ("const", "pop_const", "pop_var", "int", "acc", "rom_32", "rom_64", "rom_big", "buf_lut", "rot",
                "thr", "out", "banks")
FF_FEATURES = ("const", "aw_reg", "ax", "acc", "q", "thr", "out", "banks")

# Used until `bcnn calibrate` has written devices/resources.json.
DEFAULT_COEFFS = {
    "lut": {"const": 150, "pop_const": 1.4, "pop_var": 2.8, "int": 1.5, "acc": 2.0, "rom_32": 1.0, "rom_64": 2.0,
            "rom_big": 2.0, "buf_lut": 1.0, "rot": 1.0, "thr": 0.5, "out": 1.0, "banks": 30},
    "ff": {"const": 100, "aw_reg": 1.0, "ax": 1.0, "acc": 1.0, "q": 1.0, "thr": 1.0, "out": 2.0,
           "banks": 20},
}


def _clog2(n: int) -> int:
    return max(0, math.ceil(math.log2(n))) if n > 1 else 0


def bram36_for(depth: int, width: int) -> float:
    """BRAM36 (RAMB18 = 0.5) of the cheapest RAMB18/RAMB36 aspect ratio for a depth x width memory."""
    if depth <= 0 or width <= 0:
        return 0.0
    best = math.inf
    for d, w, cost in ((16384, 1, .5), (8192, 2, .5), (4096, 4, .5), (2048, 9, .5), (1024, 18, .5),
                       (512, 36, .5), (32768, 1, 1), (16384, 2, 1), (8192, 4, 1), (4096, 9, 1),
                       (2048, 18, 1), (1024, 36, 1), (512, 72, 1)):
        best = min(best, math.ceil(depth / d) * math.ceil(width / w) * cost)
    return float(best)


def varying_rom_bits(layer: Layer, foldings: list[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """Per (PE, SIMD): the bit columns of the weight ROM (``rtl.generate.weight_words``) that are not the
    same in every word.

    Synthesis keeps only these in a memory: a column that holds one value in all words is a constant
    (Yosys drops it from the memory), so a trained layer's ROM of few words, where many columns are
    constant, takes fewer block RAMs than its width says, and one word takes none. Column (p, j) holds
    weight (o, k) for every o ≡ p (mod PE) and k ≡ j (mod SIMD); its count of +1s for a folding is the sum
    of those of any folding by multiples of PE and SIMD, so each is summed from the nearest one done."""
    out, fan_in = layer.out_ch, layer.fan_in
    by_pe = {out: layer.weights.reshape(out, fan_in).view(np.uint8).astype(np.int32)}  # (PE, fan-in) +1 counts
    result = {}
    for pe in sorted({pe for pe, _ in foldings}, reverse=True):
        parent = min(q for q in by_pe if q % pe == 0)
        by_pe[pe] = by_pe[parent].reshape(parent // pe, pe, fan_in).sum(0)
        by_simd = {fan_in: by_pe[pe]}  # (PE, SIMD) +1 counts
        for simd in sorted({s for q, s in foldings if q == pe}, reverse=True):
            parent = min(s for s in by_simd if s % simd == 0)
            by_simd[simd] = by_simd[parent].reshape(pe, parent // simd, simd).sum(1)
            words = (out // pe) * (fan_in // simd)
            result[pe, simd] = int(((by_simd[simd] > 0) & (by_simd[simd] < words)).sum())
    return result


def _mux(n: int) -> float:
    """LUT6s per output bit of an n:1 multiplexer (MUXF7/F8 free)."""
    return 0.0 if n <= 1 else max(1.0, n / 4)


def geometry(net: Net, i: int, pe: int, simd: int, rom_bits: int | None = None) -> dict:
    """The parameters of layer i's engine that the model and the generator share (``rom_bits``: its
    ``varying_rom_bits`` where the caller has them for many foldings at once)."""
    from bcnn.plan import chunk_shape
    from bcnn.rtl.generate import acc_bits

    layer = net.layers[i]
    h, w, c = layer.in_shape
    bh, bw, cs = chunk_shape(layer, simd)
    ew = net.input_bits if i == 0 else 1
    nf, sf = layer.out_ch // pe, layer.fan_in // simd
    hb, wb = -(-(h + 2 * layer.pad) // bh), -(-(w + 2 * layer.pad) // bw)
    buf_depth = 2 * hb * wb
    if rom_bits is None:
        rom_bits = varying_rom_bits(layer, [(pe, simd)])[pe, simd]
    return {"pe": pe, "simd": simd, "ew": ew, "aw": acc_bits(net, i), "nf": nf, "sf": sf, "words": nf * sf,
            "rom_bits": rom_bits, "bh": bh, "bw": bw, "cs": cs, "banks": bh * bw, "pw": c * ew, "buf_depth": buf_depth,
            "buf_bram": buf_depth * c * ew >= BUF_BRAM_MIN_BITS, "out_ch": layer.out_ch,
            "pool": layer.pool, "last": layer.is_last}


def features(g: dict, mem: str) -> tuple[dict, dict]:
    """(LUT features, FF features) of an engine with geometry ``g`` and weight memory style ``mem``."""
    bits = g["pe"] * g["simd"]
    d = g["words"]
    # XNOR with constant weights (one word) folds into the popcount LUTs; a ROM of up to 16 words per bit
    # still merges with its XNOR (4 address bits + the input); 17-32 words (5 address bits) partly, deeper
    # ROMs need LUTs of their own.
    var = d > 1
    lut = {
        "const": 1.0,
        "pop_const": bits if g["ew"] == 1 and not var else 0.0,
        "pop_var": bits if g["ew"] == 1 and var else 0.0,
        "int": bits * (g["ew"] + 1) if g["ew"] > 1 else 0.0,
        "acc": g["pe"] * g["aw"],
        "rom_32": bits if mem == "logic" and 16 < d <= 32 else 0.0,
        "rom_64": bits if mem == "logic" and 32 < d <= 64 else 0.0,
        "rom_big": bits * d / 64 if mem == "logic" and d > 64 else 0.0,
        "buf_lut": 0.0 if g["buf_bram"] else g["banks"] * g["pw"] * math.ceil(g["buf_depth"] / 64),
        "rot": g["simd"] * g["ew"] * (_mux(g["banks"]) + _mux(g["cs"])),
        "thr": 0.0 if g["last"] else g["pe"] * (g["aw"] + 1) * (1 if g["nf"] > 1 else 0),
        "out": g["out_ch"],
        "banks": g["banks"],
    }
    ff = {
        "const": 1.0,
        "aw_reg": bits if mem != "bram" and var else 0.0,
        "ax": g["simd"] * g["ew"],
        "acc": g["pe"] * g["aw"],
        "q": g["banks"] * g["pw"],
        "thr": 0.0 if g["last"] else g["pe"] * (g["aw"] + 1),
        "out": g["out_ch"] * (1 + (g["nf"] > 1) + (g["pool"] > 1)),
        "banks": g["banks"],
    }
    return lut, ff


def bram(g: dict, mem: str) -> float:
    b = bram36_for(g["words"], g["rom_bits"]) if mem == "bram" else 0.0
    if g["buf_bram"]:
        b += g["banks"] * bram36_for(g["buf_depth"], g["pw"])
    return b


def dsp(g: dict) -> int:
    """Yosys maps the frame-buffer address products (word row x a constant that is not a power of two)
    to DSP48 slices: one per bank when the buffer is banked (measured on the generated units)."""
    return g["banks"] if g["banks"] > 1 else 0


_COEFFS: dict | None = None


def coefficients() -> dict:
    global _COEFFS
    if _COEFFS is None:
        try:
            _COEFFS = json.loads(COEFF_FILE.read_text())["coefficients"]
        except (OSError, ValueError, KeyError):
            _COEFFS = DEFAULT_COEFFS
    return _COEFFS


def _dot(feat: dict, coeff: dict) -> float:
    return sum(coeff.get(k, 0.0) * v for k, v in feat.items())


def estimate_geometry(g: dict, mem: str) -> dict:
    lf, ff = features(g, mem)
    co = coefficients()
    return {"lut": int(round(_dot(lf, co["lut"]))), "ff": int(round(_dot(ff, co["ff"]))),
            "bram36": bram(g, mem), "dsp": dsp(g)}


def estimate_layer(net: Net, i: int, pe: int, simd: int, mem: str, dev: dict | None = None) -> dict:
    """Estimated {lut, ff, bram36, dsp} of layer i's engine."""
    return estimate_geometry(geometry(net, i, pe, simd), mem)


def cheapest_style(net: Net, i: int, pe: int, simd: int, dev: dict) -> str:
    """The weight memory style with the smallest share of the device (LUT and BRAM weighed by the part)."""
    g = geometry(net, i, pe, simd)
    best = None
    for mem in PLAN_STYLES:
        e = estimate_geometry(g, mem)
        cost = e["lut"] / dev["lut"] + (e["bram36"] / dev["bram36"] if dev["bram36"] else math.inf)
        if best is None or cost < best[0]:
            best = (cost, mem)
    return best[1]


# ---------------------------------------------------------------------------------------------- calibration

def _nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least squares with x >= 0 (active-set: drop the most negative coefficient until none is)."""
    active = list(range(a.shape[1]))
    x = np.zeros(a.shape[1])
    while active:
        sol, *_ = np.linalg.lstsq(a[:, active], b, rcond=None)
        if (sol >= 0).all():
            x[:] = 0
            x[active] = sol
            return x
        active.pop(int(np.argmin(sol)))
    return x


def calibration_grid() -> list[dict]:
    """Single-engine designs over PE, SIMD (all three chunk shapes), memory style and depth."""
    grid = []
    # (input H=W, C_in, C_out, K, pad, PE, SIMD, mem)
    for h, c, o, k, pad, pe, simd, mem in [
        (8, 32, 32, 3, 1, 4, 32, "logic"), (8, 32, 32, 3, 1, 8, 32, "logic"), (8, 32, 32, 3, 1, 16, 96, "logic"),
        (8, 32, 32, 3, 1, 8, 288, "logic"), (8, 32, 32, 3, 1, 32, 288, "logic"),
        (8, 64, 64, 3, 1, 8, 64, "bram"), (8, 64, 64, 3, 1, 16, 192, "bram"),
        (8, 64, 64, 3, 1, 2, 64, "logic"), (16, 16, 32, 3, 0, 4, 8, "bram"), (4, 128, 64, 4, 0, 4, 256, "bram"),
        (1, 256, 64, 1, 0, 16, 256, "logic"),
        # weight ROMs of 12 and 24 words in logic, and a one-PE classifier layer
        (8, 64, 64, 3, 1, 16, 192, "logic"), (8, 64, 64, 3, 1, 8, 192, "logic"), (1, 256, 32, 1, 0, 1, 256, "bram"),
    ]:
        grid.append({"h": h, "c": c, "o": o, "k": k, "pad": pad, "pe": pe, "simd": simd, "mem": mem,
                     "first": False})
    for h, o, pe, simd, mem in [(8, 16, 8, 27, "logic"), (8, 32, 4, 3, "bram"), (8, 64, 32, 9, "logic")]:
        grid.append({"h": h, "c": 3, "o": o, "k": 3, "pad": 1, "pe": pe, "simd": simd, "mem": mem,
                     "first": True})
    return grid


def _calib_net(pt: dict):
    from bcnn.randnet import ConvSpec, random_net

    rng = np.random.default_rng(1234)
    if pt["first"]:
        net = random_net(rng, (pt["h"], pt["h"], 3), [ConvSpec(pt["o"], kernel=pt["k"], pad=pt["pad"])], [10])
        return net, 0
    # a 1x1 integer layer producing C channels, then the layer under test, then a small classifier
    net = random_net(rng, (pt["h"], pt["h"], 3), [ConvSpec(pt["c"], kernel=1),
                                                  ConvSpec(pt["o"], kernel=pt["k"], pad=pt["pad"])], [10])
    return net, 1


def measure_point(pt: dict, work: Path, cache_dir: Path | None = None) -> dict:
    """Generate the grid point's network, synthesize the engine under test; features and Yosys counts."""
    from bcnn.plan import make_plan
    from bcnn.rtl.generate import generate
    from bcnn.rtl.manifest import read_manifest
    from bcnn.synth import default_cache_dir, family_of, synth_engine
    from bcnn.tools import yosys

    net, i = _calib_net(pt)
    pes = [1] * len(net.layers)
    simds = [1] * len(net.layers)
    mems = ["logic"] * len(net.layers)
    pes[i], simds[i], mems[i] = pt["pe"], pt["simd"], pt["mem"]
    plan = make_plan(net, pe=pes, simd=simds, mem=mems)
    tag = "_".join(str(pt[k]) for k in ("h", "c", "o", "k", "pad", "pe", "simd", "mem"))
    rtl = generate(net, plan, work / tag)
    man = read_manifest(rtl)
    row = synth_engine(rtl, man["engines"][i], family_of("xc7"), cache_dir or default_cache_dir(), yosys())
    g = geometry(net, i, pt["pe"], pt["simd"])
    return {"point": pt, "geometry": g, "yosys": {k: row[k] for k in ("lut", "ff", "bram36", "dsp")},
            "seconds": row["seconds"], "cached": row["cached"]}


def design_rows(rtl_dir: str | os.PathLike, cache_dir: Path | None = None) -> list[dict]:
    """Calibration rows from a generated design's engines (Yosys per engine, from the cache when there)."""
    from bcnn.rtl.manifest import read_manifest
    from bcnn.synth import synthesize

    rtl = Path(rtl_dir)
    man = read_manifest(rtl)
    net = ir_load(rtl)
    res = synthesize(rtl, cache_dir=cache_dir, progress=False)
    rows = []
    for i, (row, la) in enumerate(zip(res["layers"], man["plan"]["layers"], strict=True)):
        g = geometry(net, i, la["pe"], la["simd"])
        rows.append({"point": {"design": str(rtl), "engine": row["name"], "pe": la["pe"], "simd": la["simd"],
                               "mem": la.get("mem", "logic")},
                     "geometry": g, "yosys": {k: row[k] for k in ("lut", "ff", "bram36", "dsp")},
                     "seconds": row["seconds"], "cached": row["cached"]})
    return rows


def ir_load(rtl: Path) -> Net:
    """The network of a generated design: net.bcnn in the RTL directory or beside it."""
    from bcnn import ir

    for p in (rtl / "net.bcnn", rtl.parent / "net.bcnn"):
        if p.is_file():
            return ir.load(p)
    raise BcnnError(f"{rtl}: no net.bcnn in or beside it; cannot use it for calibration")


def fit(rows: list[dict]) -> dict:
    """Coefficients (non-negative, relative-error weighted least squares) from measured rows."""
    out = {}
    for res, names, idx in (("lut", LUT_FEATURES, 0), ("ff", FF_FEATURES, 1)):
        feats = [features(r["geometry"], r["point"]["mem"])[idx] for r in rows]
        a = np.array([[f[n] for n in names] for f in feats], dtype=float)
        y = np.array([r["yosys"][res] for r in rows], dtype=float)
        wgt = 1.0 / np.maximum(y, 50.0)
        x = _nnls(a * wgt[:, None], y * wgt)
        out[res] = {n: float(round(v, 5)) for n, v in zip(names, x, strict=True)}
    return out


def calibrate(out_path: str | os.PathLike | None = None, work: str | os.PathLike | None = None,
              jobs: int = 1, progress: bool = True, designs: list[str | os.PathLike] = ()) -> dict:
    """Synthesize the calibration grid (cached per engine), fit the model, write the coefficient file.

    ``designs``: generated RTL directories whose engines join the grid (whole engines of real networks)."""
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from bcnn.rtl.manifest import read_manifest
    from bcnn.synth import yosys_version
    from bcnn.tools import yosys

    for d in designs:  # before hours of Yosys on the grid
        read_manifest(Path(d))
        ir_load(Path(d))
    grid = calibration_grid()
    yosys_version(tuple(yosys()))  # the first YoWASP run, before threads start
    with tempfile.TemporaryDirectory(prefix="bcnn-calib") as td:
        base = Path(work) if work else Path(td)

        def one(pt):
            r = measure_point(pt, base)
            if progress:
                print(f"calibrate {pt['pe']:>3}x{pt['simd']:<4} {pt['mem']:<6} C{pt['c']}->{pt['o']} K{pt['k']}: "
                      f"{r['yosys']['lut']:>6} LUT {r['yosys']['ff']:>6} FF {r['yosys']['bram36']:>5} BRAM36"
                      f"{'  (cached)' if r['cached'] else ''}", file=sys.stderr, flush=True)
            return r

        if jobs > 1:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                rows = list(pool.map(one, grid))
        else:
            rows = [one(pt) for pt in grid]
    for d in designs:
        rows += design_rows(d)
    co = fit(rows)
    global _COEFFS
    _COEFFS = co
    for r in rows:
        r["model"] = estimate_geometry(r["geometry"], r["point"]["mem"])
    err = [abs(r["model"]["lut"] - r["yosys"]["lut"]) / max(r["yosys"]["lut"], 1) for r in rows]
    result = {"coefficients": co, "rows": rows, "lut_mean_abs_rel_error": float(np.mean(err)),
              "lut_max_abs_rel_error": float(np.max(err))}
    path = Path(out_path) if out_path else COEFF_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(path)
    return result


def check_styles(mems: list[str]) -> None:
    from bcnn.plan import MEM_STYLES

    for m in mems:
        if m not in MEM_STYLES:
            raise BcnnError(f"memory style {m!r} is not one of {', '.join(MEM_STYLES)}")
