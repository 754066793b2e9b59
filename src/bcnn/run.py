"""The main job: one model through every stage, with the time of each, into one summary.

compile (when given ONNX) → plan → generate → Verilator build and simulate (compared with the reference
engine, image by image) → Yosys estimate → ``summary.json`` and ``summary.md`` in the output folder.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bcnn.errors import BcnnError


class _Steps:
    """Prints "[i/n] step ..." as each stage starts and its time when it ends."""

    def __init__(self, total: int) -> None:
        self.total, self.index, self.times = total, 0, {}

    def __call__(self, name: str):
        self.index += 1
        print(f"[{self.index}/{self.total}] {name} ...", file=sys.stderr, flush=True)
        return _Timer(self, name)


class _Timer:
    def __init__(self, steps: _Steps, name: str) -> None:
        self.steps, self.name = steps, name

    def __enter__(self):
        self.t0 = time.time()
        return self

    def __exit__(self, *exc):
        dt = time.time() - self.t0
        self.steps.times[self.name] = round(dt, 2)
        if exc[0] is None:
            print(f"      {self.name} done in {dt:.1f} s", file=sys.stderr, flush=True)


def run_flow(model: str = "tiny", device: str = "xc7vx690t", clock_mhz: float = 90.0, images: int = 100,
             data: str | None = None, out_dir: str | Path = "bcnn-out", skip_synth: bool = False) -> dict:
    from bcnn import ir
    from bcnn.cli import _load_data, _load_net_any
    from bcnn.engine.reference import predict, run_reference
    from bcnn.plan import make_plan, save_plan
    from bcnn.rtl.generate import generate
    from bcnn.sim import simulate

    if images < 1:
        raise BcnnError("--images must be at least 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    step = _Steps(6 if not skip_synth else 5)

    with step("compile"):
        net = _load_net_any(model)
        ir.save(net, out / "net.bcnn")
    with step("plan"):
        plan = make_plan(net, device=device, clock_mhz=clock_mhz)
        save_plan(plan, out / "plan.json")
    with step("generate Verilog"):
        rtl_dir = out / "rtl"
        generate(net, plan, rtl_dir)
        ir.save(net, rtl_dir / "net.bcnn")
    with step("reference engine"):
        ds = _load_data(net, data, images)
        expected = run_reference(net, ds.images)
        pred = predict(net, expected)
    with step(f"Verilator build and simulate {len(ds)} images"):
        sim = simulate(rtl_dir, ds.images, expected=expected)
    resources: dict = {}
    if not skip_synth:
        with step("Yosys estimate"):
            from bcnn.synth import synthesize

            resources = synthesize(rtl_dir, part=device)

    summary = {
        "model": str(model),
        "device": device,
        "clock_mhz": clock_mhz,
        "images": len(ds),
        "accuracy": float((pred == ds.labels).mean()) if ds.labels is not None else None,
        "mismatches": sim["mismatches"],
        "bit_exact": sim["mismatches"] == 0,
        "ii_cycles": sim["ii_cycles"],
        "latency_cycles": sim["latency_cycles"],
        "planned_ii_cycles": plan["ii_cycles"],
        "planned_latency_cycles": plan["latency_cycles"],
        "fps": clock_mhz * 1e6 / sim["ii_cycles"],
        "latency_us": sim["latency_cycles"] / clock_mhz,
        "tops": 2 * net.macs * clock_mhz * 1e6 / sim["ii_cycles"] / 1e12,
        "macs_per_image": net.macs,
        "sim_cycles_per_s": sim["cycles_per_s"],
        "lut": resources.get("lut"),
        "ff": resources.get("ff"),
        "bram36": resources.get("bram36"),
        "dsp": resources.get("dsp"),
        "step_seconds": step.times,
        "out_dir": str(out),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(_markdown(summary, plan))
    print(_text(summary), file=sys.stderr, flush=True)
    return summary


def _text(s: dict) -> str:
    lines = [
        "",
        f"bcnn run: {s['model']} on {s['device']} at {s['clock_mhz']:g} MHz",
        f"  bit-exact RTL vs reference engine: {'yes' if s['bit_exact'] else 'NO'} "
        f"({s['mismatches']} mismatches in {s['images']} images)",
    ]
    if s["accuracy"] is not None:
        lines.append(f"  accuracy on these images: {s['accuracy']:.1%}")
    lines += [
        f"  II {s['ii_cycles']:,g} cycles (planned {s['planned_ii_cycles']:,}), "
        f"latency {s['latency_cycles']:,} cycles = {s['latency_us']:.1f} us (planned {s['planned_latency_cycles']:,})",
        f"  {s['fps']:,.0f} images/s, {s['tops'] * 1000:.2f} GOPS at {s['clock_mhz']:g} MHz",
    ]
    if s["lut"] is not None:
        lines.append(f"  Yosys estimate: LUT {s['lut']:,}  FF {s['ff']:,}  BRAM36 {s['bram36']}  DSP {s['dsp']}")
    lines.append(f"  written to {s['out_dir']}/ (summary.json, summary.md, rtl/)")
    return "\n".join(lines)


def _markdown(s: dict, plan: dict) -> str:
    rows = "\n".join(f"| {layer['name']} | {layer['pe']} | {layer['simd']} | {layer['cycles']:,} |"
                     for layer in plan["layers"])
    return f"""# bcnn run: {s['model']}

| figure | value |
|---|---|
| device, clock | {s['device']}, {s['clock_mhz']:g} MHz |
| images simulated | {s['images']} |
| RTL vs reference engine mismatches | {s['mismatches']} |
| accuracy on these images | {s['accuracy'] if s['accuracy'] is None else f"{s['accuracy']:.1%}"} |
| II (measured / planned) | {s['ii_cycles']:,g} / {s['planned_ii_cycles']:,} cycles |
| latency (measured / planned) | {s['latency_cycles']:,} / {s['planned_latency_cycles']:,} cycles |
| throughput | {s['fps']:,.0f} images/s, {s['tops'] * 1000:.2f} GOPS |
| Yosys LUT / FF / BRAM36 / DSP | {s['lut']} / {s['ff']} / {s['bram36']} / {s['dsp']} |

| layer | PE | SIMD | cycles per image |
|---|---|---|---|
{rows}
"""
