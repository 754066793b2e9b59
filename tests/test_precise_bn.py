"""benchmarks/precise_bn.py: weight files averaged tensor by tensor, and batch norm measured over every batch;
with benchmarks/keep_epochs.py, which keeps a run's epochs to average."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bcnn.models import build_model
from benchmark_scripts import load

precise_bn, keep_epochs = load("precise_bn"), load("keep_epochs")


def test_an_average_is_each_float_tensor_s_mean_and_the_last_file_s_counts(tmp_path: Path) -> None:
    torch.manual_seed(0)
    states = [build_model("tiny").state_dict() for _ in range(3)]
    for i, state in enumerate(states):
        for key in state:
            if key.endswith("num_batches_tracked"):
                state[key] = torch.tensor(10 * (i + 1))
        torch.save({"model": state, "arch": "tiny"}, tmp_path / f"e{i}.pt")
    average = precise_bn.averaged_weights([precise_bn.read_weights(tmp_path / f"e{i}.pt") for i in range(3)])
    assert average.keys() == states[-1].keys()
    for key, value in average.items():
        if value.is_floating_point():
            assert torch.allclose(value, sum(s[key] for s in states) / 3, atol=1e-6), key
        else:
            assert torch.equal(value, states[-1][key]), key


def test_precise_bn_holds_the_mean_of_every_batch_not_the_last_few() -> None:
    model = build_model("tiny")
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (1000, 8, 8, 3), dtype=np.uint8)  # tiny: 8x8 inputs
    images[:500] //= 4  # the order is shuffled: an exponential average would lean to whichever came last
    precise_bn.measure_batch_norm(model, images, plain=True)
    first = next(m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    captured = []
    handle = first.register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0]))
    with torch.no_grad():
        model(precise_bn.to_float(torch.from_numpy(images)))
    handle.remove()
    x = captured[0].transpose(0, 1).flatten(1)  # channels first: (C, everything else)
    assert not model.training
    assert torch.allclose(first.running_mean, x.mean(1), atol=1e-4)


def test_an_average_saved_as_best_pt_exports_exactly_and_names_its_epochs(tmp_path: Path) -> None:
    """Two epochs of one run kept, averaged and measured, then `bcnn train --export-only` from the saved best.pt."""
    from bcnn import ir
    from bcnn.train import TrainConfig, train
    from test_train import OPTIONS, _dataset

    data = _dataset(tmp_path / "data", per_class=50)
    run = dict(arch="tiny", data=str(data), model_options=json.loads(OPTIONS), batch_size=20, progress=False,
               schedule="halve:10")  # a halving schedule lets a run be lengthened by --resume
    for epoch in (1, 2):
        train(TrainConfig(out_dir=str(tmp_path / "run"), epochs=epoch, resume=True, export=False, **run))
        assert keep_epochs.keep(tmp_path / "run", tmp_path) == epoch
    kept = torch.load(tmp_path / "e002.pt", weights_only=False)
    assert kept["state"]["epoch"] == 2 and "history" not in kept["state"] and "optimizer" not in kept
    out = tmp_path / "average"
    proc = subprocess.run([sys.executable, str(Path(precise_bn.__file__)), str(tmp_path / "e001.pt"),
                           str(tmp_path / "e002.pt"), "--data", str(data), "--save", str(out / "best.pt"),
                           "--threads", "1"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    measured = torch.load(out / "best.pt", weights_only=False)["acc"]
    assert f"precise BN: {measured:.4f}" in proc.stdout
    summary = train(TrainConfig(out_dir=str(out), export_only=True, **run))
    assert summary["torch_engine_mismatches"] == 0 and summary["torch_test_acc"] == pytest.approx(measured)
    assert ir.load(out / "model.bcnn").meta["recipe"]["averaged_epochs"] == [1, 2]
