"""A distillation teacher's cost and exactness on the CPU (or a GPU, --device): a compiled net on the integer
engine against the same net as its integer function in float32 torch (the teacher `bcnn train --teacher NET`
uses on a GPU; eager, and through torch.compile as a compiled run uses it) and rebuilt as a Brevitas model (a
GPU's teacher until session 22), side by side; also what each takes to set up.

    python benchmarks/teacher_speed.py [--net binarynet] [--data DIR] [--batch 100] [--batches 10] [--threads 1]
    python benchmarks/teacher_speed.py --device cuda --batch 400   # a lent GPU: the integer function alone
    python benchmarks/teacher_speed.py --float-teacher RUN ...     # and a float teacher (--arch resnet9's run)

The runners alternate batch by batch on the same augmented training images, so a busy shared machine slows
them alike; each figure is the median CPU time per 1,000 images (threads=1: time a shared core steals does
not count; on a GPU, wall clock after a synchronize, the batch already there). Each torch runner's logits
are compared with the engine's, which are the net's exactly: the largest difference, and the images whose
predicted class differs. A float teacher (--float-teacher) runs in bf16, as it teaches in a bf16 run, eager and
compiled; its last two columns compare another net's logits with the engine's.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bcnn import data as bdata
from bcnn import ir
from bcnn.checkpoints import CALIBRATION_IMAGES
from bcnn.decompile import load_net_weights
from bcnn.distill import engine_logits, float_torch_logits, load_teacher, model_logits
from bcnn.models import build_model
from bcnn.train import augment, autocast


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--net", default="binarynet", help="a bundled name or a .bcnn file that names its --arch")
    ap.add_argument("--data", help="training images (default: the 300 bundled sample images)")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu",
                    help="cuda: the integer function, eager and compiled, on the GPU by wall clock, against the "
                         "engine on the CPU (the Brevitas model is left out)")
    ap.add_argument("--float-teacher", metavar="RUN", help="also a float teacher: a run folder or best.pt of "
                    "`bcnn train --arch resnet9`")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    on_gpu = device.type != "cpu"
    net = ir.load_net(args.net)
    train_images = bdata.load(args.data or ir.bundled_sample(), "train").images
    t0 = time.perf_counter()
    integer_fn = float_torch_logits(net, device)
    integer_fn_s = time.perf_counter() - t0
    # the integer function is called inside bf16 autocast, as a training step does
    runners = {"engine": (engine_logits(net), None), "integer fn fp32": (integer_fn, "bf16"),
               "integer fn comp": (float_torch_logits(net, device, compiled=True), "bf16")}  # compiles on batch 1
    if args.float_teacher:
        student = build_model(net.meta["arch"], **net.meta.get("model_options", {}))
        for name, compiled in (("float eager", False), ("float compiled", True)):
            runners[name] = (load_teacher(args.float_teacher, student, device, compiled,
                                                   channels_last=on_gpu)[0], "bf16")
    rebuilt_s = None
    if not on_gpu:
        model = build_model(net.meta["arch"], **net.meta.get("model_options", {}))
        torch.manual_seed(0)
        t0 = time.perf_counter()
        load_net_weights(model, net, train_images[:CALIBRATION_IMAGES])
        rebuilt_s = time.perf_counter() - t0
        model.eval().requires_grad_(False)
        runners.update({"torch fp32": (model_logits(model), "fp32"), "torch bf16": (model_logits(model), "bf16")})
    # on a GPU the work is asynchronous and the CPU waits: wall clock, after a synchronize
    clock = time.perf_counter if on_gpu else time.process_time
    gen = torch.Generator().manual_seed(0)
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in runners}
    for _ in range(args.batches + 1):  # the first batch warms up (the engine's kernels load from numba's cache)
        idx = torch.randint(0, len(train_images), (args.batch,), generator=gen)
        batch = augment(torch.from_numpy(train_images[idx.numpy()]), gen)
        on_device = batch.to(device)  # where a training step's batch is
        for name, (logits, precision) in runners.items():
            t0 = clock()
            with torch.no_grad(), autocast(device, precision or "fp32"):
                y = logits(batch if name == "engine" else on_device).float()
                if on_gpu:
                    torch.cuda.synchronize()
            seconds[name].append(clock() - t0)
            outputs[name].append(y.cpu())
    exact = torch.cat(outputs["engine"][1:])
    rebuilt = "not on a GPU run" if rebuilt_s is None else f"{rebuilt_s:.1f} s"
    print(f"set-up (wall clock): the torch model rebuilt and calibrated on "
          f"{min(CALIBRATION_IMAGES, len(train_images))} images "
          f"{rebuilt}, the integer function {integer_fn_s:.2f} s")
    print(f"{args.net}, batch {args.batch}, {args.batches} batches, {args.threads} thread(s), "
          f"{'wall clock on ' + str(device) if on_gpu else 'CPU time'}")
    print(f"{'runner':<16} {'s / 1,000 images':>17} {'vs engine':>10} {'max |logit diff|':>17} {'class differs':>14}")
    base = statistics.median(seconds["engine"][1:])
    for name in runners:
        s = statistics.median(seconds[name][1:])
        y = torch.cat(outputs[name][1:])
        differs = int((y.argmax(1) != exact.argmax(1)).sum())
        print(f"{name:<16} {s * 1000 / args.batch:>17.2f} {s / base:>9.1f}x {float((y - exact).abs().max()):>17.3g} "
              f"{differs:>7} of {len(y)}")


if __name__ == "__main__":
    main()
