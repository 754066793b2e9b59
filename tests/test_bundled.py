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
    assert net.meta.get("torch_engine_mismatches", 0) == 0


def test_default_model_is_bundled() -> None:
    assert DEFAULT_MODEL in [p.stem for p in BUNDLED]


@pytest.mark.parametrize("path", BUNDLED, ids=[p.stem for p in BUNDLED])
def test_run_design_of_bundled_model_has_its_synthesis_bundled(path: Path, tmp_path: Path) -> None:
    net = ir.load(path)
    plan = make_plan(net, device=DEFAULT_DEVICE, clock_mhz=DEFAULT_CLOCK_MHZ)
    rtl = tmp_path / "rtl"
    generate(net, plan, rtl)
    version = yosys_version(tuple(yosys()))
    missing = [eng["name"] for eng in read_manifest(rtl)["engines"]
               if not (BUNDLED_CACHE / f"{engine_key(rtl, eng, family_of(DEFAULT_DEVICE), version)}.json").is_file()]
    assert not missing, (f"no bundled Yosys result for engines {missing} of `bcnn run --model {path.stem}`; "
                         f"rerun it and `bcnn synth bcnn-out/rtl --bundle`")
