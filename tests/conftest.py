"""Suite-wide set-up: the Verilator, Yosys and data caches start empty, as on a fresh machine."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def private_bcnn_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A warm ``~/.cache/bcnn`` would serve builds and Yosys results from earlier runs and hide a broken tool
    install; an explicit ``BCNN_CACHE`` is kept, for a developer's faster reruns."""
    if "BCNN_CACHE" in os.environ:
        yield
        return
    os.environ["BCNN_CACHE"] = str(tmp_path_factory.mktemp("bcnn-cache"))  # subprocesses inherit it
    yield
    del os.environ["BCNN_CACHE"]
