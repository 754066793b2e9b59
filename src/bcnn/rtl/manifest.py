"""``manifest.json``: what ``bcnn generate`` writes beside the Verilog, and what simulation and synthesis read.

It names the top module, the Verilog files in dependency order, the input and output stream formats,
the plan, and per layer the engine's module and files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bcnn.errors import BcnnError
from bcnn.fileio import read_json


def read_manifest(rtl_dir: Path) -> dict[str, Any]:
    """The manifest of a generated RTL directory, checked enough that a bad one gives a clear error."""
    path = rtl_dir / "manifest.json"
    if not path.is_file():
        raise BcnnError(f"{path}: no manifest.json; is {rtl_dir} an RTL directory made by `bcnn generate`?")
    man = read_json(path, "a manifest")
    engines = man.get("engines") if isinstance(man, dict) else None
    if not isinstance(engines, list) or not engines:
        raise BcnnError(f"{path}: needs a non-empty 'engines' list")
    names = set()
    for i, eng in enumerate(engines):
        ok = (isinstance(eng, dict) and isinstance(eng.get("name"), str) and isinstance(eng.get("module"), str)
              and isinstance(eng.get("files"), list) and eng["files"]
              and all(isinstance(f, str) for f in eng["files"]))
        if not ok:
            raise BcnnError(f"{path}: engine {i} needs 'name', 'module' and a non-empty 'files' list")
        if eng["name"] in names:
            raise BcnnError(f"{path}: engine name {eng['name']!r} appears twice")
        names.add(eng["name"])
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", eng["module"]):
            raise BcnnError(f"{path}: engine {eng['name']!r}: bad module name {eng['module']!r}")
        for f in eng["files"]:
            if '"' in f or not (rtl_dir / f).is_file():
                raise BcnnError(f"{path}: engine {eng['name']!r}: file {f!r} not found in {rtl_dir}")
    return man
