"""Throughput and latency of every backend across batch sizes: fast engine, reference engine, PyTorch, FPGA.

Every CPU/GPU backend runs the same integer function of the same network (PyTorch in float32, which is exact
for these integers), and each backend's outputs are checked against the reference engine before it is timed.
A row per (backend, batch): images/s = batch / median seconds per call, latency = the median call in ms.
The FPGA row comes from cycles, not from a run: a pipelined design accepts one image every II cycles whatever
the batch, so images/s = f / II and latency = (pipeline latency + (batch − 1)·II) / f.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bcnn.engine.float_torch import float_torch_model
from bcnn.errors import BcnnError
from bcnn.gpupower import GpuPower
from bcnn.ir import Net
from bcnn.randnet import ConvSpec, random_images, random_net

# torch-packed: bit-packed XOR + popcount in torch integer ops (bcnn.engine.packed_torch), eager on the CPU and
# torch.compile'd on the GPU; *-cuda: on the GPU, skipped with a note without one.
BACKENDS = ("fast", "reference", "torch", "torch-cuda", "torch-packed", "torch-packed-cuda", "fpga")
_TORCH_BACKENDS = ("torch", "torch-cuda", "torch-packed", "torch-packed-cuda")

# The two CIFAR-10 topologies of the comparison (see DESIGN.md): FINN's CNV and the paper's BinaryNet.
TOPOLOGIES: dict[str, tuple[list[ConvSpec], list[int]]] = {
    "cnv": ([ConvSpec(64), ConvSpec(64, pool=2), ConvSpec(128), ConvSpec(128, pool=2), ConvSpec(256),
             ConvSpec(256)], [512, 512, 10]),
    "binarynet": ([ConvSpec(128, pad=1), ConvSpec(128, pad=1, pool=2), ConvSpec(256, pad=1),
                   ConvSpec(256, pad=1, pool=2), ConvSpec(512, pad=1), ConvSpec(512, pad=1, pool=2)],
                  [1024, 1024, 10]),
}


def topology_net(name: str, seed: int = 0) -> Net:
    """A random-weight IR network with a named topology ("cnv", "binarynet") on 32×32×3 inputs."""
    if name not in TOPOLOGIES:
        raise BcnnError(f"unknown topology {name!r} (known: {', '.join(TOPOLOGIES)})")
    convs, fcs = TOPOLOGIES[name]
    net = random_net(np.random.default_rng(seed), (32, 32, 3), convs=convs, fcs=fcs)
    net.meta["source"] = f"random weights, {name} topology"
    return net


# ------------------------------------------------------------------------------------------------- PyTorch

def torch_runner(net: Net, device: str, threads: int | None,
                 build: Callable[..., object] | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """Images in, int64 accumulators out, for a model from ``build(net, device)`` (default: float_torch_model)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    model = (build or float_torch_model)(net, device)

    def run(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = model(torch.from_numpy(images).to(device))
            if device != "cpu":
                torch.cuda.synchronize()
            # the float32 model's accumulators are rounded integers already; the packed one's are int64
            return out.to(torch.int64).cpu().numpy()

    return run


# --------------------------------------------------------------------------------------------------- timing

def _time(run: Callable[[np.ndarray], object], images: np.ndarray, repeats: int, min_seconds: float) -> float:
    """Median seconds of one call, after one untimed call; repeats more (up to 10×) until min_seconds passed."""
    run(images)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - start < min_seconds and len(times) < 10 * repeats):
        t0 = time.perf_counter()
        run(images)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def fpga_rows(fpga: dict, batches: Sequence[int]) -> list[dict]:
    """Rows for a pipelined design: constant images/s = f / II; latency = (latency + (B − 1)·II) / f."""
    ii, lat, mhz = float(fpga["ii_cycles"]), float(fpga["latency_cycles"]), float(fpga["clock_mhz"])
    return [{"backend": "fpga", "batch": b, "images_per_s": mhz * 1e6 / ii,
             "latency_ms": (lat + (b - 1) * ii) / (mhz * 1e3)} for b in batches]


def run_bench(
    net: Net,
    batches: Sequence[int] = (1, 4, 16, 64, 256),
    backends: Sequence[str] = ("fast", "reference", "torch", "torch-cuda", "torch-packed-cuda"),
    repeats: int = 5,
    fpga: dict | None = None,
    threads: int | None = None,
    reference_max_batch: int = 4,
    min_seconds: float = 0.5,
    images: np.ndarray | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Time every backend at every batch size; returns {"results": [rows], "notes": [...], ...}.

    ``fpga``: {"ii_cycles", "latency_cycles", "clock_mhz"} adds the FPGA rows. ``images``: uint8 images to
    draw batches from (default: random pixels; throughput does not depend on them). Backends that are not
    available here (the *-cuda ones without a GPU) are skipped with a note, and each backend must reproduce
    the reference engine's outputs on a few images before it is timed.
    """
    from bcnn.engine.fast import FastEngine, warmup
    from bcnn.engine.reference import run_reference

    log = log or (lambda msg: None)
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise BcnnError(f"unknown backends {sorted(unknown)} (known: {', '.join(BACKENDS)})")
    rng = np.random.default_rng(0)
    pool = images if images is not None else random_images(rng, net, max(batches))
    if len(pool) < max(batches):  # repeat images to fill the largest batch
        pool = pool[np.arange(max(batches)) % len(pool)]
    check = pool[:4]
    expected = run_reference(net, check)
    compile_s = warmup()
    result: dict = {"macs_per_image": net.macs, "layers": len(net.layers), "batches": list(batches),
                    "threads": threads or _cpu_threads(), "fast_compile_seconds": round(compile_s, 3),
                    "results": [], "notes": []}

    runners: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    for name in backends:
        if name == "fast":
            engine = FastEngine(net)
            runners[name] = lambda x, e=engine: e.run(x, threads=threads)
        elif name == "reference":
            runners[name] = lambda x: run_reference(net, x)
        elif name in _TORCH_BACKENDS:
            try:
                import torch
            except ImportError:
                result["notes"].append(f"{name}: torch is not installed")
                continue
            cuda = name.endswith("-cuda")
            if cuda and not torch.cuda.is_available():
                result["notes"].append(f"{name}: no CUDA device here")
                continue
            build = None
            if name.startswith("torch-packed"):
                from bcnn.engine.packed_torch import packed_torch_model

                # On the GPU, torch.compile fuses XOR + popcount + sum into one Triton kernel instead of
                # materializing (positions, out_ch, words) temporaries; the CPU variant stays eager (quick start).
                build = functools.partial(packed_torch_model, compile=cuda)
            try:
                runners[name] = torch_runner(net, "cuda" if cuda else "cpu", threads, build)
            except BcnnError as e:
                result["notes"].append(f"{name}: {e}")
                continue
        if name not in runners:
            continue
        try:
            got = runners[name](check)  # a compiled model compiles here
        except Exception as e:
            if name not in _TORCH_BACKENDS:
                raise
            # e.g. torch.compile without a working Triton: note it and time the other backends
            result["notes"].append(f"{name}: failed to run ({type(e).__name__}: {e})")
            del runners[name]
            continue
        if not np.array_equal(got, expected):
            raise BcnnError(f"backend {name} does not reproduce the reference engine's outputs")

    for name, run in runners.items():
        for b in batches:
            if name == "reference" and b > reference_max_batch:
                continue
            reps = repeats if name != "reference" else min(repeats, 2)
            with GpuPower() if name.endswith("-cuda") else contextlib.nullcontext() as power:
                seconds = _time(run, np.ascontiguousarray(pool[:b]), reps,
                                min_seconds if name != "reference" else 0)
            row = {"backend": name, "batch": b, "images_per_s": b / seconds, "latency_ms": seconds * 1e3}
            if power is not None and power.watts is not None:  # measured board power (nvidia-smi)
                row["watts"] = power.watts
                row["energy_mj_per_image"] = power.watts / row["images_per_s"] * 1e3
            result["results"].append(row)
            log(f"{name:<17} batch {b:>4}: {row['images_per_s']:>10,.1f} images/s, {row['latency_ms']:>9.3f} ms")
    if fpga:
        result["fpga"] = dict(fpga)
        result["results"] += fpga_rows(fpga, batches)
    elif "fpga" in backends:
        result["notes"].append("fpga: no plan or simulation figures given")
    return result


def _cpu_threads() -> int:
    try:
        import numba

        return int(numba.get_num_threads())
    except ImportError:
        return os.cpu_count() or 1


def plot(result: dict, path: str | os.PathLike, title: str = "", metric: str = "images_per_s") -> Path:
    """PNG of ``metric`` (images_per_s or latency_ms) against batch size, log-log, one line per backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for name in dict.fromkeys(r["backend"] for r in result["results"]):
        rows = sorted((r for r in result["results"] if r["backend"] == name), key=lambda r: r["batch"])
        ax.plot([r["batch"] for r in rows], [r[metric] for r in rows], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel({"images_per_s": "images / s", "latency_ms": "latency of a batch (ms)"}[metric])
    ax.set_title(title or f"{'throughput' if metric == 'images_per_s' else 'latency'} against batch size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def format_table(result: dict) -> str:
    rows = ["backend            batch     images/s   latency ms"]
    for r in result["results"]:
        rows.append(f"{r['backend']:<17} {r['batch']:>6} {r['images_per_s']:>12,.1f} {r['latency_ms']:>12.3f}")
    return "\n".join(rows + [f"note: {n}" for n in result["notes"]])
