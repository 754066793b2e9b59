"""Resource estimates per engine with Yosys ``synth_xilinx``, cached by content.

Each engine of a generated RTL directory is synthesized on its own (a whole network in one Yosys run
takes minutes; engines are independent and mostly unchanged between runs), then ``stat -json`` is mapped
to Xilinx resource classes. Results are cached per engine under a hash of everything that can change
them: the engine's Verilog, the weight/threshold files it reads, the Yosys version and the script.
Entries are looked up in the user's cache, then in ``bcnn/bundled/synth`` (shipped with the package for
the bundled models, so their first ``bcnn run`` needs no Yosys); ``bcnn synth --bundle`` fills the latter.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

from bcnn.errors import BcnnError
from bcnn.fileio import cache_root, exclusive, write_json
from bcnn.rtl.manifest import read_manifest
from bcnn.tools import yosys

BUNDLED_CACHE = Path(__file__).parent / "bundled" / "synth"
CACHE_SCHEMA = 1  # bump when what a cache entry holds changes
LOG_TAIL_LINES = 25
MEM_SUFFIXES = (".mem", ".hex", ".dat")

# LUTs a distributed-RAM / shift-register primitive occupies (Xilinx UG474 / UG574 slice resources).
LUTRAM_WEIGHT: dict[str, int] = {
    "RAM16X1S": 1, "RAM16X1D": 2, "RAM32X1S": 1, "RAM32X1D": 2, "RAM64X1S": 1, "RAM64X1D": 2,
    "RAM128X1S": 2, "RAM128X1D": 4, "RAM256X1S": 4, "RAM256X1D": 8, "RAM512X1S": 8,
    "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8, "RAM32X16DR8": 8, "RAM64X8SW": 8,
    "SRL16E": 1, "SRLC16E": 1, "SRLC32E": 1,
}
BRAM36_WEIGHT: dict[str, float] = {
    "RAMB36E1": 1.0, "RAMB18E1": 0.5, "RAMB36E2": 1.0, "RAMB18E2": 0.5,
    "FIFO36E1": 1.0, "FIFO18E1": 0.5, "FIFO36E2": 1.0, "FIFO18E2": 0.5,
}
DSP_CELLS = ("DSP48E1", "DSP48E2", "DSP48A1", "DSP48")
CARRY_CELLS = ("CARRY4", "CARRY8")  # one carry cell per slice on either family
# Cells that use no counted resource (routing muxes inside slices, constants).
FREE_CELLS = ("MUXF7", "MUXF8", "MUXF9", "VCC", "GND", "BUFG", "$scopeinfo")  # $scopeinfo: flatten metadata
LOGIC_LUT = re.compile(r"LUT[1-6](_2)?|INV")  # Vivado places an INV in a LUT1


def family_of(part: str | None) -> str:
    """The ``synth_xilinx -family`` for a part number; 7-series when no part is given."""
    if not part:
        return "xc7"
    p = part.lower()
    if p.startswith("xc7"):
        return "xc7"
    if p.startswith(("xczu", "xcau", "xck26", "xcvp", "xcve")):
        return "xcup"
    m = re.match(r"xc(vu|ku)\d+(p?)", p)
    if m:
        return "xcup" if m.group(2) else "xcu"
    raise BcnnError(f"unknown FPGA part {part!r}: expected a Xilinx 7-series (xc7...), Zynq UltraScale+ "
                    "(xczu...) or Virtex/Kintex UltraScale(+) (xcvu..., xcku...) part number")


def script(module: str, files: list[str], family: str, stat_path: str) -> str:
    """The Yosys script for one engine. Paths are relative to the RTL directory (YoWASP's sandbox maps
    /tmp to a private directory, so absolute paths there would silently point elsewhere)."""
    # -defer: elaborate units only with the parameters they are instantiated with, so a unit's default
    # parameters (say, a placeholder weight file name) need not be valid on their own.
    reads = "".join(f'read_verilog -defer "{f}"\n' for f in files)
    # -flatten: count the engine as one netlist; -noiopad/-noclkbuf: an engine is not a chip top, so
    # no I/O buffers or BUFG; -abc9: explicit for older Yosys (default and accepted in newer ones).
    return (f"{reads}synth_xilinx -family {family} -flatten -noiopad -noclkbuf -abc9 -top {module}\n"
            f'tee -q -o "{stat_path}" stat -json\n')


def yowasp_lock(cmd: tuple[str, ...]) -> Path | None:
    """The lock file that serializes YoWASP's first run across processes, or None for a native Yosys.
    That run compiles Yosys to machine code and caches it with a plain, non-atomic write (yowasp-runtime
    1.96); a second process that maps the cached file meanwhile dies of SIGBUS (seen on a fresh machine:
    `bcnn run` beside the tests)."""
    if "yowasp" not in Path(cmd[0]).name:
        return None
    import platformdirs  # yowasp-runtime's own dependency, which places its cache

    root = os.environ.get("YOWASP_CACHE_DIR") or platformdirs.user_cache_dir("YoWASP", appauthor=False)
    return Path(root) / "bcnn-first-run.lock"


@cache
def yosys_version(cmd: tuple[str, ...]) -> str:
    """Yosys's version line. Call it before running Yosys in parallel: it is the first run, under the lock."""
    lock = yowasp_lock(cmd)
    try:
        with exclusive(lock) if lock else contextlib.nullcontext():
            out = subprocess.run([*cmd, "-V"], capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BcnnError(f"cannot run Yosys ({' '.join(cmd)}): {e}") from e
    if out.returncode != 0:
        raise BcnnError(f"Yosys -V failed: {(out.stdout + out.stderr).strip()[-500:]}")
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("Yosys")]
    return lines[-1].strip() if lines else out.stdout.strip()


def default_cache_dir() -> Path:
    return cache_root() / "synth"


def mem_files(rtl_dir: Path, eng: dict[str, Any]) -> list[Path]:
    """The data files an engine reads with $readmem*, for the cache key.

    The engine's ``mem_files`` in the manifest, where given, is the answer. Otherwise string literals
    naming existing files (in its Verilog and its params) are taken. Where a name may be computed (no
    literal resolves, a $readmem argument is an expression, or a literal looks like a fragment such as
    "_w.mem"), every data file in the directory is hashed instead: a needless re-synthesis is cheaper
    than a stale estimate. Unresolved whole names are taken to be parameter defaults that instantiation
    overrides (read with -defer, they are never opened).
    """
    listed = eng.get("mem_files")
    if isinstance(listed, list) and all(isinstance(m, str) for m in listed):
        # A listed file that is missing is left out here; Yosys then fails on it with a clear message.
        return sorted({(rtl_dir / m).resolve() for m in listed if (rtl_dir / m).is_file()})
    texts = [(rtl_dir / f).read_text(errors="replace") for f in eng["files"]]
    literals = [s for t in texts for s in re.findall(r'"([^"\\\n]+)"', t)]
    literals += _walk_strings(eng.get("params", {}))
    named = {s for s in literals if s.endswith(MEM_SUFFIXES)}
    found = sorted({(rtl_dir / s).resolve() for s in named if (rtl_dir / s).is_file()})
    args = [a.strip() for t in texts for a in re.findall(r"\$readmem[hb]\s*\(\s*([^,]+),", t)]
    if not args:
        return found
    computed = any(not (a.startswith('"') or re.fullmatch(r"[A-Za-z_]\w*", a)) for a in args)
    fragment = any(not re.match(r"[A-Za-z0-9]", Path(s).name) for s in named if not (rtl_dir / s).is_file())
    if not found or computed or fragment:
        found = sorted(p.resolve() for p in rtl_dir.rglob("*") if p.suffix in MEM_SUFFIXES and p.is_file())
    return found


def _walk_strings(obj: Any) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _walk_strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _walk_strings(v)]
    return []


def cache_key(rtl_dir: Path, eng: dict[str, Any], version: str, text: str) -> str:
    h = hashlib.sha256()

    def add(tag: str, data: bytes) -> None:
        h.update(f"{tag}:{len(data)}:".encode())
        h.update(data)

    add("schema", str(CACHE_SCHEMA).encode())
    add("yosys", version.encode())
    add("script", text.encode())
    for f in eng["files"]:
        add("v:" + f, (rtl_dir / f).read_bytes())
    for p in mem_files(rtl_dir, eng):
        add("mem:" + os.path.relpath(p, rtl_dir.resolve()), p.read_bytes())
    return h.hexdigest()


def resources(cells: dict[str, int]) -> dict[str, Any]:
    """Xilinx resource classes from Yosys cell counts. ``lut`` counts logic and LUT-as-memory, as Vivado's
    'Slice LUTs' / 'CLB LUTs' does; the split is in ``lut_logic`` and ``lut_mem``."""
    lut_logic = sum(n for c, n in cells.items() if LOGIC_LUT.fullmatch(c))
    lut_mem = sum(n * LUTRAM_WEIGHT[c] for c, n in cells.items() if c in LUTRAM_WEIGHT)
    ff = sum(n for c, n in cells.items() if c.startswith("FD"))
    bram = sum(n * BRAM36_WEIGHT[c] for c, n in cells.items() if c in BRAM36_WEIGHT)
    known = set(LUTRAM_WEIGHT) | set(BRAM36_WEIGHT) | set(DSP_CELLS) | set(CARRY_CELLS) | set(FREE_CELLS)
    other = {c: n for c, n in cells.items()
             if c not in known and not c.startswith("FD") and not LOGIC_LUT.fullmatch(c)}
    return {
        "lut": lut_logic + lut_mem, "lut_logic": lut_logic, "lut_mem": lut_mem, "ff": ff,
        "bram36": bram, "dsp": sum(cells.get(c, 0) for c in DSP_CELLS),
        "carry4": sum(cells.get(c, 0) for c in CARRY_CELLS),
        "uram": cells.get("URAM288", 0), "other": other,
    }


def _log_tail(log: Path, n: int = LOG_TAIL_LINES) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log written)"
    # Yosys repeats the error in its last lines; also surface the first ERROR line if it scrolled away.
    errs = [ln for ln in lines if "ERROR" in ln][:1]
    tail = lines[-n:]
    return "\n".join((errs if errs and errs[0] not in tail else []) + tail)


def _rel(path: Path, rtl_dir: Path) -> str:
    return os.path.relpath(path.resolve(), rtl_dir.resolve())


def engine_key(rtl_dir: Path, eng: dict[str, Any], family: str, version: str) -> str:
    """The cache key of one engine; the script is hashed with a placeholder for the (per-run) stat path."""
    return cache_key(rtl_dir, eng, version, script(eng["module"], eng["files"], family, "<stat>"))


def synth_engine(rtl_dir: Path, eng: dict[str, Any], family: str, cache_dir: Path,
                 cmd: list[str]) -> dict[str, Any]:
    """Synthesize one engine (or fetch it from the cache); returns its row of the result."""
    t0 = time.monotonic()
    name = eng["name"]
    version = yosys_version(tuple(cmd))
    key = engine_key(rtl_dir, eng, family, version)
    entry = cache_dir / f"{key}.json"
    for found in (entry, BUNDLED_CACHE / f"{key}.json"):
        if found.is_file():
            try:
                # Raw cells are cached and mapped on every read, so a change of the mapping needs no new key.
                cells = {str(k): int(v) for k, v in json.loads(found.read_text())["cells"].items()}
                return {"name": name, **resources(cells), "cells": cells, "cached": True, "key": key,
                        "seconds": time.monotonic() - t0}
            except (json.JSONDecodeError, KeyError, OSError, AttributeError, TypeError, ValueError):
                pass  # a damaged entry is re-synthesized and overwritten
    logs = cache_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}-{key[:12]}.log"
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".run-") as work:
        stat = Path(work) / "stat.json"
        text = script(eng["module"], eng["files"], family, _rel(stat, rtl_dir))
        ys = Path(work) / "run.ys"
        ys.write_text(text)
        try:
            proc = subprocess.run([*cmd, "-q", "-l", _rel(log, rtl_dir), "-s", _rel(ys, rtl_dir)], cwd=rtl_dir,
                                  capture_output=True, text=True)
        except OSError as e:
            raise BcnnError(f"cannot run Yosys ({' '.join(cmd)}): {e}") from e
        if proc.returncode != 0 or not stat.is_file():
            detail = _log_tail(log) if log.is_file() else (proc.stdout + proc.stderr)[-3000:]
            raise BcnnError(f"Yosys failed on engine {name!r} (module {eng['module']}, exit "
                            f"{proc.returncode}):\n{detail}\nfull log: {log}")
        try:
            data = json.loads(stat.read_text())
            cells = data["design"]["num_cells_by_type"]
        except (json.JSONDecodeError, KeyError) as e:
            raise BcnnError(f"engine {name!r}: unreadable Yosys stat output ({e}); log: {log}") from e
    cells = {str(k): int(v) for k, v in sorted(cells.items())}
    seconds = time.monotonic() - t0
    write_json(entry, {"key": key, "engine": name, "module": eng["module"], "family": family,
                          "yosys": version, "seconds": seconds, "cells": cells})
    return {"name": name, **resources(cells), "cells": cells, "cached": False, "key": key, "seconds": seconds}


def bundle(result: dict[str, Any], dest: Path | None = None) -> list[Path]:
    """Copy a synthesis result's per-engine cells into ``dest`` (default: the package's cache of bundled
    models, looked up at call time)."""
    dest = BUNDLED_CACHE if dest is None else dest
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for row in result["layers"]:
        path = dest / f"{row['key']}.json"
        write_json(path, {"key": row["key"], "engine": row["name"], "yosys": result.get("yosys"),
                          "cells": row["cells"]})
        paths.append(path)
    return paths


def synthesize(rtl_dir: str | Path, part: str | None = None, cache_dir: Path | None = None,
               jobs: int = 1, progress: bool = True) -> dict[str, Any]:
    """Estimate LUT/FF/BRAM/DSP/CARRY4 per engine of a generated RTL directory and in total.

    ``part`` picks the Xilinx family (default: the plan's part in the manifest, else 7-series).
    ``jobs`` engines run in parallel (each Yosys is single-threaded). Returns ``{"lut", "ff", "bram36",
    "dsp", "carry4", "lut_logic", "lut_mem", "uram", "layers": [...], "part", "family", "yosys",
    "seconds"}``; totals are sums over engines, so glue logic outside engines (FIFOs in the top) is not
    counted.
    """
    t0 = time.monotonic()
    rtl = Path(rtl_dir)
    man = read_manifest(rtl)
    if part is None:
        plan = man.get("plan") if isinstance(man.get("plan"), dict) else {}
        found = plan.get("part") or plan.get("device")
        found = (found.get("part") or found.get("name")) if isinstance(found, dict) else found
        part = found if isinstance(found, str) else None
    family = family_of(part)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    cmd = yosys()
    yosys_version(tuple(cmd))  # once, before threads start (the first YoWASP run compiles for a while)
    engines = man["engines"]
    if progress:  # the first line would otherwise wait for the first engine, minutes for a large one
        print(f"synth: {len(engines)} engines with {Path(cmd[0]).name}, {min(jobs, len(engines))} at a time "
              f"(cached ones return at once)", file=sys.stderr, flush=True)

    def one(eng: dict[str, Any]) -> dict[str, Any]:
        row = synth_engine(rtl, eng, family, cache, cmd)
        if progress:
            from tqdm import tqdm

            tqdm.write(f"synth {row['name']:>8}: {row['lut']:>7} LUT {row['ff']:>7} FF {row['bram36']:>6g} "
                       f"BRAM36 {row['dsp']:>4} DSP  {row['seconds']:6.1f} s"
                       f"{'  (cached)' if row['cached'] else ''}", file=sys.stderr)
        return row

    if jobs > 1 and len(engines) > 1:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            rows = list(pool.map(one, engines))
    else:
        rows = [one(e) for e in engines]
    out: dict[str, Any] = {k: sum(r[k] for r in rows)
                           for k in ("lut", "lut_logic", "lut_mem", "ff", "bram36", "dsp", "carry4", "uram")}
    out.update(layers=rows, part=part, family=family, yosys=yosys_version(tuple(cmd)),
               seconds=time.monotonic() - t0)
    return out
