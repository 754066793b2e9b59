"""bcnn.decompile: a model rebuilt from a compiled net computes that net, and compiles back to it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings

from bcnn import fuzz
from bcnn.compile import compile_onnx
from bcnn.data import to_model_input
from bcnn.decompile import load_net_weights
from bcnn.engine.fast import run_fast
from bcnn.errors import BcnnError
from bcnn.models import build_model, export_onnx, last_layer_accumulators
from test_random_networks import SLOW, brevitas_specs

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

EDGES = {"options": {"input_size": 6, "in_channels": 3, "kernel": 3, "channels": [9], "padding": [1],
                     "pool": ["pre"], "fc": [5], "num_classes": 4, "head": "bn", "pad_value": -1.0},
         "negative": 0.5, "zero_var": 0.2, "zero_scale": 0.3, "snap": True, "dynamo": False, "n_images": 6, "seed": 5}


def rebuilt_model(spec: dict, net, seed: int = 1):
    """A fresh model of the spec's topology (other initial weights) loaded from ``net``."""
    source, _ = fuzz.brevitas_model(spec)
    options = dict(spec["options"])
    if options.get("input_norm") == "random":  # the drawn (mean, std), as the source used them
        options["input_norm"] = (source.input_mean.flatten().tolist(), source.input_std.flatten().tolist())
    torch.manual_seed(seed)
    model = build_model("tiny", **options)
    rng = np.random.default_rng(seed)
    size, c = options["input_size"], options["in_channels"]
    load_net_weights(model, net, rng.integers(0, 256, (32, size, size, c), dtype=np.uint8), batch=7)
    return model


@example(spec=EDGES)
@given(brevitas_specs())
@settings(max_examples=12, **SLOW)
def test_rebuilt_model_computes_the_net_and_compiles_back_to_it(tmp_path_factory, spec):
    res = fuzz.check_brevitas(spec, work_dir=tmp_path_factory.getbasetemp())
    model = rebuilt_model(spec, res.net)
    # images it was not calibrated on: the same accumulators as the engine
    held_out = np.random.default_rng(7).integers(0, 256, (9, *res.net.input_shape), dtype=np.uint8)
    np.testing.assert_array_equal(last_layer_accumulators(model, to_model_input(held_out)),
                                  run_fast(res.net, held_out))
    path = tmp_path_factory.mktemp("rebuilt") / "m.onnx"
    export_onnx(model, path, (1, res.net.input_shape[2], *res.net.input_shape[:2]), dynamo=False)
    again = compile_onnx(path)
    assert np.array_equal(again.input_lut, res.net.input_lut)
    for a, b in zip(again.layers, res.net.layers, strict=True):
        assert np.array_equal(a.weights, b.weights)
        for name in ("thresholds", "ge", "pool_and"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name
    np.testing.assert_allclose(again.output_scale, res.net.output_scale, rtol=1e-6)
    np.testing.assert_allclose(again.output_bias, res.net.output_bias, rtol=1e-6, atol=1e-6)


def test_train_mode_starts_near_the_net():
    """Batch statistics in train mode give almost the bits of the calibrated running statistics."""
    res = fuzz.check_brevitas(EDGES)
    model = rebuilt_model(EDGES, res.net)
    images = np.random.default_rng(3).integers(0, 256, (64, 6, 6, 3), dtype=np.uint8)
    x = to_model_input(images)
    model.eval()
    with torch.no_grad():
        evaluated = model(x).argmax(1)
        model.train()
        trained = model(x).argmax(1)
    assert (evaluated == trained).float().mean() >= 0.7


def test_a_net_of_another_topology_is_refused():
    res = fuzz.check_brevitas(EDGES)
    images = np.zeros((4, 6, 6, 3), dtype=np.uint8)
    with pytest.raises(BcnnError, match="layers"):
        load_net_weights(build_model("tiny", **{**EDGES["options"], "fc": []}), res.net, images)
    with pytest.raises(BcnnError, match="do not fit"):
        load_net_weights(build_model("tiny", **{**EDGES["options"], "channels": [8]}), res.net, images)
    with pytest.raises(BcnnError, match="pooling"):  # max-pool after the sign is OR: the net's AND channels differ
        load_net_weights(build_model("tiny", **{**EDGES["options"], "pool": ["post"]}), res.net, images)
    with pytest.raises(BcnnError, match="input_lut"):
        load_net_weights(build_model("tiny", **{**EDGES["options"], "input_affine": False}), res.net, images)
