"""RTL generation and Verilator simulation against the reference engine (real Verilator, no mocks).

Each network is generated and built once per module (the builds dominate the runtime)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bcnn.engine.reference import run_reference
from bcnn.errors import BcnnError
from bcnn.plan import load_plan, make_plan, save_plan
from bcnn.randnet import ConvSpec, random_images, random_net
from bcnn.rtl.generate import generate
from bcnn.sim import lint, simulate

N_IMAGES = 24


def _net_a():
    """Default folding; padded binary conv with pad_bit 1; OR and AND pooling; ge and le channels."""
    net = random_net(np.random.default_rng(10), (8, 8, 3), [ConvSpec(5, pad=1), ConvSpec(6, pad=1, pool=2)],
                     [7, 10])
    net.layers[1].pad_bit = 1
    net.layers[1].pool_and[:2] = [True, False]
    net.layers[1].ge[:2] = [False, True]
    return net, None, None


def _net_b():
    """Non-trivial folding everywhere: nf > 1 (collector), SIMD < C_in (chunk select), pad_bit 0."""
    net = random_net(np.random.default_rng(11), (8, 8, 3), [ConvSpec(6, pad=1, pool=2), ConvSpec(7, pad=1)],
                     [6, 10])
    net.layers[1].pad_bit = 0
    net.layers[0].pool_and[:2] = [True, False]
    net.layers[0].ge[:2] = [False, True]
    return net, [3, 7, 2, 5], [1, 1, 7, 3]


def _net_c():
    """A single fully connected layer: the integer first layer is also the last (no thresholds)."""
    net = random_net(np.random.default_rng(12), (4, 4, 2), [], [6])
    return net, [3], [1]


NETS = {"a": _net_a, "b": _net_b, "c": _net_c}


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("verilator")


@pytest.fixture(scope="module")
def designs(tmp_path_factory):
    out = {}
    for key, make in NETS.items():
        net, pe, simd = make()
        plan = make_plan(net, pe=pe, simd=simd)
        rtl = generate(net, plan, tmp_path_factory.mktemp(f"rtl_{key}"))
        out[key] = (net, plan, rtl)
    return out


@pytest.fixture(scope="module")
def runs(designs, build_dir):
    """One simulation of N_IMAGES random images per network."""
    out = {}
    for key, (net, _plan, rtl) in designs.items():
        images = random_images(np.random.default_rng(99), net, N_IMAGES)
        expected = run_reference(net, images)
        out[key] = (images, expected, simulate(rtl, images, expected, build_dir=build_dir))
    return out


@pytest.mark.parametrize("key", sorted(NETS))
def test_lint_clean(designs, key):
    _net, _plan, rtl = designs[key]
    assert lint(rtl) == []


@pytest.mark.parametrize("key", sorted(NETS))
def test_bit_exact(runs, key):
    _images, expected, res = runs[key]
    assert res["images"] == N_IMAGES
    assert res["outputs"].dtype == np.int64 and res["outputs"].shape == expected.shape
    assert res["mismatches"] == 0
    np.testing.assert_array_equal(res["outputs"], expected)


@pytest.mark.parametrize("key", sorted(NETS))
def test_timing_matches_plan(designs, runs, key):
    _net, plan, _rtl = designs[key]
    res = runs[key][2]
    assert abs(res["ii_cycles"] - plan["ii_cycles"]) <= 0.02 * plan["ii_cycles"], (res["ii_cycles"], plan)
    assert abs(res["latency_cycles"] - plan["latency_cycles"]) <= 0.02 * plan["latency_cycles"]
    assert res["cycles_per_s"] > 0 and res["sim_s"] > 0


def test_plan_folding_is_what_was_asked(designs):
    _net, plan, _rtl = designs["b"]
    assert [la["pe"] for la in plan["layers"]] == [3, 7, 2, 5]
    assert [la["nf"] for la in plan["layers"]] == [2, 1, 3, 2]
    # layer 0: 8x8 outputs x 2 neuron folds x 3·3·3 one-element chunks
    assert plan["layers"][0]["cycles"] == 64 * 2 * 27 == plan["ii_cycles"]


def test_reset_mid_stream(designs, runs, build_dir):
    """A reset while images are in flight, then streaming restarts: the following images are exact."""
    _net, plan, rtl = designs["a"]
    images, expected, _ = runs["a"]
    resume = 6
    res = simulate(rtl, images, None, build_dir=build_dir, reset_at=int(2.5 * plan["ii_cycles"]) + 7,
                   resume=resume)
    assert res["build_s"] == 0  # the module's build was reused
    np.testing.assert_array_equal(res["outputs"][resume:], expected[resume:])


def test_manifest(designs):
    net, plan, rtl = designs["a"]
    m = json.loads((rtl / "manifest.json").read_text())
    assert m["top"] == "bcnn_top" and m["files"][-1] == "bcnn_top.v"
    assert all((rtl / f).is_file() for f in m["files"])
    assert m["input"] == {"height": 8, "width": 8, "channels": 3, "pixel_bits": 8}
    assert m["output"]["count"] == 10 and m["output"]["acc_bits"] >= 2
    assert [e["name"] for e in m["engines"]] == [la.name for la in net.layers]
    for e in m["engines"]:
        assert e["files"][-1] == f"{e['module']}.v" and set(e["files"]) <= set(m["files"])
        assert all((rtl / f).is_file() for f in e["mem_files"])
        assert {"pe", "simd", "in_bits", "out_bits"} <= set(e["params"])
    assert m["plan"]["ii_cycles"] == plan["ii_cycles"]


def test_plan_save_load_and_errors(tmp_path):
    net, _, _ = _net_b()
    plan = make_plan(net, device="xc7z020", clock_mhz=90, pe=[3, 7, 2, 5], simd=[1, 1, 7, 3])
    assert plan["fps"] == pytest.approx(90e6 / plan["ii_cycles"])
    assert plan["tops"] == pytest.approx(2 * net.macs * plan["fps"] / 1e12)
    save_plan(plan, tmp_path / "plan.json")
    assert load_plan(tmp_path / "plan.json", net) == plan
    other, _, _ = _net_a()
    with pytest.raises(BcnnError):
        load_plan(tmp_path / "plan.json", other)
    bad = dict(plan, layers=[dict(la) for la in plan["layers"]])
    bad["layers"][1]["pe"] = 4
    save_plan(bad, tmp_path / "bad.json")
    with pytest.raises(BcnnError, match="PE 4"):
        load_plan(tmp_path / "bad.json", net)
    with pytest.raises(BcnnError, match="SIMD 2"):
        make_plan(net, simd=[2, 1, 7, 3])
    with pytest.raises(BcnnError, match="device"):
        make_plan(net, device="xc9nope")
    with pytest.raises(BcnnError):
        load_plan(tmp_path / "missing.json", net)


def test_simulate_rejects_bad_images(designs, build_dir):
    _net, _plan, rtl = designs["c"]
    with pytest.raises(BcnnError, match="uint8"):
        simulate(rtl, np.zeros((2, 4, 4, 2), dtype=np.int64), build_dir=build_dir)
