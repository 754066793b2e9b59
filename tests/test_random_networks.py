"""Equivalence on random networks (hypothesis): every backend gives the same integer accumulators.

* IR networks (most examples, they are cheap): reference engine == fast engine, with the edge cases of
  ``bcnn.fuzz.ir_net`` (constant bits, thresholds at the range ends, all ``<=``, AND pooling, odd inputs).
* Brevitas models (about 1 s each to export): torch == qonnx executor == reference == fast, with random
  topology and batch-norm (negative scales, zero variance, zero scale).
* A few networks through plan + generate + Verilator lint and simulation with random legal foldings, and
  one design through Yosys ``check -assert`` (no latches, no combinational loops).

Derandomized (``derandomize=True``, no example database), so every CI run checks the same examples; the
long-running version is ``benchmarks/fuzz_equivalence.py``.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from bcnn import fuzz
from bcnn.randnet import ConvSpec, random_net

# the qonnx executor warns about the export's batch-size placeholder shapes; harmless
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SETTINGS = dict(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
# examples of a second or more each are not shrunk (that can take many minutes); the failing spec is printed
SLOW = dict(SETTINGS, phases=[Phase.explicit, Phase.generate])
N_IR = int(os.environ.get("BCNN_FUZZ_IR", 400))
N_BREVITAS = int(os.environ.get("BCNN_FUZZ_BREVITAS", 30))
N_RTL = int(os.environ.get("BCNN_FUZZ_RTL", 3))


class HypDraw:
    """``bcnn.fuzz.Draw`` on hypothesis' ``draw``, so failing examples shrink."""

    def __init__(self, draw):
        self.draw = draw

    def int(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))

    def choice(self, options):
        return self.draw(st.sampled_from(list(options)))

    def bool(self, p: float = 0.5) -> bool:
        return self.draw(st.integers(0, 999)) < int(p * 1000)


@st.composite
def ir_specs(draw, rtl=False):
    return fuzz.ir_spec(HypDraw(draw), rtl=rtl)


@st.composite
def brevitas_specs(draw):
    return fuzz.brevitas_spec(HypDraw(draw))


@st.composite
def rtl_cases(draw):
    spec = fuzz.ir_spec(HypDraw(draw), rtl=True)
    net, _ = fuzz.ir_net(spec)
    pe, simd, mem = fuzz.folding(HypDraw(draw), net)
    return spec, pe, simd, mem


@pytest.fixture(scope="module", autouse=True)
def _compiled():
    from bcnn.engine.fast import warmup

    warmup()  # compile (or load) the kernels once, outside hypothesis' timing


# ------------------------------------------------------------------------------------------- IR, engines


@given(ir_specs())
@settings(max_examples=N_IR, **SETTINGS)
def test_ir_reference_equals_fast(spec):
    net, images = fuzz.ir_net(spec)
    assert tuple(net.input_shape[:2]) == tuple(spec["input_shape"][:2])
    acc = fuzz.check_engines(net, images)
    assert acc.shape == (len(images), net.n_outputs) and acc.dtype == np.int64


def test_ir_generator_covers_the_space():
    """The generator reaches what the issue asks for: sizes 4-16, channels 1-70, kernels 1-5, pad, pool, 1-3 FC."""
    d = fuzz.RngDraw(np.random.default_rng(0))
    specs = [fuzz.ir_spec(d) for _ in range(400)]
    sizes = {s["input_shape"][0] for s in specs}
    kernels = {k for s in specs for _, k, _, _ in s["convs"]}
    channels = {o for s in specs for o, _, _, _ in s["convs"]} | {f for s in specs for f in s["fcs"]}
    assert sizes == set(range(4, 17)) and kernels == {1, 2, 3, 4, 5}
    assert {1, 63, 64, 65, 70} <= channels
    assert {p for s in specs for _, _, p, _ in s["convs"]} == {0, 1, 2}
    assert {q for s in specs for _, _, _, q in s["convs"]} == {1, 2, 3}
    assert {len(s["fcs"]) for s in specs} == {1, 2, 3}
    # constant-bit channels really occur (thresholds one beyond the range)
    net, _ = fuzz.ir_net(next(s for s in specs if s["thresholds"] == "constant" and s["convs"]))
    lo, hi = net.acc_range(0)
    assert np.isin(net.layers[0].thresholds, [lo - 1, hi + 1]).any()


# ------------------------------------------------------------------------------------ Brevitas, 4 ways


# found by this test: a 5x5 kernel over a 5x5 map (1x1 output) was taken for a flatten, so the next Pad failed
@example(spec={"options": {"input_size": 5, "in_channels": 1, "kernel": 5, "channels": [63, 63], "padding": [0, 2],
                           "pool": [None, None], "fc": [], "num_classes": 1, "head": None, "pad_value": -1.0},
               "negative": 0.0, "zero_var": 0.0, "zero_scale": 0.0, "snap": True, "dynamo": False, "n_images": 1,
               "seed": 0})
@given(brevitas_specs())
@settings(max_examples=N_BREVITAS, **SLOW)
def test_brevitas_torch_qonnx_reference_fast(tmp_path_factory, spec):
    fuzz.check_brevitas(spec, work_dir=tmp_path_factory.getbasetemp())


def test_brevitas_edge_cases_compile_to_constant_and_le_channels(tmp_path):
    """Zero batch-norm scale gives constant bits; negative scales give <= comparisons (checked 4 ways)."""
    spec = {"options": {"input_size": 6, "in_channels": 3, "kernel": 3, "channels": [9], "padding": [1],
                        "pool": ["pre"], "fc": [5], "num_classes": 4, "head": "bn", "pad_value": -1.0},
            "negative": 0.5, "zero_var": 0.2, "zero_scale": 0.3, "snap": True, "dynamo": False, "n_images": 6,
            "seed": 5}
    res = fuzz.check_brevitas(spec, work_dir=tmp_path)
    conv = res.net.layers[0]
    lo, hi = res.net.acc_range(0)
    assert np.isin(conv.thresholds, [lo - 1, hi + 1]).any()  # constant channels
    assert not conv.ge.all() and conv.ge.any()
    np.testing.assert_array_equal(conv.pool_and, ~conv.ge)  # pooling before BN: AND where <=


# ------------------------------------------------------------------------------------------------- RTL


@pytest.fixture(scope="module")
def rtl_root(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_rtl")


# found by this test: input integers that fit in 1 bit (an all-zero input_lut) took the binary datapath
@example(case=({"input_shape": (4, 4, 2), "convs": [(3, 3, 1, 2)], "fcs": [4], "lut": "zero", "thresholds": "random",
                "ge": 0.7, "pool_and": 0.3, "n_images": 2, "special_images": True, "seed": 1}, [3, 2], [2, 1], None))
@given(rtl_cases())
@settings(max_examples=N_RTL, **SLOW)
def test_rtl_random_nets_lint_clean_and_bit_exact(rtl_root, case):
    spec, pe, simd, mem = case
    net, images = fuzz.ir_net(spec)
    rtl = rtl_root / f"n{spec['seed']}_{'-'.join(map(str, pe))}_{'-'.join(map(str, simd))}"
    res = fuzz.check_rtl(net, images, pe, simd, rtl, mem=mem)  # raises on lint warnings or any mismatch
    assert res["mismatches"] == 0


def _yosys_check(rtl_dir, files, top):
    """Yosys: elaborate, ``check -assert`` (combinational loops, conflicting or missing drivers) and no latch."""
    from bcnn.tools import yosys

    script = "".join(f'read_verilog -defer "{f}"; ' for f in files) + (
        f"hierarchy -check -top {top}; proc; flatten; opt_clean; check -assert; "
        "select -assert-none t:$dlatch t:$adlatch t:$dlatchsr t:$_DLATCH_* t:$_DLATCHSR_* t:$sr t:$_SR_*")
    return subprocess.run([*yosys(), "-q", "-p", script], cwd=rtl_dir, capture_output=True, text=True, timeout=600)


def test_yosys_check_no_latches_no_loops(tmp_path):
    """A generated design (padding, nf > 1 collector, AND/OR pooling, SIMD < C_in) passes Yosys' checks."""
    from bcnn.plan import make_plan
    from bcnn.rtl.generate import generate

    net = random_net(np.random.default_rng(1), (6, 6, 3), [ConvSpec(4, pad=1, pool=2), ConvSpec(6, pad=1)], [5, 4])
    net.layers[0].pool_and[:2] = [True, False]
    plan = make_plan(net, pe=[2, 3, 5, 2], simd=[1, 2, 6, 1])
    rtl = generate(net, plan, tmp_path / "rtl")
    files = json.loads((rtl / "manifest.json").read_text())["files"]
    r = _yosys_check(rtl, files, "bcnn_top")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]

    # the same check does catch a latch and a combinational loop
    (tmp_path / "latch.v").write_text("module latch(input wire e, input wire d, output reg q);\n"
                                      "  always @* if (e) q = d;\nendmodule\n")
    (tmp_path / "loop.v").write_text("module loop(input wire a, output wire y);\n"
                                     "  wire b = a ^ y;\n  assign y = ~b;\nendmodule\n")
    for name in ("latch", "loop"):
        r = _yosys_check(tmp_path, [f"{name}.v"], name)
        assert r.returncode != 0 and "ERROR" in r.stdout + r.stderr, name
