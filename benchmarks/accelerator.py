"""Full-scale accelerator figures: plan, generate, Verilator simulation and Yosys estimate of a whole network.

    python benchmarks/accelerator.py binarynet --device xc7vx690t --clock-mhz 90 --images 100
    python benchmarks/accelerator.py cnv --device xc7z020 --clock-mhz 100 --images 100
    python benchmarks/accelerator.py binarynet --steps plan          # only the plans (seconds)

Every step writes OUT/<net>-<device>/<step>.json and is skipped when that file exists (delete it to redo):
resumable after an interruption, and Yosys/Verilator results are cached by content besides
(~/.cache/bcnn). Steps: plan (ours and FINN's heuristic at the same cap), generate + lint, sim (Verilator,
bit-exact against the CPU engine on CIFAR-10 test images, measured II and latency), synth (Yosys per
engine, resource-model error per engine). Networks have random weights (throughput and resources do not
depend on them; thresholds are near the accumulator medians so activity is realistic); a trained
``.bcnn`` can be given with --net-file. Run it in the background with a log:

    nohup python benchmarks/accelerator.py binarynet > bench-binarynet.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from bcnn import ir
from bcnn.fileio import json_default
from bcnn.randnet import ConvSpec, random_net

TOPOLOGIES = {
    "binarynet": ([ConvSpec(128, pad=1), ConvSpec(128, pad=1, pool=2), ConvSpec(256, pad=1),
                   ConvSpec(256, pad=1, pool=2), ConvSpec(512, pad=1), ConvSpec(512, pad=1, pool=2)],
                  [1024, 1024, 10]),
    "cnv": ([ConvSpec(64), ConvSpec(64, pool=2), ConvSpec(128), ConvSpec(128, pool=2), ConvSpec(256),
             ConvSpec(256)], [512, 512, 10]),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def step(out: Path, name: str, fn):
    path = out / f"{name}.json"
    if path.is_file():
        log(f"{name}: done before ({path})")
        return json.loads(path.read_text())
    t0 = time.monotonic()
    log(f"{name}: running")
    res = fn()
    res["seconds"] = round(time.monotonic() - t0, 1)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=1, default=json_default) + "\n")
    tmp.replace(path)
    log(f"{name}: {res['seconds']} s")
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("net", choices=sorted(TOPOLOGIES))
    ap.add_argument("--net-file", help="a trained NET.bcnn of this topology instead of random weights")
    ap.add_argument("--device", default=None)
    ap.add_argument("--clock-mhz", type=float, default=None)
    ap.add_argument("--max-util", type=float, default=0.8)
    ap.add_argument("--target-fps", type=float)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=1, help="Yosys engines in parallel")
    ap.add_argument("--steps", default="plan,generate,sim,synth,report")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    device = args.device or {"binarynet": "xc7vx690t", "cnv": "xc7z020"}[args.net]
    clock = args.clock_mhz or {"binarynet": 90.0, "cnv": 100.0}[args.net]
    out = Path(args.out) / f"{args.net}-{device}"
    out.mkdir(parents=True, exist_ok=True)
    steps = args.steps.split(",")

    net_path = out / "net.bcnn"
    if args.net_file:
        net = ir.load(args.net_file)
    elif net_path.is_file():
        net = ir.load(net_path)
    else:
        convs, fcs = TOPOLOGIES[args.net]
        net = random_net(np.random.default_rng(0), (32, 32, 3), convs=convs, fcs=fcs)
        net.meta["source"] = f"random weights, topology {args.net} (benchmarks/accelerator.py)"
        ir.save(net, net_path)

    from bcnn.plan import make_plan, save_plan

    def do_plan():
        ours = make_plan(net, device, clock, max_util=args.max_util, target_fps=args.target_fps)
        from bcnn.errors import BcnnError

        try:
            finn = make_plan(net, device, clock, max_util=args.max_util, target_fps=args.target_fps,
                             planner="finn")
            finn_note = "at the same target" if args.target_fps else "at the same cap"
        except BcnnError as e:  # FINN's heuristic cannot reach the target: its best within the cap
            finn = make_plan(net, device, clock, max_util=args.max_util, planner="finn")
            finn_note = f"target not reachable ({e}); FINN heuristic's best within the cap"
        best = make_plan(net, device, clock, max_util=args.max_util)  # our highest fps within the cap
        save_plan(ours, out / "plan.json")
        save_plan(finn, out / "plan_finn.json")
        save_plan(best, out / "plan_max.json")
        keys = ("ii_cycles", "latency_cycles", "fps", "tops", "lut", "ff", "bram36", "watts", "gops_per_w")
        return {"ours": {k: ours[k] for k in keys}, "finn": {k: finn[k] for k in keys}, "finn_note": finn_note,
                "ours_max_fps_within_cap": {k: best[k] for k in keys},
                "ours_layers": [{k: la[k] for k in ("name", "pe", "simd", "mem", "cycles", "lut", "bram36")}
                                for la in ours["layers"]],
                "finn_layers": [{k: la[k] for k in ("name", "pe", "simd", "mem", "cycles", "lut", "bram36")}
                                for la in finn["layers"]]}

    step(out, "plans", do_plan)
    plan = json.loads((out / "plan.json").read_text())
    rtl = out / "rtl"

    if "generate" in steps:
        def do_gen():
            from bcnn.rtl.generate import generate
            from bcnn.sim import lint

            generate(net, plan, rtl)
            warnings = lint(rtl)
            size = sum(p.stat().st_size for p in rtl.iterdir())
            return {"lint": warnings, "rtl_bytes": size}

        step(out, "generate", do_gen)

    if "sim" in steps:
        def do_sim():
            from bcnn import data
            from bcnn.sim import simulate

            ds = data.load(ir.bundled_sample(), limit=args.images)
            try:
                from bcnn.engine.fast import FastEngine

                expected = FastEngine(net).run(ds.images)
                engine = "fast"
            except Exception as e:  # noqa: BLE001 - the reference engine is the fallback
                log(f"fast engine unavailable ({e}); reference engine")
                from bcnn.engine.reference import run_reference

                expected = run_reference(net, ds.images)
                engine = "reference"
            res = simulate(rtl, ds.images, expected, verbose=True)
            res.pop("outputs")
            res["expected_from"] = engine
            res["planned_ii_cycles"] = plan["ii_cycles"]
            res["planned_latency_cycles"] = plan["latency_cycles"]
            res["latency_us"] = res["latency_cycles"] / clock
            res["fps"] = clock * 1e6 / res["ii_cycles"]
            res["tops"] = 2 * net.macs * res["fps"] / 1e12
            return res

        step(out, "sim", do_sim)

    if "synth" in steps:
        def do_synth():
            from bcnn.synth import synthesize

            res = synthesize(rtl, part=device, jobs=args.jobs)
            rows = []
            for row, la in zip(res["layers"], plan["layers"], strict=True):
                rows.append({"name": row["name"], "yosys_lut": row["lut"], "model_lut": la["lut"],
                             "lut_error": (la["lut"] - row["lut"]) / max(row["lut"], 1),
                             "yosys_ff": row["ff"], "model_ff": la["ff"],
                             "yosys_bram36": row["bram36"], "model_bram36": la["bram36"]})
            dev = plan["device"]
            return {"lut": res["lut"], "ff": res["ff"], "bram36": res["bram36"], "dsp": res["dsp"],
                    "lut_util": res["lut"] / dev["lut"], "bram_util": res["bram36"] / dev["bram36"],
                    "engines": rows, "yosys": res["yosys"]}

        step(out, "synth", do_synth)

    if "report" in steps and (out / "synth.json").is_file():
        # the resource model (as calibrated now) against the Yosys figures of every engine
        from bcnn.resources import estimate_layer

        syn = json.loads((out / "synth.json").read_text())
        rows, tot = [], {"model": 0, "yosys": 0}
        for i, (e, la) in enumerate(zip(syn["engines"], plan["layers"], strict=True)):
            m = estimate_layer(net, i, la["pe"], la["simd"], la["mem"])
            rows.append({"name": e["name"], "pe": la["pe"], "simd": la["simd"], "mem": la["mem"],
                         "yosys_lut": e["yosys_lut"], "model_lut": m["lut"],
                         "lut_error": round((m["lut"] - e["yosys_lut"]) / max(e["yosys_lut"], 1), 4),
                         "yosys_ff": e["yosys_ff"], "model_ff": m["ff"],
                         "yosys_bram36": e["yosys_bram36"], "model_bram36": m["bram36"]})
            tot["model"] += m["lut"]
            tot["yosys"] += e["yosys_lut"]
        rep = {"engines": rows, "total_lut_error": (tot["model"] - tot["yosys"]) / tot["yosys"],
               "mean_abs_engine_lut_error": float(np.mean([abs(r["lut_error"]) for r in rows]))}
        (out / "model_error.json").write_text(json.dumps(rep, indent=1) + "\n")
        log(f"model vs Yosys: total LUT error {rep['total_lut_error']:+.1%}, mean |engine error| "
            f"{rep['mean_abs_engine_lut_error']:.1%}")
    log("finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
