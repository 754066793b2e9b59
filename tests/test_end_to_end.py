"""Brevitas model → QONNX → IR → Verilog → Verilator: the RTL's outputs equal the trained model's.

Four ways on the same images: torch (forward hook on the last layer), the qonnx executor, the reference
engine and the Verilator simulation of the generated accelerator; plus the argmax, and the measured II
and latency against the plan.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bcnn.compile import compile_onnx
from bcnn.engine.reference import predict, run_reference
from bcnn.models import last_layer_accumulators, snap_thresholds
from bcnn.plan import make_plan
from bcnn.rtl.generate import generate
from bcnn.sim import simulate
from test_compile import CONFIGS, N_IMAGES, _export, _qonnx_outputs, random_tiny


@pytest.mark.parametrize("name, pe, simd", [("pad_post_pre", None, None),
                                            ("12x12_two_fc", [3, 5, 7, 5, 2], [3, 6, 5, 7, 5])])
def test_torch_qonnx_reference_rtl_agree(tmp_path, name, pe, simd):
    model, images, x = random_tiny(name, sorted(CONFIGS).index(name) + 101)
    snap_thresholds(model)
    path = _export(tmp_path, model, model.input_size)
    net = compile_onnx(path)

    acc_torch = last_layer_accumulators(model, x)
    out_q = _qonnx_outputs(path, x.numpy()).astype(np.float64)
    acc_q = np.rint((out_q - net.output_bias) / net.output_scale).astype(np.int64)
    acc_ref = run_reference(net, images)

    plan = make_plan(net, device="xc7z020", clock_mhz=100.0, pe=pe, simd=simd)
    generate(net, plan, tmp_path / "rtl")
    sim = simulate(tmp_path / "rtl", images, expected=acc_ref)

    assert sim["images"] == N_IMAGES
    np.testing.assert_array_equal(acc_torch, acc_ref)
    np.testing.assert_array_equal(acc_q, acc_ref)
    np.testing.assert_array_equal(sim["outputs"], acc_ref)
    assert sim["mismatches"] == 0
    with torch.no_grad():
        torch_pred = model(x).argmax(1).numpy()
    np.testing.assert_array_equal(predict(net, sim["outputs"]), torch_pred)
    assert abs(sim["ii_cycles"] - plan["ii_cycles"]) <= 0.02 * plan["ii_cycles"]
    assert abs(sim["latency_cycles"] - plan["latency_cycles"]) <= 0.02 * plan["latency_cycles"]


def test_snap_keeps_the_function_and_the_compiled_bits(tmp_path):
    """Snapping batch-norm crossings changes no output of the model."""
    model, images, x = random_tiny("12x12_pre_pre", 3, n_images=64)
    before = compile_onnx(_export(tmp_path, model, model.input_size, batch=64, name="a.onnx"))
    acc_before = last_layer_accumulators(model, x)
    assert snap_thresholds(model) > 0
    after = compile_onnx(_export(tmp_path, model, model.input_size, batch=64, name="b.onnx"))
    np.testing.assert_array_equal(last_layer_accumulators(model, x), acc_before)
    np.testing.assert_array_equal(run_reference(after, images), run_reference(before, images))
    for a, b in zip(before.layers[:-1], after.layers[:-1], strict=True):  # thresholds are canonical
        np.testing.assert_array_equal(a.thresholds, b.thresholds)
        np.testing.assert_array_equal(a.ge, b.ge)
