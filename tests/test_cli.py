"""The `bcnn` command end to end: JSON last lines, exit status 2 with a one-line error on bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from bcnn import ir
from bcnn.randnet import ConvSpec, random_images, random_net


def bcnn(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "bcnn", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=900)


def last_json(proc):
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small random network and images, saved as files, as a user would pass them."""
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(7)
    net = random_net(rng, input_shape=(8, 8, 3), convs=[ConvSpec(6, pad=1), ConvSpec(5, pool=2)], fcs=[7, 10])
    ir.save(net, d / "net.bcnn")
    np.save(d / "images.npy", random_images(rng, net, 24))
    return d


def test_infer_json(small):
    out = last_json(bcnn("infer", small / "net.bcnn", "--data", small / "images.npy", "--json",
                         "--out", small / "res.npz", "--engine", "reference"))
    assert out["images"] == 24 and "accuracy" not in out
    res = np.load(small / "res.npz")
    assert res["accumulators"].shape == (24, 10) and res["predictions"].shape == (24,)


def test_full_flow_commands(small):
    plan = last_json(bcnn("plan", small / "net.bcnn", "--device", "xc7z020", "--clock-mhz", 100,
                          "-o", small / "plan.json", "--json"))
    assert plan["ii_cycles"] > 0 and len(plan["layers"]) == 4
    last_json(bcnn("generate", small / "net.bcnn", "--plan", small / "plan.json", "-o", small / "rtl", "--json"))
    sim = last_json(bcnn("simulate", small / "rtl", "--data", small / "images.npy", "--limit", 20, "--json"))
    assert sim["images"] == 20 and sim["mismatches"] == 0
    assert abs(sim["ii_cycles"] - plan["ii_cycles"]) <= 0.02 * plan["ii_cycles"]
    syn = last_json(bcnn("synth", small / "rtl", "--json"))
    assert syn["lut"] > 0 and all(layer["lut"] > 0 for layer in syn["layers"])


def test_run_json(small, tmp_path):
    out = last_json(bcnn("run", "--model", small / "net.bcnn", "--data", small / "images.npy", "--images", 20,
                         "--out", tmp_path / "run", "--json", "--no-synth"))
    assert out["mismatches"] == 0 and out["bit_exact"]
    assert abs(out["ii_cycles"] - out["planned_ii_cycles"]) <= 0.02 * out["planned_ii_cycles"]
    assert out["torch_mismatches"] == 0 and out["fast_engine_mismatches"] == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert {"summary", "plan", "bench", "paper_comparison"} <= set(report)
    backends = {r["backend"] for r in report["bench"]["results"]}
    assert {"fast", "torch", "fpga"} <= backends
    fpga = [r["images_per_s"] for r in report["bench"]["results"] if r["backend"] == "fpga"]
    assert len(set(fpga)) == 1  # a pipelined design's throughput does not depend on the batch
    page = (tmp_path / "run" / "report.html").read_text()
    assert "data:image/png;base64," in page and "Bit-exact" in page


@pytest.mark.parametrize("case", ["truncated_onnx", "not_onnx", "missing_net", "corrupt_net", "bad_images"])
def test_bad_input_exit_2_one_line(small, tmp_path, case):
    if case == "truncated_onnx":
        f = tmp_path / "m.onnx"
        f.write_bytes(b"\x08\x07\x12\x04trun")
        proc = bcnn("compile", f, "-o", tmp_path / "x.bcnn")
    elif case == "not_onnx":
        f = tmp_path / "m.onnx"
        f.write_text("hello, I am not a model")
        proc = bcnn("compile", f, "-o", tmp_path / "x.bcnn")
    elif case == "missing_net":
        proc = bcnn("infer", tmp_path / "nope.bcnn")
    elif case == "corrupt_net":
        f = tmp_path / "c.bcnn"
        f.write_bytes((small / "net.bcnn").read_bytes()[:50])
        proc = bcnn("infer", f)
    else:
        np.save(tmp_path / "bad.npy", np.zeros((3, 8, 8, 3), np.float32))
        proc = bcnn("infer", small / "net.bcnn", "--data", tmp_path / "bad.npy")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "x.bcnn").exists()
