"""Long-running random-network equivalence: thousands of cases, RTL on many, resumable, with a summary.

    python benchmarks/fuzz_equivalence.py                                  # 3000 IR, 150 Brevitas, 30 RTL
    python benchmarks/fuzz_equivalence.py --ir 20000 --brevitas 1000 --rtl 200 --out fuzz-big
    python benchmarks/fuzz_equivalence.py --case brevitas:17               # re-run one case, traceback shown

The same generator as ``tests/test_random_networks.py`` (``bcnn.fuzz``), drawn from numpy generators seeded
with (seed, kind, index), so case ``kind:index`` of a seed is always the same network:

* ``ir``: an IR network with edge cases, reference engine == fast engine;
* ``brevitas``: a Brevitas model exported to QONNX and compiled, torch == qonnx executor == reference == fast;
* ``rtl``: an IR network with a random legal folding, Verilog linted with ``verilator --lint-only -Wall``
  and simulated with Verilator, RTL == reference.

Every finished case is appended to ``OUT/results.jsonl`` at once, so an interrupted run continues where it
stopped when started again with the same ``--out`` and ``--seed`` (cases already there are skipped). The
summary (counts, failures with their spec, time per kind, coverage of the space) is printed and written to
``OUT/summary.json``. Exit status 1 if any case failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from bcnn import fuzz

KINDS = ("ir", "brevitas", "rtl")


def case_draw(seed: int, kind: str, index: int) -> fuzz.RngDraw:
    return fuzz.RngDraw(np.random.default_rng([seed, KINDS.index(kind), index]))


def describe(kind: str, spec: dict) -> dict:
    """The few numbers the coverage summary counts."""
    if kind == "brevitas":
        o = spec["options"]
        return {"size": o["input_size"], "kernel": o["kernel"], "convs": len(o["channels"]),
                "fcs": len(o["fc"]) + 1, "channels": list(o["channels"]) + list(o["fc"]) + [o["num_classes"]],
                "pool": [p or "none" for p in o["pool"]], "pad": list(o["padding"])}
    return {"size": spec["input_shape"][0], "kernel": sorted({k for _, k, _, _ in spec["convs"]}),
            "convs": len(spec["convs"]), "fcs": len(spec["fcs"]),
            "channels": [o for o, _, _, _ in spec["convs"]] + list(spec["fcs"]),
            "pool": [q for _, _, _, q in spec["convs"]], "pad": [p for _, _, p, _ in spec["convs"]]}


def run_case(kind: str, index: int, seed: int, work: Path) -> dict:
    d = case_draw(seed, kind, index)
    t0 = time.perf_counter()
    rec: dict = {"kind": kind, "index": index, "seed": seed}
    try:
        if kind == "ir":
            spec = fuzz.ir_spec(d)
            rec["spec"] = spec
            net, images = fuzz.ir_net(spec)
            fuzz.check_engines(net, images)
            rec["macs"] = net.macs
        elif kind == "brevitas":
            spec = fuzz.brevitas_spec(d)
            rec["spec"] = spec
            res = fuzz.check_brevitas(spec, work_dir=work)
            rec["macs"] = res.net.macs
            rec["phases"] = {k: round(v, 3) for k, v in res.seconds.items()}
        else:
            spec = fuzz.ir_spec(d, rtl=True)
            rec["spec"] = spec
            net, images = fuzz.ir_net(spec)
            pe, simd, mem = fuzz.folding(d, net)
            rec["pe"], rec["simd"], rec["mem"] = pe, simd, mem
            rec["simd_spanning_layers"] = sum(s > layer.in_ch for s, layer in zip(simd, net.layers, strict=True))
            res = fuzz.check_rtl(net, images, pe, simd, work / f"rtl_{index}", mem=mem)
            rec.update(macs=net.macs, ii_cycles=res["ii_cycles"], plan_ii_cycles=res["plan_ii_cycles"],
                       build_s=round(res["build_s"], 2), sim_s=round(res["sim_s"], 3))
        rec["ok"] = True
    except Exception as e:  # noqa: BLE001 - every failure is a finding, recorded with its case
        rec["ok"] = False
        rec["error"] = f"{e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:500]
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    if "spec" in rec:
        rec["cover"] = describe(kind, rec["spec"])
    return rec


def load_done(path: Path, seed: int) -> dict[tuple[str, int], dict]:
    done: dict[tuple[str, int], dict] = {}
    if not path.is_file():
        return done
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:  # a line cut by an interruption: that case runs again
            continue
        if rec.get("seed") == seed:
            done[(rec["kind"], rec["index"])] = rec
    return done


def summarize(records: list[dict], wall: float) -> dict:
    out: dict = {"wall_seconds": round(wall, 1), "kinds": {}}
    for kind in KINDS:
        rs = [r for r in records if r["kind"] == kind]
        if not rs:
            continue
        secs = np.array([r["seconds"] for r in rs])
        cover = [r["cover"] for r in rs if "cover" in r]
        ch = [c for r in cover for c in r["channels"]]
        k = {"cases": len(rs), "passed": sum(r["ok"] for r in rs),
             "failed": [{"case": f"{kind}:{r['index']}", "error": r["error"], "spec": r.get("spec")}
                        for r in rs if not r["ok"]],
             "seconds_total": round(float(secs.sum()), 1), "seconds_median": round(float(np.median(secs)), 3),
             "seconds_max": round(float(secs.max()), 2),
             "input_sizes": sorted({c["size"] for c in cover}),
             "kernels": sorted({k_ for c in cover for k_ in (c["kernel"] if isinstance(c["kernel"], list)
                                                              else [c["kernel"]])}),
             "channels_min_max": [min(ch), max(ch)] if ch else None,
             "distinct_channel_counts": len(set(ch)),
             "conv_layers": dict(sorted(Counter(c["convs"] for c in cover).items())),
             "fc_layers": dict(sorted(Counter(c["fcs"] for c in cover).items())),
             "pool": dict(Counter(str(p) for c in cover for p in c["pool"])),
             "pad": dict(sorted(Counter(p for c in cover for p in c["pad"]).items()))}
        if kind == "rtl":
            timed = [r for r in rs if r["ok"] and r.get("ii_cycles") is not None]  # II needs >= 2 images
            k["ii_equals_plan"] = f"{sum(r['ii_cycles'] == r['plan_ii_cycles'] for r in timed)} of {len(timed)}"
            k["folded_layers_simd_over_cin"] = sum(r.get("simd_spanning_layers", 0) for r in rs)
            k["mem_styles"] = dict(Counter(m for r in rs for m in (r.get("mem") or ["planner"])))
            k["build_seconds_median"] = round(float(np.median([r["build_s"] for r in rs if r["ok"]] or [0])), 1)
        if kind == "brevitas":
            k["dynamo_exports"] = sum(bool(r["spec"]["dynamo"]) for r in rs if "spec" in r)
            k["with_zero_variance"] = sum(r["spec"]["zero_var"] > 0 for r in rs if "spec" in r)
            k["with_zero_scale"] = sum(r["spec"]["zero_scale"] > 0 for r in rs if "spec" in r)
            k["with_negative_scales"] = sum(r["spec"]["negative"] > 0 for r in rs if "spec" in r)
        out["kinds"][kind] = k
    out["failed"] = sum(len(k["failed"]) for k in out["kinds"].values())
    return out


def print_summary(s: dict) -> None:
    print(f"\nfuzz equivalence: {s['wall_seconds']:.0f} s wall")
    print(f"{'kind':<9} {'cases':>6} {'passed':>7} {'failed':>7} {'s/case (median)':>16} {'s total':>8}")
    for kind, k in s["kinds"].items():
        print(f"{kind:<9} {k['cases']:>6} {k['passed']:>7} {len(k['failed']):>7} {k['seconds_median']:>16.3f} "
              f"{k['seconds_total']:>8.0f}")
    for kind, k in s["kinds"].items():
        print(f"  {kind}: input sizes {k['input_sizes'][0]}-{k['input_sizes'][-1]}, kernels {k['kernels']}, "
              f"channels {k['channels_min_max']} ({k['distinct_channel_counts']} distinct), convs {k['conv_layers']}, "
              f"FC layers {k['fc_layers']}, pool {k['pool']}, pad {k['pad']}")
        for f in k["failed"][:10]:
            print(f"  FAILED {f['case']}: {f['error']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ir", type=int, default=3000, help="IR cases (reference == fast)")
    p.add_argument("--brevitas", type=int, default=150, help="Brevitas cases (torch == qonnx == reference == fast)")
    p.add_argument("--rtl", type=int, default=30, help="RTL cases (lint + Verilator == reference)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="fuzz-out", help="folder for results.jsonl and summary.json")
    p.add_argument("--fresh", action="store_true", help="ignore earlier results in OUT")
    p.add_argument("--case", help="run one case, e.g. brevitas:17, and show its traceback")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("NUMBA_NUM_THREADS", "2")
    out = Path(args.out)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)

    if args.case:
        kind, index = args.case.split(":")
        d = case_draw(args.seed, kind, int(index))
        spec = fuzz.ir_spec(d, rtl=kind == "rtl") if kind != "brevitas" else fuzz.brevitas_spec(d)
        print(json.dumps(spec, default=str))
        if kind == "ir":
            fuzz.check_engines(*fuzz.ir_net(spec))
        elif kind == "brevitas":
            fuzz.check_brevitas(spec, work_dir=work)
        else:
            net, images = fuzz.ir_net(spec)
            pe, simd, mem = fuzz.folding(d, net)
            print(f"pe {pe} simd {simd} mem {mem}")
            fuzz.check_rtl(net, images, pe, simd, work / f"rtl_{index}", mem=mem)
        print("ok")
        return 0

    results = out / "results.jsonl"
    if args.fresh and results.exists():
        results.unlink()
    done = load_done(results, args.seed)
    if fuzz.fast_available():
        from bcnn.engine.fast import warmup

        warmup()
    else:
        print("fast engine not importable: IR cases run the reference engine only", file=sys.stderr)
    t0 = time.perf_counter()
    todo = [(kind, i) for kind, n in (("ir", args.ir), ("brevitas", args.brevitas), ("rtl", args.rtl))
            for i in range(n)]
    skipped = sum(1 for key in todo if key in done)
    if skipped:
        print(f"resuming: {skipped} of {len(todo)} cases already in {results}", file=sys.stderr)
    with open(results, "a") as f:
        for n, (kind, i) in enumerate(todo):
            if (kind, i) in done:
                continue
            rec = run_case(kind, i, args.seed, work)
            f.write(json.dumps(rec, default=str) + "\n")
            f.flush()
            done[(kind, i)] = rec
            if not rec["ok"]:
                print(f"FAILED {kind}:{i}: {rec['error']}", file=sys.stderr)
            if (n + 1) % 100 == 0 or kind != "ir":
                print(f"[{n + 1}/{len(todo)}] {kind}:{i} {'ok' if rec['ok'] else 'FAILED'} {rec['seconds']:.2f} s",
                      file=sys.stderr, flush=True)
    records = [done[key] for key in todo]
    summary = summarize(records, time.perf_counter() - t0)
    summary.update(seed=args.seed, resumed_cases=skipped)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    print_summary(summary)
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; run again with the same --out to continue", file=sys.stderr)
        sys.exit(130)
