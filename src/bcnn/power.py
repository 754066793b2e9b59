"""Power model: an estimate of a design's power on the board, from its resource counts and clock.

    watts = static_w(part) + f_clk[MHz] / 100 · toggle / 0.125 · (lut · P_LUT + ff · P_FF)
            + f_clk[MHz] / 100 · (bram36 · P_BRAM · bram_enable + dsp · P_DSP)

Coefficients are per resource at 100 MHz and a 12.5 % toggle rate (the default activity of the Xilinx
Power Estimator, XPE, UG440), 28 nm 7-series at nominal voltage; a LUT's figure includes its share of the
routing (signal) power and a flip-flop's its share of the clock tree. They are round figures of the order
that XPE gives for these resources, chosen by us and not fitted to any board measurement: treat the
result as an estimate, good to a factor of about 1.5, not as a measurement. ``static_w`` per part is in
``devices/parts.json`` (typical junction temperature). UltraScale+ parts (16 nm) use the same per-resource
figures scaled by ``FAMILY_SCALE``.

Sources for the method and the order of magnitude: Xilinx UG440 (Xilinx Power Estimator User Guide, the
activity-based model: power = Σ resources × frequency × toggle × per-resource energy); Xilinx WP389
("Lowering Power at 28 nm with Xilinx 7 Series FPGAs") for the 7-series static/dynamic split.
"""

from __future__ import annotations

TOGGLE = 0.125  # assumed average toggle rate of logic outputs (XPE's default)
BRAM_ENABLE = 1.0  # weight and frame buffers are read every cycle in steady state
COEFFS_W_AT_100MHZ = {  # watts per resource at 100 MHz (LUT/FF at 12.5 % toggle)
    "lut": 12e-6,  # logic + its routing
    "ff": 2e-6,  # clock load + data
    "bram36": 2.5e-3,  # one RAMB36 read (and write) every cycle
    "dsp": 1.5e-3,
}
FAMILY_SCALE = {"xc7": 1.0, "xcu": 0.8, "xcup": 0.6}


def estimate(dev: dict, clock_mhz: float, totals: dict, toggle: float = TOGGLE) -> dict:
    """{watts, static_w, dynamic_w, parts...}: an estimate (see the module docstring)."""
    f = clock_mhz / 100.0
    s = FAMILY_SCALE.get(dev.get("family", "xc7"), 1.0)
    c = COEFFS_W_AT_100MHZ
    parts = {
        "lut_w": f * (toggle / TOGGLE) * totals.get("lut", 0) * c["lut"] * s,
        "ff_w": f * (toggle / TOGGLE) * totals.get("ff", 0) * c["ff"] * s,
        "bram_w": f * BRAM_ENABLE * totals.get("bram36", 0) * c["bram36"] * s,
        "dsp_w": f * totals.get("dsp", 0) * c["dsp"] * s,
    }
    dyn = sum(parts.values())
    static = float(dev.get("static_w", 0.0))
    return {"watts": round(static + dyn, 3), "static_w": static, "dynamic_w": round(dyn, 3),
            **{k: round(v, 3) for k, v in parts.items()}, "toggle": toggle,
            "note": "estimate from per-resource coefficients (bcnn.power), not a measurement"}
