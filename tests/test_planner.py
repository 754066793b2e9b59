"""Device files, chunk shapes, the planner against FINN's heuristic, the resource and power models, and
multi-pixel chunks (SIMD spanning kernel rows) simulated bit-exactly with timing equal to the plan."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bcnn.devices import get_device, load_devices
from bcnn.engine.reference import run_reference
from bcnn.errors import BcnnError
from bcnn.plan import chunk_shape, legal_simds, make_plan
from bcnn.randnet import ConvSpec, random_images, random_net
from bcnn.resources import bram36_for, estimate_layer, varying_rom_bits
from bcnn.rtl.generate import generate, weight_words
from bcnn.sim import lint, simulate


def _binarynet():
    return random_net(np.random.default_rng(0), (32, 32, 3),
                      [ConvSpec(128, pad=1), ConvSpec(128, pad=1, pool=2), ConvSpec(256, pad=1),
                       ConvSpec(256, pad=1, pool=2), ConvSpec(512, pad=1), ConvSpec(512, pad=1, pool=2)],
                      [1024, 1024, 10])


def test_devices_shipped_and_user_file(tmp_path, monkeypatch):
    parts = load_devices()
    assert {"xc7vx690t", "xc7z020", "xc7z045", "xczu3eg", "xcvu9p"} <= set(parts)
    assert parts["xc7z020"]["lut"] == 53_200 and parts["xc7vx690t"]["bram36"] == 1_470
    assert all(p["source"] for p in parts.values())
    assert get_device("XC7VX690T-2FFG1761")["name"] == "xc7vx690t"
    (tmp_path / "mine.json").write_text(json.dumps({"xc7a35t": {"lut": 20800, "ff": 41600, "bram36": 50,
                                                                "dsp": 90, "source": "DS180"}}))
    monkeypatch.setenv("BCNN_DEVICES", str(tmp_path))
    assert get_device("xc7a35t")["bram36"] == 50
    with pytest.raises(BcnnError, match="unknown device"):
        get_device("xc9nope")
    (tmp_path / "bad.json").write_text(json.dumps({"x": {"lut": "many"}}))
    with pytest.raises(BcnnError, match="needs numbers"):
        load_devices()


def test_chunk_shapes():
    net = _binarynet()
    first, conv = net.layers[0], net.layers[3]
    assert chunk_shape(first, 3) == (1, 1, 1) and chunk_shape(first, 9) == (1, 3, 1)
    assert chunk_shape(first, 27) == (3, 3, 1) and chunk_shape(first, 2) is None
    assert legal_simds(conv) == [1, 2, 4, 8, 16, 32, 64, 128, 256, 768, 2304]
    fc = net.layers[6]  # 4x4x512 window
    assert chunk_shape(fc, 1024) == (1, 2, 1) and chunk_shape(fc, 4096) == (2, 4, 1)


def test_bram_packing():
    assert bram36_for(512, 72) == 1 and bram36_for(512, 36) == 0.5 and bram36_for(6, 24576) == 341.5
    assert bram36_for(4096, 2048) == 228 and bram36_for(0, 8) == 0


def test_block_rams_hold_only_the_weight_columns_that_vary():
    """The model counts the ROM columns that differ between words, read off the words the RTL stores."""
    net = random_net(np.random.default_rng(5), (8, 8, 3), [ConvSpec(16, pad=1), ConvSpec(8, pad=1)], [4])
    layer = net.layers[1]
    layer.weights[:4] = True  # four output channels of +1 only
    foldings = [(pe, simd) for pe in (1, 2, 4, 8) for simd in legal_simds(layer)]
    table = varying_rom_bits(layer, foldings)  # all foldings at once, as the planner asks
    for pe, simd in foldings:
        words = weight_words(layer, pe, simd)
        varying = int((words.any(0) & ~words.all(0)).sum())
        assert table[pe, simd] == varying_rom_bits(layer, [(pe, simd)])[pe, simd] == varying
        assert estimate_layer(net, 1, pe, simd, "bram")["bram36"] == bram36_for(len(words), varying)
    # PE 4, two words: lane p holds channel p (all +1) and channel p + 4, so about half the columns are constant
    assert table[4, 144] < 0.6 * 4 * 144
    assert table[8, 144] == 0  # one word is constants: no block RAM at all
    assert estimate_layer(net, 1, 8, 144, "bram")["bram36"] == 0


def test_planner_beats_finn_and_respects_the_cap():
    net = _binarynet()
    ours = make_plan(net, "xc7vx690t", 90.0, max_util=0.8)
    finn = make_plan(net, "xc7vx690t", 90.0, max_util=0.8, planner="finn")
    assert ours["ii_cycles"] < finn["ii_cycles"]
    for p in (ours, finn):
        assert p["lut"] <= 0.8 * p["device"]["lut"] and p["bram36"] <= 0.8 * p["device"]["bram36"]
        assert p["ii_cycles"] == max(la["cycles"] for la in p["layers"])
        assert {"ii_cycles", "latency_cycles", "fps", "tops", "lut", "ff", "bram36", "dsp", "watts",
                "layers"} <= set(p)
        assert p["power"]["static_w"] > 0 and p["watts"] > p["power"]["static_w"]
    # with a target, the fewest LUTs that meet it
    t = make_plan(net, "xc7vx690t", 90.0, target_fps=90e6 / 20000)
    assert t["ii_cycles"] <= 20000 and t["lut"] < ours["lut"]
    with pytest.raises(BcnnError, match="no folding"):
        make_plan(net, "xc7z020", 100.0, target_fps=50_000)
    with pytest.raises(BcnnError, match="streaming the input"):
        make_plan(net, "xc7z020", 100.0, target_fps=1e6)
    for clock in (0.0, 1e5):  # a typo's clock would make every planned figure fiction
        with pytest.raises(BcnnError, match="at most 1,000 MHz"):
            make_plan(net, "xc7z020", clock)


def test_given_folding_is_checked():
    net = _binarynet()
    with pytest.raises(BcnnError, match="SIMD 5"):
        make_plan(net, pe=[1] * 9, simd=[5] + [1] * 8)
    with pytest.raises(BcnnError, match="memory style"):
        make_plan(net, pe=[1] * 9, simd=[1] * 9, mem=["flash"] * 9)


def test_multi_pixel_chunks_bit_exact_and_timed(tmp_path):
    """Every chunk shape (part of a pixel, pixels of a kernel row, whole kernel rows), every memory style,
    an even kernel with padding, nf > 1 and = 1: bit-exact with the reference, II and latency as planned."""
    net = random_net(np.random.default_rng(10), (8, 8, 3),
                     [ConvSpec(6, pad=1), ConvSpec(8, pad=1, pool=2), ConvSpec(4, kernel=2, pad=1)], [6, 10])
    net.layers[1].pad_bit = 1
    images = random_images(np.random.default_rng(1), net, 10)
    expected = run_reference(net, images)
    for k, (pe, simd, mem) in enumerate([([3, 4, 2, 3, 5], [9, 18, 8, 20, 3], ["logic", "bram", "lutram",
                                                                               "logic", "bram"]),
                                         ([6, 2, 4, 1, 2], [27, 54, 16, 100, 6], None)]):
        plan = make_plan(net, pe=pe, simd=simd, mem=mem)
        rtl = generate(net, plan, tmp_path / f"rtl{k}")
        assert lint(rtl) == []
        res = simulate(rtl, images, expected, build_dir=tmp_path / "build")
        assert res["mismatches"] == 0
        assert res["ii_cycles"] == plan["ii_cycles"] and res["latency_cycles"] == plan["latency_cycles"]


def test_cli_plan_json_and_table(tmp_path, capsys):
    from bcnn import ir
    from bcnn.cli import main

    net = random_net(np.random.default_rng(3), (8, 8, 3), [ConvSpec(8, pad=1, pool=2)], [10])
    ir.save(net, tmp_path / "n.bcnn")
    assert main(["plan", str(tmp_path / "n.bcnn"), "--device", "xc7z020", "--clock-mhz", "100",
                 "--max-util", "0.5", "--json", "-o", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr()
    plan = json.loads(out.out.strip().splitlines()[-1])
    assert {"ii_cycles", "latency_cycles", "fps", "tops", "lut", "ff", "bram36", "dsp", "watts",
            "layers"} <= set(plan)
    assert "share of II" in out.err and "BRAM36" in out.err and "estimate" in out.err
    assert main(["plan", str(tmp_path / "n.bcnn"), "--device", "xc7z020", "--target-fps", "1e9"]) == 2


def test_fit_recovers_known_coefficients():
    """The calibration fit (non-negative least squares on the model's features) recovers a known model."""
    from bcnn.resources import LUT_FEATURES, estimate_geometry, features, fit, geometry

    net = _binarynet()
    truth = {"lut": {f: 0.0 for f in LUT_FEATURES}, "ff": {"const": 100.0, "ax": 1.0}}
    truth["lut"].update(const=80.0, pop_const=1.0, pop_var=2.0, int=2.0, acc=3.0, rom_32=1.5, rom_64=2.5, rot=3.0)
    rows = []
    for i, pe, simd, mem in [(0, 64, 9, "logic"), (0, 8, 27, "bram"), (1, 64, 384, "logic"), (1, 8, 128, "bram"),
                             (2, 16, 1152, "logic"), (3, 32, 768, "logic"), (3, 4, 256, "bram"),
                             (4, 512, 2304, "logic"), (5, 16, 1536, "bram"), (6, 4, 512, "bram"),
                             (7, 1, 256, "bram"), (2, 32, 384, "logic"), (5, 64, 512, "logic")]:
        g = geometry(net, i, pe, simd)
        lf, ff = features(g, mem)
        y = {"lut": sum(truth["lut"][k] * v for k, v in lf.items()),
             "ff": sum(truth["ff"].get(k, 0.0) * v for k, v in ff.items()), "bram36": 0, "dsp": 0}
        rows.append({"point": {"mem": mem}, "geometry": g, "yosys": y})
    co = fit(rows)
    for r in rows:
        lf, _ = features(r["geometry"], r["point"]["mem"])
        assert sum(co["lut"][k] * v for k, v in lf.items()) == pytest.approx(r["yosys"]["lut"], rel=1e-3)
    assert estimate_geometry(rows[0]["geometry"], "logic")["bram36"] == 3.0
