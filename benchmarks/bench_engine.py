"""Compare the CPU backends across batch sizes on the CNV and BinaryNet topologies (and LCE where installed).

    python benchmarks/bench_engine.py                       # every topology, batches 1,4,16,64,256
    python benchmarks/bench_engine.py --nets random:binarynet --batch 1,16 --repeats 9

Networks: bundled trained models when the package has them (``cnv``, ``binarynet``), else random-weight IR
networks with the same topology (throughput does not depend on the weights). Writes
``OUT/<name>.json`` and ``OUT/<name>.png`` and prints a table per network.

Larq Compute Engine 0.16 needs numpy<2 and tensorflow 2.16, so it is never a dependency of bcnn: point
``--lce-python`` (or $LCE_PYTHON) at the python of a separate venv made with
``pip install tensorflow==2.16.2 tf-keras==2.16.0 larq-compute-engine==0.16.0 larq==0.14.0``; without one
the LCE rows are skipped with a message.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bcnn import bench, ir

HERE = Path(__file__).resolve().parent

# Runs inside the LCE venv: builds the same topology in Larq (binary padding with +1, no biases), converts it
# with LCE and times its fastest x86 path (indirect bgemm), one image per call as LCE's interpreter takes.
LCE_SCRIPT = r"""
import json, os, sys, time
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
import numpy as np, tensorflow as tf, larq as lq, larq_compute_engine as lce
topology, threads, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
convs = {"cnv": [(64, 0, 1), (64, 0, 2), (128, 0, 1), (128, 0, 2), (256, 0, 1), (256, 0, 1)],
         "binarynet": [(128, 1, 1), (128, 1, 2), (256, 1, 1), (256, 1, 2), (512, 1, 1), (512, 1, 2)]}[topology]
fcs = {"cnv": [512, 512, 10], "binarynet": [1024, 1024, 10]}[topology]
kw = dict(kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False)
layers = [tf.keras.Input((32, 32, 3))]
for i, (ch, pad, pool) in enumerate(convs):
    extra = dict(input_quantizer="ste_sign", pad_values=1.0) if i else {}
    layers.append(lq.layers.QuantConv2D(ch, 3, padding="same" if pad else "valid", **kw, **extra))
    if pool > 1:
        layers.append(tf.keras.layers.MaxPool2D(pool))
    layers.append(tf.keras.layers.BatchNormalization(scale=False))
layers.append(tf.keras.layers.Flatten())
for n in fcs:
    layers += [lq.layers.QuantDense(n, input_quantizer="ste_sign", **kw), tf.keras.layers.BatchNormalization()]
model = tf.keras.Sequential(layers)
interp = lce.testing.Interpreter(lce.convert_keras_model(model), num_threads=threads, use_indirect_bgemm=True)
x = np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
interp.predict(x)
times, start = [], time.perf_counter()
while time.perf_counter() - start < seconds or len(times) < 10:
    t0 = time.perf_counter(); interp.predict(x); times.append(time.perf_counter() - t0)
t = float(np.median(times))
print(json.dumps({"backend": "lce", "batch": 1, "images_per_s": 1 / t, "latency_ms": t * 1e3}))
"""


def run_lce(python: str | None, topology: str, threads: int) -> dict | None:
    """LCE's batch-1 row, or None with a message when no LCE venv is available."""
    if not python or not Path(python).exists():
        print(f"Larq Compute Engine: no LCE python ({python or 'set --lce-python or $LCE_PYTHON'}); skipped")
        return None
    probe = subprocess.run([python, "-c", "import larq_compute_engine"], capture_output=True, text=True)
    if probe.returncode:
        print(f"Larq Compute Engine: not importable with {python}; skipped ({probe.stderr.strip()[-200:]})")
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(LCE_SCRIPT)
    try:
        out = subprocess.run([python, f.name, topology, str(threads), "3"], capture_output=True, text=True,
                             env={**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"})
    finally:
        Path(f.name).unlink()
    if out.returncode:
        print(f"Larq Compute Engine: failed; skipped ({out.stderr.strip()[-400:]})")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def default_nets() -> list[str]:
    names = []
    for topo in ("cnv", "binarynet"):
        bundled = ir.bundled_models_dir() / f"{topo}.bcnn"
        names.append(str(bundled) if bundled.is_file() else f"random:{topo}")
    return names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nets", help="comma-separated: NET.bcnn, bundled names, random:cnv, random:binarynet")
    p.add_argument("--batch", default="1,4,16,64,256")
    p.add_argument("--backends", default="fast,reference,torch,torch-cuda,torch-packed-cuda")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--lce-python", default=os.environ.get("LCE_PYTHON", str(HERE / ".lce-venv/bin/python")))
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    batches = [int(b) for b in args.batch.split(",")]
    for spec in args.nets.split(",") if args.nets else default_nets():
        if spec.startswith("random:"):
            topo = spec.split(":", 1)[1]
            net = bench.topology_net(topo)
        else:
            net = ir.load_net(spec)
            topo = Path(spec).stem
        name = spec.replace("random:", "random-").replace("/", "_") if spec.startswith("random:") else topo
        print(f"== {spec}: {net.macs / 1e6:.1f} M MACs per image", flush=True)
        result = bench.run_bench(net, batches=batches, backends=args.backends.split(","), repeats=args.repeats,
                                 threads=args.threads, log=lambda m: print("  " + m, flush=True))
        if topo in bench.TOPOLOGIES:
            row = run_lce(args.lce_python, topo, result["threads"])
            if row:
                result["results"].append(row)
            else:
                result["notes"].append("lce: not installed in a separate venv; skipped")
        result["net"] = spec
        (out / f"{name}.json").write_text(json.dumps(result, indent=1))
        bench.plot(result, out / f"{name}.png", title=f"{spec}: images/s against batch size")
        print(bench.format_table(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
