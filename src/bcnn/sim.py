"""Cycle-accurate simulation of a generated RTL directory with Verilator.

The harness (``bcnn/rtl/harness.cpp``) is compiled once per distinct set of Verilog files (cached by their
hash; the ``.mem`` weight files are read at run time from the RTL directory, so networks that differ only
in weights share a build). It first streams image 0 alone into the empty pipeline to measure the latency
(first pixel accepted -> last output beat), then streams all images back to back for the outputs and the
steady-state initiation interval.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bcnn.errors import BcnnError
from bcnn.fileio import cache_root
from bcnn.rtl.manifest import read_manifest
from bcnn.tools import verilator

HARNESS = Path(__file__).parent / "rtl" / "harness.cpp"
# Lean C++ optimization: the build dominates short simulations on a small machine.
OPT = "-O1"


def default_build_root() -> Path:
    return cache_root() / "verilator"


def _defines(m: dict) -> dict[str, int]:
    i, o = m["input"], m["output"]
    if not 1 <= o["acc_bits"] <= 64:
        raise BcnnError(f"output width {o['acc_bits']} bits is not supported by the harness (1..64)")
    return {"PIX_BYTES": i["channels"], "IMG_PIXELS": i["height"] * i["width"],
            "N_OUT": o["count"], "ACC_BITS": o["acc_bits"]}


def lint(rtl_dir: str | os.PathLike) -> list[str]:
    """``verilator --lint-only -Wall`` over the RTL directory; returns the warning/error lines (empty = clean)."""
    rtl_dir = Path(rtl_dir)
    m = read_manifest(rtl_dir)
    exe, env = verilator()
    r = subprocess.run([exe, "--lint-only", "-Wall", "--top-module", m["top"], *m["files"]], cwd=rtl_dir,
                       env=env, capture_output=True, text=True)
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("%")]
    if r.returncode != 0 and not lines:
        lines = [f"%Error: verilator exited with {r.returncode}"]
    return lines


def build(rtl_dir: str | os.PathLike, build_dir: str | os.PathLike | None = None) -> tuple[Path, float]:
    """Compile (or reuse) the harness for ``rtl_dir``; returns (executable, seconds spent building)."""
    rtl_dir = Path(rtl_dir)
    m = read_manifest(rtl_dir)
    defines = _defines(m)
    exe_name = "Vbcnn_top"
    h = hashlib.sha256()
    for name in m["files"]:
        h.update(name.encode() + b"\0" + (rtl_dir / name).read_bytes() + b"\0")
    h.update(HARNESS.read_bytes())
    exe, env = verilator()
    h.update(json.dumps([defines, OPT, exe]).encode())
    key = h.hexdigest()[:20]
    root = Path(build_dir) if build_dir is not None else default_build_root()
    final = root / key
    if (final / exe_name).is_file():
        return final / exe_name, 0.0
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f"{key}.tmp"))
    try:
        cflags = " ".join(f"-D{k}={v}" for k, v in defines.items())
        cmd = [exe, "--cc", "--exe", "--build", "-j", "2", "--top-module", m["top"], "-Mdir", str(tmp / "obj"),
               "-o", str(tmp / exe_name), "-CFLAGS", f"{cflags} {OPT}",
               "-MAKEFLAGS", f"OPT_FAST={OPT} OPT_SLOW={OPT} OPT_GLOBAL={OPT}",
               "--x-assign", "fast", "--x-initial", "fast", "-Wno-fatal",
               str(HARNESS), *[str((rtl_dir / f).resolve()) for f in m["files"]]]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0 or not (tmp / exe_name).is_file():
            tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-30:])
            raise BcnnError(f"Verilator build of {rtl_dir} failed:\n{tail}")
        final.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / exe_name, final / exe_name)  # atomic: a half-built harness is never used
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final / exe_name, time.monotonic() - t0


def simulate(rtl_dir: str | os.PathLike, images: np.ndarray, expected: np.ndarray | None = None,
             build_dir: str | os.PathLike | None = None, reset_at: int | None = None,
             resume: int = 0, verbose: bool = False) -> dict:
    """Run ``images`` (N, H, W, C) uint8 through the RTL; outputs, mismatches against ``expected``, timing.

    ``ii_cycles`` is the median gap between consecutive images' last output beats over the second half of
    the stream (the pipeline has filled by then); ``latency_cycles`` is from the separate first run of
    image 0 alone. ``reset_at``/``resume`` (for tests) pulse the reset ``reset_at`` edges into the stream
    and restart it at image ``resume``; outputs of images before ``resume`` are then not meaningful.
    """
    rtl_dir = Path(rtl_dir)
    m = read_manifest(rtl_dir)
    i = m["input"]
    shape = (i["height"], i["width"], i["channels"])
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != shape:
        raise BcnnError(f"images must be uint8 (N, {', '.join(map(str, shape))}), got {images.dtype} "
                        f"{images.shape}")
    n = len(images)
    if n == 0:
        raise BcnnError("no images to simulate")
    n_out = m["output"]["count"]
    exe, build_s = build(rtl_dir, build_dir)
    plan = m.get("plan", {})
    max_idle = 100_000 + 4 * int(plan.get("latency_cycles", 0)) + 4 * int(plan.get("ii_cycles", 0))
    with tempfile.TemporaryDirectory(prefix="bcnn-sim") as td:
        td = Path(td)
        (td / "images.bin").write_bytes(np.ascontiguousarray(images).tobytes())
        args = [str(exe), str(td / "images.bin"), str(n), str(td / "out.bin"), str(td / "stamps.bin"),
                str(max_idle)]
        if reset_at is not None:
            args += [str(int(reset_at)), str(int(resume))]
        t0 = time.monotonic()
        proc = subprocess.Popen(args, cwd=rtl_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        tail: list[str] = []
        for line in proc.stderr:  # the harness's progress lines, shown as they come when verbose
            tail = (tail + [line])[-40:]
            if verbose:
                print(f"      {line.rstrip()}", file=sys.stderr, flush=True)
        stdout = proc.stdout.read()
        proc.wait()
        sim_s = time.monotonic() - t0
        if proc.returncode != 0:
            raise BcnnError(f"simulation of {rtl_dir} failed: {''.join(tail).strip()[-2000:]}")
        outputs = np.fromfile(td / "out.bin", dtype=np.int64).reshape(n, n_out)
        stamps = np.fromfile(td / "stamps.bin", dtype=np.int64)
    cycles = int(stdout.strip().splitlines()[-1])
    last_out = stamps[2 + n:]
    gaps = np.diff(last_out)
    ii = None  # one image has no gap to measure
    if len(gaps):
        ii = float(np.median(gaps[len(gaps) // 2:]))
        ii = int(ii) if ii.is_integer() else ii
    mismatches = None
    if expected is not None:
        expected = np.asarray(expected).reshape(n, n_out)
        mismatches = int(np.any(outputs != expected, axis=1).sum())
    if verbose:
        print(f"simulated {n} images in {cycles} cycles ({sim_s:.2f} s)", file=sys.stderr)
    return {
        "images": n,
        "outputs": outputs,
        "mismatches": mismatches,
        "ii_cycles": ii,
        "latency_cycles": int(stamps[1] - stamps[0]),
        "cycles": cycles,
        "cycles_per_s": cycles / sim_s if sim_s > 0 else None,
        "build_s": build_s,
        "sim_s": sim_s,
    }
