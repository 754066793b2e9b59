"""The compiler against real Brevitas exports: torch, the qonnx executor and the reference engine agree.

For each tiny network (random weights, random batch-norm with negative scales) the last layer's integer
accumulators must be identical three ways -- the Brevitas model (forward hook), the QONNX graph run by
``qonnx.core.onnx_exec.execute_onnx`` (logits turned back into accumulators with the compiled affine),
and ``bcnn.engine.reference`` on the uint8 images -- and so must the argmax.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch
from torch import nn

warnings.filterwarnings("ignore", message=".*fast_hadamard_transform.*")

from bcnn import ir  # noqa: E402
from bcnn.compile import compile_onnx  # noqa: E402
from bcnn.engine.reference import logits, run_layers, run_reference  # noqa: E402
from bcnn.errors import BcnnError  # noqa: E402
from bcnn.models import build_model, export_onnx, last_layer_accumulators, randomize_batchnorm  # noqa: E402

N_IMAGES = 24

CONFIGS = {
    # 8x8, three convs: zero pad in the first, ±1 pad in the second, pool after the sign, then before BN
    "pad_post_pre": dict(channels=(5, 6, 7), padding=[True, True, False], pool=[None, "post", "pre"],
                         fc=(7,), head="bn"),
    # 12x12, two padded convs pooling before BN and after the sign, two hidden FCs, +1 padding
    "12x12_two_fc": dict(input_size=12, channels=(6, 10), padding=True, pool=["pre", "post"], fc=(7, 5),
                         head="tensornorm", pad_value=1.0),
    # 8x8, valid convolutions, no pooling, FC straight after a 4x4 map, no output affine,
    # per-channel input normalization (Sub and Div by (1, C, 1, 1) constants) folded into input_lut
    "valid_no_pool": dict(channels=(5, 7), padding=False, pool=None, fc=(), head=None,
                          input_norm=((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))),
    # 12x12, pooling before BN in both layers (OR/AND pooling), 2x-1 input affine off
    "12x12_pre_pre": dict(input_size=12, channels=(7, 6), padding=[True, False], pool="pre", fc=(10,),
                          head="bn", input_affine=False),
}


def _images(rng: np.random.Generator, size: int, n: int = N_IMAGES) -> np.ndarray:
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float pixel/255 NCHW, as ToTensor does."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().float().div(255)


def _qonnx_outputs(path, x: np.ndarray) -> np.ndarray:
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    model = ModelWrapper(str(path)).transform(InferShapes())
    out = execute_onnx(model, {model.graph.input[0].name: x})
    return out[model.graph.output[0].name]


def _export(tmp_path, model: nn.Module, size: int, batch: int = N_IMAGES, name: str = "m.onnx", **kw):
    path = tmp_path / name
    export_onnx(model, path, (batch, 3, size, size), **kw)
    return path


def random_tiny(name: str, seed: int, n_images: int = N_IMAGES):
    """A tiny model of CONFIGS[name] with random weights and batch-norm calibrated on random images."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(int(rng.integers(1 << 30)))
    model = build_model("tiny", **CONFIGS[name])
    images = _images(rng, model.input_size, n_images)
    x = _to_float(images)
    randomize_batchnorm(model, rng, calibrate=x)
    model.eval()
    return model, images, x


@pytest.mark.parametrize("name", list(CONFIGS))
def test_bit_exact_three_ways(tmp_path, name):
    model, images, x = random_tiny(name, sorted(CONFIGS).index(name) + 11)
    size = model.input_size
    path = _export(tmp_path, model, size)

    net = compile_onnx(path)
    acc_ref = run_reference(net, images)
    acc_torch = last_layer_accumulators(model, x)
    out_q = _qonnx_outputs(path, x.numpy()).astype(np.float64)
    acc_q = (out_q - net.output_bias) / net.output_scale
    assert np.abs(acc_q - np.rint(acc_q)).max() < 1e-3

    assert acc_ref.shape == (N_IMAGES, 10)
    np.testing.assert_array_equal(acc_torch, acc_ref)
    np.testing.assert_array_equal(np.rint(acc_q).astype(np.int64), acc_ref)
    with torch.no_grad():
        out_torch = model(x).numpy().astype(np.float64)
    np.testing.assert_allclose(logits(net, acc_ref), out_torch, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(np.argmax(logits(net, acc_ref), axis=1), np.argmax(out_torch, axis=1))
    np.testing.assert_array_equal(np.argmax(out_q, axis=1), np.argmax(out_torch, axis=1))

    # the test is only meaningful if hidden bits vary and the BN signs produced both comparisons
    hidden = run_layers(net, images)[:-1]
    for layer, bits in zip(net.layers, hidden, strict=False):
        varying = (bits.reshape(-1, layer.out_ch).any(0) & ~bits.reshape(-1, layer.out_ch).all(0)).mean()
        assert varying >= 0.5, f"{layer.name}: only {varying:.0%} of channels vary"
    assert not all(layer.ge.all() for layer in net.layers[:-1])

    # the IR file round trip keeps it bit-exact
    ir.save(net, tmp_path / "m.bcnn")
    np.testing.assert_array_equal(run_reference(ir.load(tmp_path / "m.bcnn"), images), acc_ref)


def test_structure_and_pool_modes(tmp_path):
    """Layer shapes, padding bits and OR/AND pooling come out as the topology says."""
    rng = np.random.default_rng(5)
    torch.manual_seed(0)
    model = build_model("tiny", **CONFIGS["pad_post_pre"])
    randomize_batchnorm(model, rng, negative=0.5)
    net = compile_onnx(_export(tmp_path, model, 8, batch=1))
    assert [(lay.name, lay.in_shape, lay.kernel, lay.pad, lay.pool) for lay in net.layers] == [
        ("conv0", (8, 8, 3), 3, 1, 1), ("conv1", (8, 8, 5), 3, 1, 2), ("conv2", (4, 4, 6), 3, 0, 2),
        ("fc3", (1, 1, 7), 1, 0, 1), ("fc4", (1, 1, 7), 1, 0, 1)]
    assert net.layers[1].pad_bit == 0  # ConstantPad2d(1, -1.0)
    assert not net.layers[1].pool_and.any()  # pool after the sign: OR
    np.testing.assert_array_equal(net.layers[2].pool_and, ~net.layers[2].ge)  # before BN: AND where <=
    bn = [m for m in model.features if isinstance(m, nn.BatchNorm2d)][2]  # after conv2's pool
    np.testing.assert_array_equal(net.layers[2].ge, bn.weight.detach().numpy() > 0)
    # Q1.7 input after 2x-1: pixel 0 -> -128, 255 -> 127
    assert net.input_lut[:, 0].tolist() == [-128] * 3 and net.input_lut[:, 255].tolist() == [127] * 3


def test_torchscript_export_compiles_identically(tmp_path):
    """Brevitas' TorchScript path (dynamo=False: Constant nodes, Transpose+MatMul) gives the same IR."""
    rng = np.random.default_rng(7)
    torch.manual_seed(0)
    model = build_model("tiny", **CONFIGS["12x12_two_fc"])
    randomize_batchnorm(model, rng)
    a = compile_onnx(_export(tmp_path, model, 12, batch=1, name="d.onnx"))
    b = compile_onnx(_export(tmp_path, model, 12, batch=1, name="t.onnx", dynamo=False))
    images = _images(rng, 12, 8)
    np.testing.assert_array_equal(run_reference(a, images), run_reference(b, images))
    for la, lb in zip(a.layers, b.layers, strict=True):
        np.testing.assert_array_equal(la.weights, lb.weights)
        if not la.is_last:
            np.testing.assert_array_equal(la.thresholds, lb.thresholds)


def test_constant_channel_thresholds(tmp_path):
    """A zero batch-norm scale gives a constant bit, encoded with an out-of-range threshold."""
    rng = np.random.default_rng(3)
    torch.manual_seed(0)
    model = build_model("tiny", **CONFIGS["valid_no_pool"])
    randomize_batchnorm(model, rng)
    bn = [m for m in model.features if isinstance(m, nn.BatchNorm2d)][1]
    with torch.no_grad():
        bn.weight[0], bn.bias[0] = 0.0, 0.5  # always +1
        bn.weight[1], bn.bias[1] = 0.0, -0.5  # always -1
    model.eval()
    path = _export(tmp_path, model, 8)
    net = compile_onnx(path)
    n = net.layers[1].fan_in
    assert net.layers[1].thresholds[0] < -n and net.layers[1].thresholds[1] > n
    images = _images(rng, 8)
    bits = run_layers(net, images)[1]
    assert bits[..., 0].all() and not bits[..., 1].any()
    np.testing.assert_array_equal(last_layer_accumulators(model, _to_float(images)), run_reference(net, images))


TOPOLOGIES = {
    # FINN's CNV-W1A1: valid convolutions, pooling after the sign, TensorNorm head
    "cnv": ([64, 64, 128, 128, 256, 256, 512, 512, 10], [1, 2, 1, 2, 1, 1, 1, 1, 1]),
    # the paper's BinaryNet: padding 1 (±1 in binary layers), pooling before batch-norm, BatchNorm1d head
    "binarynet": ([128, 128, 256, 256, 512, 512, 1024, 1024, 10], [1, 2, 1, 2, 1, 2, 1, 1, 1]),
}


@pytest.mark.parametrize("arch", list(TOPOLOGIES))
def test_reference_topologies_bit_exact(tmp_path, arch):
    """Full-size topologies with random weights: export, compile, and torch == fast engine == reference."""
    from bcnn.engine.fast import run_fast

    torch.manual_seed(3)
    rng = np.random.default_rng(3)
    model = build_model(arch)
    images = _images(rng, 32, 3)
    x = _to_float(images)
    randomize_batchnorm(model, rng, calibrate=x)
    model.eval()
    net = compile_onnx(_export(tmp_path, model, 32, batch=1))
    channels, pools = TOPOLOGIES[arch]
    assert [layer.out_ch for layer in net.layers] == channels
    assert [layer.pool for layer in net.layers] == pools
    acc_torch = last_layer_accumulators(model, x)
    np.testing.assert_array_equal(run_fast(net, images), acc_torch)
    np.testing.assert_array_equal(run_reference(net, images[:1]), acc_torch[:1])


# ------------------------------------------------------------------------------------------ bad input


def _message(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg
    return msg


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("bad") / "ok.onnx"
    torch.manual_seed(0)  # the same model whichever tests ran before
    model = build_model("tiny", **CONFIGS["pad_post_pre"])
    randomize_batchnorm(model, np.random.default_rng(0))
    export_onnx(model, path, (1, 3, 8, 8))
    return path


def _mutate(src, dst, fn):
    model = onnx.load(str(src))
    fn(model)
    onnx.save(model, str(dst))
    return dst


def test_truncated_and_missing_files(tmp_path, exported):
    data = exported.read_bytes()
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(BcnnError) as e:
        compile_onnx(bad)
    assert "not a readable ONNX model" in _message(e)
    (tmp_path / "text.onnx").write_text("hello, not onnx")
    with pytest.raises(BcnnError) as e:
        compile_onnx(tmp_path / "text.onnx")
    _message(e)
    with pytest.raises(BcnnError) as e:
        compile_onnx(tmp_path / "missing.onnx")
    assert "no such file" in _message(e)


def test_non_binary_weights(tmp_path):
    torch.manual_seed(0)
    model = build_model("tiny", channels=(5, 6), weight_bit_width=2)
    with pytest.raises(BcnnError) as e:
        compile_onnx(_export(tmp_path, model, 8, batch=1))
    msg = _message(e)
    assert "(Conv)" in msg and "2-bit weights" in msg and "BipolarQuant" in msg


def test_unsupported_op(tmp_path):
    torch.manual_seed(0)
    model = build_model("tiny", channels=(5, 6), pool=[None, "post"])
    model.features[-1] = nn.AvgPool2d(2)
    with pytest.raises(BcnnError) as e:
        compile_onnx(_export(tmp_path, model, 8, batch=1))
    msg = _message(e)
    assert "(AveragePool)" in msg and "unsupported" in msg


def _set_attr(op_type: str, index: int, name: str, value):
    def fn(model):
        node = [n for n in model.graph.node if n.op_type == op_type][index]
        for a in node.attribute:
            if a.name == name:
                node.attribute.remove(a)
                break
        node.attribute.append(onnx.helper.make_attribute(name, value))
    return fn


@pytest.mark.parametrize("op_type,index,attr,value,expect", [
    ("Conv", 1, "strides", [2, 2], "stride"),
    ("Conv", 1, "dilations", [2, 2], "dilation"),
    ("Conv", 1, "group", 5, "groups"),
    ("Conv", 2, "pads", [1, 1, 1, 1], "zero padding"),
    ("MaxPool", 0, "strides", [1, 1], "strides"),
])
def test_unsupported_attributes(tmp_path, exported, op_type, index, attr, value, expect):
    path = _mutate(exported, tmp_path / "bad.onnx", _set_attr(op_type, index, attr, value))
    with pytest.raises(BcnnError) as e:
        compile_onnx(path)
    msg = _message(e)
    assert msg.startswith("node ") and f"({op_type})" in msg and expect in msg


def test_zero_valued_pad_in_binary_layer(tmp_path, exported):
    def fn(model):
        pad = next(n for n in model.graph.node if n.op_type == "Pad")
        value = next(t for t in model.graph.initializer if t.name == pad.input[2])
        value.CopyFrom(onnx.numpy_helper.from_array(np.array(0.0, np.float32), value.name))
    with pytest.raises(BcnnError) as e:
        compile_onnx(_mutate(exported, tmp_path / "bad.onnx", fn))
    assert "(Pad)" in _message(e) and "not representable in 1 bit" in _message(e)


def test_output_must_be_accumulators(tmp_path, exported):
    def fn(model):  # cut the graph after the last hidden sign activation
        last_bq = [n for n in model.graph.node if n.op_type == "BipolarQuant" and
                   not any(i.name == n.input[0] for i in model.graph.initializer)][-1]
        keep = list(model.graph.node).index(last_bq) + 1
        del model.graph.node[keep:]
        for vi in [v for v in model.graph.value_info if v.name == last_bq.output[0]]:
            model.graph.value_info.remove(vi)
        model.graph.output[0].CopyFrom(onnx.helper.make_tensor_value_info(last_bq.output[0], 1, None))
    with pytest.raises(BcnnError) as e:
        compile_onnx(_mutate(exported, tmp_path / "bad.onnx", fn))
    assert "accumulators" in _message(e)
