"""The planner: PE, SIMD and weight memory style per layer, balanced to one initiation interval.

For every layer, every legal (PE, SIMD, memory style) is costed by the resource model (bcnn.resources)
and its cycles per image by the plan's cycle model. The pipeline's II is the slowest layer, so the
planner looks for the smallest II for which a choice of one configuration per layer, each within II
cycles, fits the device:

* ``target_fps``: II = floor(f_clk / target); per layer the cheapest configuration within II.
* otherwise: binary search over the candidate IIs (every distinct layer cycle count) for the smallest
  feasible one, feasibility being "the cheapest choice per layer fits max_util of LUT, FF and BRAM".

"Cheapest" weighs LUT and BRAM by their share of the part, with a Lagrange-style multiplier on BRAM that
is raised or lowered until the BRAM budget holds (memory style is the main BRAM/LUT trade). The FINN
heuristic (``method="finn"``) instead raises SIMD through the divisors of C_in, then PE through the
divisors of C_out, until each layer meets the target; it is here to be compared with.
"""

from __future__ import annotations

import math

from bcnn.errors import BcnnError
from bcnn.ir import Net
from bcnn.plan import divisors, legal_simds
from bcnn.resources import PLAN_STYLES, estimate_geometry, geometry, varying_rom_bits

LAMBDAS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0)


def _configs(net: Net, i: int) -> list[dict]:
    """Pareto-optimal (cycles, lut, ff, bram) configurations of layer i."""
    layer = net.layers[i]
    oh, ow = layer.conv_shape
    out = []
    foldings = [(pe, simd) for pe in divisors(layer.out_ch) for simd in legal_simds(layer)]
    rom_bits = varying_rom_bits(layer, foldings)
    for pe, simd in foldings:
        g = geometry(net, i, pe, simd, rom_bits[pe, simd])
        cycles = oh * ow * g["words"]
        for mem in PLAN_STYLES:
            e = estimate_geometry(g, mem)
            out.append({"pe": pe, "simd": simd, "mem": mem, "cycles": cycles, **e})
    # keep the Pareto front in (cycles, lut, bram36, ff)
    out.sort(key=lambda c: (c["cycles"], c["lut"], c["bram36"], c["ff"]))
    front: list[dict] = []
    for c in out:
        if not any(f["cycles"] <= c["cycles"] and f["lut"] <= c["lut"] and f["bram36"] <= c["bram36"]
                   and f["ff"] <= c["ff"] for f in front):
            front.append(c)
    return front


def _choose(configs: list[list[dict]], ii: int, dev: dict, cap: dict) -> list[dict] | None:
    """Per layer the cheapest configuration within ``ii`` cycles that keeps the totals within ``cap``."""
    best = None
    for lam in LAMBDAS:
        pick = []
        for cfgs in configs:
            ok = [c for c in cfgs if c["cycles"] <= ii]
            if not ok:
                return None
            pick.append(min(ok, key=lambda c: c["lut"] / dev["lut"] + c["ff"] / dev["ff"] * 0.1
                            + lam * c["bram36"] / max(dev["bram36"], 1)))
        tot = {k: sum(c[k] for c in pick) for k in ("lut", "ff", "bram36")}
        if all(tot[k] <= cap[k] for k in tot):
            if best is None or tot["lut"] < best[0]:
                best = (tot["lut"], pick)
    return best[1] if best else None


def _finn(net: Net, configs_all: list[list[dict]], ii: int, dev: dict) -> list[dict] | None:
    """FINN's folding heuristic for a target of ``ii`` cycles; the cheapest memory style per layer."""
    pick = []
    for i, layer in enumerate(net.layers):
        oh, ow = layer.conv_shape
        simds = divisors(layer.in_ch)
        pes = divisors(layer.out_ch)
        si = pi = 0
        while oh * ow * (layer.out_ch // pes[pi]) * (layer.fan_in // simds[si]) > ii:
            if si + 1 < len(simds):
                si += 1
            elif pi + 1 < len(pes):
                pi += 1
            else:
                return None
        g = geometry(net, i, pes[pi], simds[si])
        best = None
        for mem in PLAN_STYLES:
            e = estimate_geometry(g, mem)
            cost = e["lut"] / dev["lut"] + e["bram36"] / max(dev["bram36"], 1)
            if best is None or cost < best[0]:
                best = (cost, {"pe": pes[pi], "simd": simds[si], "mem": mem,
                               "cycles": oh * ow * g["words"], **e})
        pick.append(best[1])
    return pick


def plan_folding(net: Net, dev: dict, clock_mhz: float, target_fps: float | None = None,
                 max_util: float = 0.8, method: str = "bcnn") -> tuple[list[int], list[int], list[str]]:
    """(PE, SIMD, memory style) per layer; see the module docstring."""
    if method not in ("bcnn", "finn"):
        raise BcnnError(f"unknown planner {method!r} (bcnn or finn)")
    h, w, _ = net.input_shape
    floor_ii = max(h * w, net.n_outputs)
    cap = {"lut": max_util * dev["lut"], "ff": max_util * dev["ff"], "bram36": max_util * dev["bram36"]}
    configs = [_configs(net, i) for i in range(len(net.layers))]

    def pick_for(ii: int):
        if method == "finn":
            p = _finn(net, configs, ii, dev)
            if p is None:
                return None
            tot = {k: sum(c[k] for c in p) for k in ("lut", "ff", "bram36")}
            return p if all(tot[k] <= cap[k] for k in tot) else None
        return _choose(configs, ii, dev, cap)

    if target_fps is not None:
        ii = math.floor(clock_mhz * 1e6 / target_fps)
        if ii < floor_ii:
            raise BcnnError(f"{target_fps:g} images/s needs an II of {ii} cycles, but streaming the input "
                            f"(one pixel per cycle) or the outputs alone takes {floor_ii}")
        pick = pick_for(ii)
        if pick is None:
            raise BcnnError(f"no folding reaches {target_fps:g} images/s (II {ii} cycles) within "
                            f"{max_util:.0%} of {dev['name']}")
    else:
        cands = sorted({c["cycles"] for cfgs in configs for c in cfgs if c["cycles"] >= floor_ii} | {floor_ii})
        lo, hi = 0, len(cands) - 1
        if pick_for(cands[hi]) is None:
            raise BcnnError(f"the network does not fit {max_util:.0%} of {dev['name']} even fully folded")
        while lo < hi:  # smallest feasible candidate II
            mid = (lo + hi) // 2
            if pick_for(cands[mid]) is not None:
                hi = mid
            else:
                lo = mid + 1
        pick = pick_for(cands[lo])
    return [c["pe"] for c in pick], [c["simd"] for c in pick], [c["mem"] for c in pick]
