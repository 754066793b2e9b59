"""The benchmark: rows per backend and batch, FPGA arithmetic, torch model exactness, plot, and `bcnn bench`."""

import json

import numpy as np
import pytest
import torch

from bcnn import bench
from bcnn.cli import main
from bcnn.engine.float_torch import float_torch_model
from bcnn.engine.reference import run_reference
from bcnn.randnet import ConvSpec, random_images, random_net


def small_net():
    return random_net(np.random.default_rng(1), (8, 8, 3), convs=[ConvSpec(70, pad=1), ConvSpec(65, pool=2)],
                      fcs=[33, 10])


def test_fpga_rows():
    rows = bench.fpga_rows({"ii_cycles": 1000, "latency_cycles": 5000, "clock_mhz": 100.0}, [1, 4])
    assert [r["images_per_s"] for r in rows] == [100_000.0, 100_000.0]
    assert rows[0]["latency_ms"] == pytest.approx(0.05) and rows[1]["latency_ms"] == pytest.approx(0.08)


def test_float_torch_model_is_exact():
    net = small_net()
    net.layers[1].pad_bit = 1
    x = random_images(np.random.default_rng(2), net, 5)
    with torch.inference_mode():
        out = float_torch_model(net)(torch.from_numpy(x)).round().long().numpy()
    assert np.array_equal(out, run_reference(net, x))


def test_torch_models_refuse_inputs_a_gpus_tf32_would_round():
    """cuDNN rounds convolution operands to TF32 (11 significant bits) by default: exact for 8-bit inputs,
    not for a LUT beyond ±2^11, which the GPU models refuse (before touching a GPU) and the CPU computes."""
    from bcnn.engine.packed_torch import packed_torch_model
    from bcnn.engine.torch_input import require_float32_exact
    from bcnn.errors import BcnnError

    net = small_net()
    net.input_lut[0, 255] = 2**11 + 1
    x = random_images(np.random.default_rng(3), net, 2)
    with torch.inference_mode():
        assert np.array_equal(float_torch_model(net)(torch.from_numpy(x)).round().long().numpy(),
                              run_reference(net, x))
    for build in (float_torch_model, packed_torch_model):
        with pytest.raises(BcnnError, match="TF32"):
            build(net, "cuda")
    net.input_lut[0, 255] = 2**11
    require_float32_exact(net, "cuda")  # the largest TF32 keeps exactly: no error


def test_run_bench_rows_and_plot(tmp_path):
    result = bench.run_bench(small_net(), batches=(1, 3), backends=("fast", "reference", "torch"), repeats=1,
                             min_seconds=0, reference_max_batch=1,
                             fpga={"ii_cycles": 100, "latency_cycles": 300, "clock_mhz": 50.0})
    got = {(r["backend"], r["batch"]) for r in result["results"]}
    assert got == {("fast", 1), ("fast", 3), ("reference", 1), ("torch", 1), ("torch", 3), ("fpga", 1), ("fpga", 3)}
    assert all(r["images_per_s"] > 0 and r["latency_ms"] > 0 for r in result["results"])
    png = bench.plot(result, tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bench_json(tmp_path, capsys):
    from bcnn import ir

    ir.save(small_net(), tmp_path / "n.bcnn")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"ii_cycles": 1000, "latency_cycles": 4000, "clock_mhz": 100.0}))
    rc = main(["bench", str(tmp_path / "n.bcnn"), "--batch", "1,2", "--backends", "fast,fpga", "--repeats", "1",
               "--min-seconds", "0", "--plan", str(plan), "--plot", str(tmp_path / "b.png"), "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {r["backend"] for r in result["results"]} == {"fast", "fpga"}
    assert (tmp_path / "b.png").is_file()


def test_cli_infer_fast_default(tmp_path, capsys):
    from bcnn import ir

    net = random_net(np.random.default_rng(0), (32, 32, 3), convs=[ConvSpec(8, pool=2)], fcs=[10])
    ir.save(net, tmp_path / "n.bcnn")
    assert main(["infer", str(tmp_path / "n.bcnn"), "--limit", "20", "--out", str(tmp_path / "r.npz"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["engine"] == "fast" and "compile_seconds" in result
    assert main(["infer", str(tmp_path / "n.bcnn"), "--limit", "20", "--engine", "reference",
                 "--out", str(tmp_path / "q.npz")]) == 0
    assert np.array_equal(np.load(tmp_path / "r.npz")["accumulators"], np.load(tmp_path / "q.npz")["accumulators"])


def test_gpu_power_parsing_and_absence(monkeypatch):
    from bcnn.gpupower import GpuPower, parse_power_draw

    assert parse_power_draw("71.42\n[N/A]\n\n250.00\n") == [71.42, 250.0]
    monkeypatch.setenv("PATH", "/nonexistent")  # no nvidia-smi: no figure, no error
    with GpuPower() as p:
        pass
    assert p.watts is None and p.samples == []


@pytest.mark.parametrize(("seed", "compiled"), [(0, False), (1, False), (0, True), (1, True)],
                         ids=["pad0", "pad1-chunked", "pad0-compiled", "pad1-compiled-pieces"])
def test_packed_torch_model_is_exact(seed, compiled, monkeypatch):
    """Bit-packed XOR-popcount model == reference: pad bits 0 and 1, fan-ins not multiples of 64 (70 and 65
    channels, 3×3 kernels), OR and AND pooling, FC layers; a tiny chunk size also exercises the chunking.
    Compiled: inductor's generated code must keep int64 wrap-around in the popcount (as Triton did on the
    H200, where `bcnn bench` checked it against the reference engine)."""
    from bcnn.engine import packed_torch

    rng = np.random.default_rng(seed)
    net = random_net(rng, (8, 8, 3), convs=[ConvSpec(70, pad=1), ConvSpec(65, pad=1, pool=2), ConvSpec(64, pad=2)],
                     fcs=[33, 10])
    net.layers[1].pad_bit, net.layers[2].pad_bit = seed, 1 - seed
    assert net.layers[1].pool_and.any() and not net.layers[1].pool_and.all()
    x = random_images(rng, net, 5)
    monkeypatch.setattr(packed_torch, "CHUNK_BYTES", 4096 if seed else 2**28)
    monkeypatch.setattr(packed_torch, "MAX_FUSED_PIECES", 3)  # compiled: 3 pieces a layer, of unequal rows
    with torch.inference_mode():
        out = packed_torch.packed_torch_model(net, compile=compiled)(torch.from_numpy(x))
    assert out.dtype == torch.int64 and np.array_equal(out.numpy(), run_reference(net, x))


def test_compiled_packed_layers_stay_few_pieces():
    """Inductor fuses each piece, so their number only costs compile time: capped, while an eager model keeps
    CHUNK_BYTES's bound on the memory a piece materializes."""
    from bcnn.engine.packed_torch import MAX_FUSED_PIECES, piece_rows

    positions, chunk = 4096 * 32 * 32, 14563  # binarynet's conv1 at batch 4096 (128 channels in and out, 3×3)
    rows = piece_rows(positions, chunk, fused=True)
    assert -(-positions // rows) <= MAX_FUSED_PIECES < -(-positions // chunk)
    assert piece_rows(positions, chunk, fused=False) == chunk
    assert piece_rows(256 * 32 * 32, chunk, fused=True) == chunk  # batch 256 (19 pieces): as measured on the H200


def test_packed_torch_model_compiles_every_batch_size():
    """A sweep past dynamo's default limit of 8 kernels must keep compiling, not fall back to eager (which
    `bcnn bench` would then time as torch-packed-cuda). The eager backend keeps this a cheap trace."""
    from torch._dynamo.utils import counters

    from bcnn.engine.packed_torch import packed_torch_model

    rng = np.random.default_rng(2)
    net = random_net(rng, (8, 8, 3), convs=[ConvSpec(16, pad=1, pool=2)], fcs=[10])
    model = packed_torch_model(net, compile=True, backend="eager")
    torch._dynamo.reset()
    counters.clear()
    before = (torch._dynamo.config.recompile_limit, torch._dynamo.config.fail_on_recompile_limit_hit)
    for b in range(1, 13):
        x = random_images(rng, net, b)
        with torch.inference_mode():
            assert np.array_equal(model(torch.from_numpy(x)).numpy(), run_reference(net, x))
    assert counters["stats"]["unique_graphs"] == 12
    # the raised limit holds for this model's calls only: the process's other compiles keep torch's settings
    assert (torch._dynamo.config.recompile_limit, torch._dynamo.config.fail_on_recompile_limit_hit) == before


def test_popcount64_signed_words():
    from bcnn.engine.packed_torch import popcount64

    words = [0, -1, -(1 << 63), 1, (1 << 63) - 1, 0x5555555555555555, -0x5555555555555556, 12345]
    got = popcount64(torch.tensor(words, dtype=torch.int64)).tolist()
    assert got == [bin(w & (2**64 - 1)).count("1") for w in words]


def test_run_bench_torch_packed():
    result = bench.run_bench(small_net(), batches=(2,), backends=("torch-packed", "torch-packed-cuda"), repeats=1,
                             min_seconds=0)
    rows = [(r["backend"], r["batch"]) for r in result["results"]]
    if torch.cuda.is_available():
        assert rows == [("torch-packed", 2), ("torch-packed-cuda", 2)]
    else:
        assert rows == [("torch-packed", 2)]
        assert "torch-packed-cuda: no CUDA device here" in result["notes"]
