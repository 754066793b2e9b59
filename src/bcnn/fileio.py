"""Artifacts on disk: written atomically (a reader never sees a half-written file), JSON with numpy values,
and JSON read back with an error that names what the file should have been."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from bcnn.errors import BcnnError


def cache_root() -> Path:
    """Where bcnn caches Verilator builds, Yosys results and decoded data sets: ``$BCNN_CACHE``, else
    ``$XDG_CACHE_HOME/bcnn``, else ``~/.cache/bcnn`` (read on every call, so a test can redirect it)."""
    if os.environ.get("BCNN_CACHE"):
        return Path(os.environ["BCNN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bcnn"


@contextlib.contextmanager
def exclusive(path: str | os.PathLike) -> Iterator[None]:
    """Hold an inter-process lock on ``path`` (created if missing) for the ``with`` block; the system drops
    it if the process dies. No lock where ``fcntl`` is missing (Windows)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for binary writing; rename it onto ``path`` only on success."""
    path = Path(path)
    if path.is_dir():
        raise BcnnError(f"{path}: is a folder; expected a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def json_default(o):
    """``json.dumps(..., default=json_default)``: the numpy scalars and arrays and the paths results carry."""
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def write_json(path: str | os.PathLike, obj, **dump_options) -> None:
    """Write ``obj`` as JSON atomically (numpy values allowed)."""
    with atomic_write(path) as f:
        f.write((json.dumps(obj, default=json_default, **dump_options) + "\n").encode())


def read_json(path: str | os.PathLike, what: str):
    """The JSON value in ``path``; a BcnnError naming ``what`` the file should be when it is missing or bad."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BcnnError(f"{path}: no such file (expected {what})") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise BcnnError(f"{path}: not {what}: not valid JSON ({e})") from None
    except OSError as e:
        raise BcnnError(f"{path}: cannot read {what} ({e})") from None
