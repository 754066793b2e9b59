"""FPGA part models: resource counts (and static power) from vendor data sheets, in ``parts.json``.

A user adds a part with a JSON file of the same form (``{"name": {"lut": ..., "ff": ..., "bram36": ...,
"dsp": ..., "static_w": ..., "source": ...}}``), either passed to :func:`load_devices` or named by the
environment variable ``BCNN_DEVICES`` (a file, or a directory whose ``*.json`` files are all read).
"""

from __future__ import annotations

import os
from pathlib import Path

from bcnn.errors import BcnnError
from bcnn.fileio import read_json

PARTS_FILE = Path(__file__).parent / "parts.json"
REQUIRED = ("lut", "ff", "bram36", "dsp")


def _read(path: Path) -> dict[str, dict]:
    data = read_json(path, "a device file")
    if not isinstance(data, dict):
        raise BcnnError(f"{path}: a device file is a JSON object of parts")
    out = {}
    for name, part in data.items():
        if name.startswith("_"):
            continue
        if not isinstance(part, dict) or any(not isinstance(part.get(k), (int, float)) or part[k] < 0
                                             for k in REQUIRED):
            raise BcnnError(f"{path}: part {name!r} needs numbers {', '.join(REQUIRED)}")
        part = dict(part)
        part.setdefault("static_w", 0.0)
        part.setdefault("family", "xc7")
        out[name.lower()] = part
    return out


def load_devices(*extra: str | os.PathLike) -> dict[str, dict]:
    """All known parts: the shipped table, then ``$BCNN_DEVICES``, then ``extra`` files (later wins)."""
    parts = _read(PARTS_FILE)
    paths: list[Path] = []
    env = os.environ.get("BCNN_DEVICES")
    for p in ([Path(x) for x in env.split(os.pathsep) if x] if env else []) + [Path(x) for x in extra]:
        paths += sorted(p.glob("*.json")) if p.is_dir() else [p]
    for p in paths:
        parts.update(_read(p))
    return parts


def get_device(name: str, *extra: str | os.PathLike) -> dict:
    """The part ``name`` (case-insensitive; a speed/package suffix such as -2ffg1761 is ignored)."""
    parts = load_devices(*extra)
    key = name.lower()
    if key not in parts:
        base = key.split("-")[0]
        cands = [p for p in parts if base.startswith(p)]
        if not cands:
            raise BcnnError(f"unknown device {name!r}; known: {', '.join(sorted(parts))} "
                            "(add one with a JSON file named by BCNN_DEVICES)")
        key = max(cands, key=len)
    return {"name": key, **parts[key]}
