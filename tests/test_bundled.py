"""The models shipped in the package: they load, they record the torch/engine check of their export, and
the design `bcnn run` makes of each (default part and clock) has its Yosys results bundled, so a first run
needs no hour of Yosys (a change to the RTL units, the planner or the resource model must re-bundle them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bcnn import ir
from bcnn.cli import DEFAULT_CLOCK_MHZ, DEFAULT_DEVICE, DEFAULT_MODEL
from bcnn.plan import make_plan
from bcnn.rtl.generate import generate
from bcnn.rtl.manifest import read_manifest
from bcnn.synth import BUNDLED_CACHE, engine_key, family_of, yosys_version
from bcnn.tools import yosys

BUNDLED = sorted(ir.bundled_models_dir().glob("*.bcnn"))


@pytest.mark.parametrize("path", BUNDLED, ids=[p.stem for p in BUNDLED])
def test_bundled_model_loads_and_its_export_was_exact(path: Path) -> None:
    net = ir.load(path)
    assert net.layers and net.macs > 0
    assert net.meta["torch_engine_mismatches"] == 0
    # `bcnn run` and docs/models.md quote the accuracy recorded at export, on the whole test set
    assert 0.1 < net.meta["engine_test_acc"] <= 1.0 and net.meta["test_images"] == 10000


def test_default_model_is_bundled() -> None:
    assert DEFAULT_MODEL in [p.stem for p in BUNDLED]


@pytest.fixture(scope="module")
def run_design_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """{model: {engine: cache key}} of the design `bcnn run --model MODEL` makes (default part and clock)."""
    version = yosys_version(tuple(yosys()))
    keys = {}
    for path in BUNDLED:
        net = ir.load(path)
        rtl = tmp_path_factory.mktemp(path.stem) / "rtl"
        generate(net, make_plan(net, device=DEFAULT_DEVICE, clock_mhz=DEFAULT_CLOCK_MHZ), rtl)
        keys[path.stem] = {eng["name"]: engine_key(rtl, eng, family_of(DEFAULT_DEVICE), version)
                           for eng in read_manifest(rtl)["engines"]}
    return keys


@pytest.mark.parametrize("model", [p.stem for p in BUNDLED])
def test_run_design_of_bundled_model_has_its_synthesis_bundled(model: str,
                                                               run_design_keys: dict[str, dict[str, str]]) -> None:
    missing = [name for name, key in run_design_keys[model].items()
               if not (BUNDLED_CACHE / f"{key}.json").is_file()]
    assert not missing, (f"no bundled Yosys result for engines {missing} of `bcnn run --model {model}`; "
                         f"rerun it and `bcnn synth bcnn-out/rtl --bundle`")


def test_bundled_synthesis_holds_nothing_stale(run_design_keys: dict[str, dict[str, str]]) -> None:
    needed = {key for keys in run_design_keys.values() for key in keys.values()}
    stale = sorted(p.name for p in BUNDLED_CACHE.glob("*.json") if p.stem not in needed)
    assert not stale, f"bundled Yosys results no bundled model's run design uses (delete them): {stale}"
