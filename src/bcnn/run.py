"""The main job: one model through every stage, with the time of each, into one report.

compile (when given ONNX) → plan → generate → CPU engines and torch (compared with the reference engine) →
Verilator build and simulate (compared image by image) → Yosys estimate → CPU benchmarks across batch
sizes → ``report.html``, ``report.md``, ``report.json`` and ``summary.json`` in the output folder.
"""

from __future__ import annotations

import json
import os
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


def run_flow(model: str = "binarynet", device: str = "xc7vx690t", clock_mhz: float = 90.0, images: int = 100,
             data: str | None = None, out_dir: str | Path = "bcnn-out", skip_synth: bool = False,
             skip_bench: bool = False, batches: tuple[int, ...] = (1, 4, 16, 64, 256),
             synth_jobs: int | None = None) -> dict:
    from bcnn import ir
    from bcnn.bench import fpga_rows, run_bench, torch_runner
    from bcnn.cli import _load_data, _load_net_any
    from bcnn.devices import get_device
    from bcnn.engine.fast import run_fast
    from bcnn.engine.reference import predict, run_reference
    from bcnn.plan import make_plan, save_plan
    from bcnn.power import estimate
    from bcnn.report import write_report
    from bcnn.rtl.generate import generate
    from bcnn.sim import simulate

    if images < 2:
        raise BcnnError("--images must be at least 2: the II is measured between consecutive images")
    if synth_jobs is not None and synth_jobs < 1:
        raise BcnnError("--jobs must be at least 1")
    if data is not None and not Path(data).exists():  # before minutes of compile, plan and generate
        raise BcnnError(f"--data {data}: no such file or folder")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BcnnError(f"--out {out}: is a file; expected the folder to write the run into")
    out.mkdir(parents=True, exist_ok=True)
    step = _Steps(7 - skip_synth - skip_bench)

    with step("compile"):
        net = _load_net_any(model)
        ir.save(net, out / "net.bcnn")
    with step("plan"):
        plan = make_plan(net, device=device, clock_mhz=clock_mhz)
        save_plan(plan, out / "plan.json")
    with step("generate Verilog"):
        rtl_dir = out / "rtl"
        generate(net, plan, rtl_dir)
    with step("CPU engines and torch"):
        ds = _load_data(net, data, images)
        if len(ds) < 2:
            raise BcnnError(f"{data}: {len(ds)} image; the II is measured between consecutive images, give 2 or more")
        if len(ds) < images:
            print(f"      the data holds {len(ds)} images: running those, not {images}", file=sys.stderr)
        expected = run_reference(net, ds.images)
        fast_mismatches = int((run_fast(net, ds.images) != expected).any(axis=1).sum())
        torch_mismatches = int((torch_runner(net, "cpu", None)(ds.images) != expected).any(axis=1).sum())
        pred = predict(net, expected)
    with step(f"Verilator build and simulate {len(ds)} images"):
        sim = simulate(rtl_dir, ds.images, expected=expected, verbose=True)
    resources: dict = {}
    if not skip_synth:
        with step("Yosys estimate"):
            from bcnn.synth import synthesize

            # engines not in a cache run in parallel, one Yosys per core (up to 4: each can take GBs of memory)
            jobs = synth_jobs or min(4, os.cpu_count() or 1)
            resources = synthesize(rtl_dir, part=device, jobs=jobs)
    fpga = {"ii_cycles": sim["ii_cycles"] or plan["ii_cycles"], "latency_cycles": sim["latency_cycles"],
            "clock_mhz": clock_mhz}
    bench = {"results": fpga_rows(fpga, batches), "notes": []}
    if not skip_bench:
        with step("CPU benchmarks across batch sizes"):
            bench = run_bench(net, batches=batches, backends=("fast", "torch", "torch-cuda"), repeats=3,
                              min_seconds=0.2, fpga=fpga)

    ii = fpga["ii_cycles"]
    power = estimate(get_device(device), clock_mhz, resources) if resources else None
    summary = {
        "model": str(model),
        "device": device,
        "clock_mhz": clock_mhz,
        "images": len(ds),
        "accuracy": float((pred == ds.labels).mean()) if ds.labels is not None else None,
        # as recorded when the model was exported (bcnn.train.export_best): its whole test set
        "model_test_accuracy": net.meta.get("engine_test_acc"),
        "model_test_images": net.meta.get("test_images"),
        "model_test_data": net.meta.get("test_data"),  # the format: cifar-10-batches-py is the original CIFAR-10
        "model_epochs": net.meta.get("epochs_trained"),
        "model_torch_mismatches": net.meta.get("torch_engine_mismatches"),
        "mismatches": sim["mismatches"] + fast_mismatches + torch_mismatches,
        "rtl_mismatches": sim["mismatches"],
        "fast_engine_mismatches": fast_mismatches,
        "torch_mismatches": torch_mismatches,
        "bit_exact": sim["mismatches"] + fast_mismatches + torch_mismatches == 0,
        "ii_cycles": sim["ii_cycles"],
        "latency_cycles": sim["latency_cycles"],
        "planned_ii_cycles": plan["ii_cycles"],
        "planned_latency_cycles": plan["latency_cycles"],
        "fps": clock_mhz * 1e6 / ii,
        "latency_us": sim["latency_cycles"] / clock_mhz,
        "tops": 2 * net.macs * clock_mhz * 1e6 / ii / 1e12,
        "macs_per_image": net.macs,
        "sim_cycles_per_s": sim["cycles_per_s"],
        "lut": resources.get("lut"),
        "ff": resources.get("ff"),
        "bram36": resources.get("bram36"),
        "dsp": resources.get("dsp"),
        "watts": None if power is None else power["watts"],
        "step_seconds": step.times,
        "out_dir": str(out),
    }
    by_layer = {r["name"]: {"lut": r["lut"], "bram36": r["bram36"]} for r in resources.get("layers", [])}
    paths = write_report({"summary": summary, "plan": plan, "simulation": {k: v for k, v in sim.items()
                                                                              if k != "outputs"},
                          "resources": resources, "resources_by_layer": by_layer, "power": power, "bench": bench},
                         out)
    summary["report"] = paths["html"]
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(_text(summary), file=sys.stderr, flush=True)
    return summary


def _text(s: dict) -> str:
    lines = [
        "",
        f"bcnn run: {s['model']} on {s['device']} at {s['clock_mhz']:g} MHz",
        f"  bit-exact (RTL, fast engine, torch vs reference engine): {'yes' if s['bit_exact'] else 'NO'} "
        f"({s['rtl_mismatches']}, {s['fast_engine_mismatches']}, {s['torch_mismatches']} mismatches in "
        f"{s['images']} images)",
    ]
    if s["accuracy"] is not None:
        lines.append(f"  accuracy on these images: {s['accuracy']:.1%}")
    if s.get("model_test_accuracy") is not None:
        data = f"{s['model_test_data']}; " if s.get("model_test_data") else ""
        lines.append(f"  model accuracy at export: {s['model_test_accuracy']:.2%} on {s['model_test_images']:,} test "
                     f"images ({data}epochs trained: {s['model_epochs']})")
    lines += [
        f"  II {s['ii_cycles']:,g} cycles (planned {s['planned_ii_cycles']:,}), "
        f"latency {s['latency_cycles']:,} cycles = {s['latency_us']:.1f} us (planned {s['planned_latency_cycles']:,})",
        f"  {s['fps']:,.0f} images/s, {s['tops'] * 1000:.2f} GOPS at {s['clock_mhz']:g} MHz",
    ]
    if s["lut"] is not None:
        lines.append(f"  Yosys estimate: LUT {s['lut']:,}  FF {s['ff']:,}  BRAM36 {s['bram36']}  DSP {s['dsp']}")
    if s["watts"] is not None:
        gops_per_w = 2 * s["macs_per_image"] * s["fps"] / 1e9 / s["watts"]
        lines.append(f"  power {s['watts']:.2f} W (estimate), {gops_per_w:,.0f} GOPS/W")
    lines.append(f"  report: {s['report']}  (also report.md, report.json, rtl/ in {s['out_dir']})")
    return "\n".join(lines)
