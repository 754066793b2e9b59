"""The IR file format and the reference engine's definition, checked against direct formulas."""

import zipfile

import numpy as np
import pytest

from bcnn import ir
from bcnn.engine.reference import run_layers, run_reference
from bcnn.errors import BcnnError
from bcnn.randnet import ConvSpec, random_images, random_net


def test_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    net = random_net(rng, convs=[ConvSpec(5, pad=1), ConvSpec(7, pool=2)], fcs=[9, 10])
    ir.save(net, tmp_path / "n.bcnn")
    back = ir.load(tmp_path / "n.bcnn")
    x = random_images(rng, net, 10)
    assert np.array_equal(run_reference(net, x), run_reference(back, x))
    assert [layer.pad_bit for layer in back.layers] == [layer.pad_bit for layer in net.layers]


def test_reference_matches_direct_formula():
    """One binary layer by hand: acc = 2·popcount(XNOR) − N, padding with the pad bit."""
    rng = np.random.default_rng(3)
    net = random_net(rng, input_shape=(5, 5, 2), convs=[ConvSpec(3, kernel=3, pad=1), ConvSpec(4, pad=1)],
                     fcs=[6])
    x = random_images(rng, net, 3)
    outs = run_layers(net, x)
    bits_in, layer = outs[0], net.layers[1]
    padded = np.pad(bits_in, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=bool(layer.pad_bit))
    for n in range(3):
        for oy in range(5):
            for ox in range(5):
                window = padded[n, oy:oy + 3, ox:ox + 3, :].reshape(-1)
                for c in range(layer.out_ch):
                    pop = np.sum(~(window ^ layer.weights[c].reshape(-1)))
                    acc = 2 * pop - layer.fan_in
                    t = layer.thresholds[c]
                    assert outs[1][n, oy, ox, c] == (acc >= t if layer.ge[c] else acc <= t)


def test_corrupt_and_foreign_files(tmp_path):
    rng = np.random.default_rng(0)
    good = tmp_path / "n.bcnn"
    ir.save(random_net(rng), good)
    (tmp_path / "trunc.bcnn").write_bytes(good.read_bytes()[:100])
    (tmp_path / "text.bcnn").write_text("hello")
    for name in ("trunc.bcnn", "text.bcnn", "missing.bcnn"):
        with pytest.raises(BcnnError):
            ir.load(tmp_path / name)
    # a file from another format version names both versions
    with np.load(good) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["header"] = np.array(str(arrays["header"]).replace('"format_version": 1', '"format_version": 99'))
    np.savez(tmp_path / "v99.bcnn.npz", **arrays)
    with pytest.raises(BcnnError, match="version 99"):
        ir.load(tmp_path / "v99.bcnn.npz")
    assert zipfile.is_zipfile(good)


def test_shapes_that_do_not_chain_are_rejected():
    net = random_net(np.random.default_rng(0))
    net.layers[1].in_shape = (9, 9, 9)
    with pytest.raises(BcnnError, match="does not match"):
        net.validate()


def test_resolve_unknown_model_lists_bundled():
    with pytest.raises(BcnnError, match="not a bundled model"):
        ir.resolve("no-such-model")
