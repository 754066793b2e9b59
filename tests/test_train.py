"""Training: learns, resumes exactly after SIGKILL, runs under torchrun with 2 CPU processes."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bcnn import ir
from bcnn.data import load
from bcnn.engine.reference import predict, run_reference

OPTIONS = json.dumps({"input_size": 8, "channels": [8, 8], "fc": [16]})


def _dataset(root, per_class: int, seed: int = 0, size: int = 8):
    """Learnable images (8x8 unless ``size``): each of 4 classes has its own colour, plus noise."""
    rng = np.random.default_rng(seed)
    colours = np.array([[220, 40, 40], [40, 220, 40], [40, 40, 220], [200, 200, 60]])
    for split, n in (("train", per_class), ("test", max(10, per_class // 4))):
        for c, colour in enumerate(colours):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(n):
                img = np.clip(colour + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i:04d}.png")
    return root


def _train(data, out, epochs, *extra, env=None, wait=True):
    cmd = [sys.executable, "-m", "bcnn", "train", "--arch", "tiny", "--data", str(data), "--epochs", str(epochs),
           "--out", str(out), "--options", OPTIONS, "--batch-size", "20", "--no-progress", "--json", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return _dataset(tmp_path_factory.mktemp("data"), per_class=100)


def test_two_epochs_beat_chance_and_export_is_exact(data, tmp_path):
    summary = _train(data, tmp_path / "run", 2)
    assert summary["epochs"] == 2 and summary["best_acc"] > 0.5  # chance is 0.25
    net = ir.load(tmp_path / "run" / "model.bcnn")
    assert net.meta["test_data"] == "class-folder tree"  # which data the recorded accuracy is on
    test = load(data, split="test")
    engine_acc = float((predict(net, run_reference(net, test.images)) == test.labels).mean())
    assert engine_acc == pytest.approx(summary["best_acc"])  # the torch model and the engine agree
    assert summary["torch_engine_mismatches"] == 0 and summary["engine_test_acc"] == pytest.approx(engine_acc)
    assert net.meta["torch_engine_mismatches"] == 0 and net.meta["test_images"] == len(test)
    assert (tmp_path / "run" / "model.onnx").is_file() and (tmp_path / "run" / "checkpoint.pt").is_file()
    # --export-only re-exports the best epoch without training: same network
    (tmp_path / "run" / "model.bcnn").unlink()
    again = _train(data, tmp_path / "run", 2, "--export-only")
    assert again["epochs"] == 2 and again["best_epoch"] == summary["best_epoch"]
    assert ir.load(tmp_path / "run" / "model.bcnn").layers[0].weights.tobytes() == net.layers[0].weights.tobytes()


def test_bf16_training_learns_and_its_export_is_exact(data, tmp_path):
    summary = _train(data, tmp_path / "run", 2, "--precision", "bf16")
    assert summary["best_acc"] > 0.5 and summary["torch_engine_mismatches"] == 0


def test_compiled_training_learns_and_its_export_is_exact(data, tmp_path):
    summary = _train(data, tmp_path / "run", 2, "--compile")
    assert summary["best_acc"] > 0.5 and summary["torch_engine_mismatches"] == 0
    # the compiled per-epoch evaluation saw what the eager export check sees
    assert summary["best_acc"] == pytest.approx(summary["torch_test_acc"])


def test_compiled_forward_and_backward_match_eager():
    """torch.compile must train the same function: loss and every gradient agree with eager mode."""
    import torch.nn.functional as F

    from bcnn.models import build_model

    torch.manual_seed(0)
    model = build_model("tiny", **json.loads(OPTIONS)).train()
    x, y = torch.rand(16, 3, 8, 8), torch.randint(0, 4, (16,))
    results = []
    for forward in (model, torch.compile(model)):
        model.zero_grad()
        loss = F.cross_entropy(forward(x), y)
        loss.backward()
        results.append((loss.item(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (eager_loss, eager_grads), (comp_loss, comp_grads) = results
    assert comp_loss == pytest.approx(eager_loss, rel=1e-5) and len(comp_grads) == len(eager_grads) > 0
    for a, b in zip(eager_grads, comp_grads, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("setting", [{"precision": "fp8"}, {"loss": "hinge"}, {"schedule": "halve:0"},
                                     {"schedule": "step"}], ids=str)
def test_unknown_settings_are_refused(data, tmp_path, setting):
    from bcnn.errors import BcnnError
    from bcnn.train import TrainConfig, train

    with pytest.raises(BcnnError, match=next(iter(setting))):
        train(TrainConfig(arch="tiny", data=str(data), out_dir=str(tmp_path), **setting))


def test_squared_hinge_loss():
    from bcnn.train import loss_fn

    labels = torch.tensor([0, 2])
    # margin >= 1 on the +-1 one-hot target costs nothing
    assert loss_fn("sqrhinge", torch.tensor([[1.0, -1.0, -2.0], [-1.5, -1.0, 3.0]]), labels) == 0
    # each of the 6 outputs is 1 short: mean of 1^2
    assert loss_fn("sqrhinge", torch.zeros(2, 3), labels) == pytest.approx(1.0)
    logits = torch.randn(4, 3)
    assert loss_fn("ce", logits, labels.repeat(2)) == torch.nn.functional.cross_entropy(logits, labels.repeat(2))


def test_channels_last_training_exports_exactly(data, tmp_path):
    """--channels-last changes the training layout only: the weights export and check as usual."""
    from bcnn.train import TrainConfig, train

    summary = train(TrainConfig(arch="tiny", data=str(data), out_dir=str(tmp_path), batch_size=20, epochs=1,
                                model_options=json.loads(OPTIONS), progress=False, channels_last=True))
    assert summary["best_acc"] > 0.5 and summary["torch_engine_mismatches"] == 0


def test_squared_hinge_with_halving_schedule_learns(data, tmp_path):
    """Brevitas bnn_pynq's recipe (squared hinge, lr halved every N epochs) trains, and its export is exact."""
    summary = _train(data, tmp_path / "run", 2, "--loss", "sqrhinge", "--schedule", "halve:1", "--lr", "0.02")
    assert [h["lr"] for h in summary["history"]] == pytest.approx([0.01, 0.005])
    # history.json names the recipe, so that a later run can go on at the lr where this one stopped
    saved = json.loads((tmp_path / "run" / "history.json").read_text())
    assert (saved["loss"], saved["schedule"], saved["lr"]) == ("sqrhinge", "halve:1", 0.02)
    # its schedule does not depend on --epochs, so the run may be lengthened: epoch 3 goes on at lr/8
    longer = _train(data, tmp_path / "run", 3, "--loss", "sqrhinge", "--schedule", "halve:1", "--lr", "0.02",
                    "--resume")
    assert longer["history"][:2] == summary["history"] and longer["history"][2]["lr"] == pytest.approx(0.0025)
    assert summary["best_acc"] > 0.5 and summary["torch_engine_mismatches"] == 0


def test_resume_after_sigkill_matches_uninterrupted(data, tmp_path):
    reference = tmp_path / "straight"
    _train(data, reference, 3)
    killed = tmp_path / "killed"
    proc = _train(data, killed, 3, wait=False)
    ckpt = killed / "checkpoint.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved_epoch = torch.load(ckpt, weights_only=False)["state"]["epoch"]
    assert saved_epoch < 3, "the run finished before it could be killed; make the data set larger"
    _train(data, killed, 3, "--resume")
    a = torch.load(reference / "checkpoint.pt", weights_only=False)
    b = torch.load(killed / "checkpoint.pt", weights_only=False)
    assert a["state"]["history"][-1]["test_acc"] == b["state"]["history"][-1]["test_acc"]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


def test_stop_after_stops_cleanly_and_resume_matches_uninterrupted(data, tmp_path):
    """--stop-after: a run ends at an epoch's end with its checkpoint written (whatever --checkpoint-every
    says), and --resume finishes the same schedule as a run that never stopped."""
    from bcnn.errors import BcnnError
    from bcnn.train import TrainConfig, train

    run = dict(arch="tiny", data=str(data), batch_size=20, train_limit=40, test_limit=8, progress=False,
               export=False, model_options=json.loads(OPTIONS), epochs=3, checkpoint_every=5)
    straight = train(TrainConfig(out_dir=str(tmp_path / "straight"), **run))
    stopped = train(TrainConfig(out_dir=str(tmp_path / "stopped"), stop_after=1e-3, **run))
    assert stopped["stopped_early"] and stopped["epochs"] == 1 and not straight["stopped_early"]
    assert stopped["schedule_epochs"] == 3  # what compare_curves.py reads of a stopped run's history.json
    # an export mid-run, by a command that names no --epochs, gives the run's schedule, not its own default
    exported = train(TrainConfig(out_dir=str(tmp_path / "stopped"), export_only=True, **{**run, "export": True,
                                                                                          "epochs": 10}))
    assert exported["schedule_epochs"] == 3 and exported["stopped_early"] and exported["epochs"] == 1
    resumed = train(TrainConfig(out_dir=str(tmp_path / "stopped"), resume=True, stop_after=3600, **run))
    assert resumed["epochs"] == 3 and not resumed["stopped_early"]
    a, b = (torch.load(tmp_path / d / "checkpoint.pt", weights_only=False) for d in ("straight", "stopped"))
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    with pytest.raises(BcnnError, match="--stop-after"):
        train(TrainConfig(out_dir=str(tmp_path / "bad"), stop_after=0.0, **run))


def test_time_budget_plans_the_run_by_the_clock(data, tmp_path):
    """--time-budget: the schedule follows the clock over every call of the run, and the run ends by itself
    when its next epoch would not fit; a --stop-after before that leaves the rest to --resume."""
    from bcnn.train import TrainConfig, train

    run = dict(arch="tiny", data=str(data), out_dir=str(tmp_path), batch_size=20, train_limit=40, test_limit=8,
               progress=False, export=False, model_options=json.loads(OPTIONS), epochs=1_000_000, time_budget=4.0)
    first = train(TrainConfig(stop_after=1.0, **run))
    assert first["stopped_early"] and 1 <= first["epochs"] < 1_000_000
    done = train(TrainConfig(resume=True, **run))
    assert not done["stopped_early"] and done["epochs"] > first["epochs"]
    progress = [r["progress"] for r in done["history"]]
    lrs = [r["lr"] for r in done["history"]]
    assert progress == sorted(progress) and lrs == sorted(lrs, reverse=True)  # cosine: only ever down
    assert progress[-1] > 0.5 and lrs[-1] < 0.5 * 5e-3
    assert [r["epoch"] for r in done["history"] if r.get("first_of_call")] == [1, first["epochs"] + 1]
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["state"]
    assert state["ended"] and state["train_seconds"] > 1.0
    again = train(TrainConfig(resume=True, **run))  # an ended run has nothing left to train
    assert again["epochs"] == done["epochs"]


def test_budget_to_stop_ends_the_schedule_at_the_stop(data, tmp_path, capsys):
    """--budget-to-stop: a one-call plan whose budget was guessed too large (three runs starting at once
    took 65 s against the 30 s charged on session 14's lease, and stopped 93% into their cosines) fits its
    schedule to --stop-after at its first epoch, and so ends it there instead of being cut off."""
    from bcnn.errors import BcnnError
    from bcnn.train import TrainConfig, train

    run = dict(arch="tiny", data=str(data), batch_size=20, train_limit=40, test_limit=8, progress=False,
               export=False, model_options=json.loads(OPTIONS), epochs=1_000_000, time_budget=3600.0, stop_after=4.0)
    cut = train(TrainConfig(out_dir=str(tmp_path / "cut"), **run))
    assert cut["stopped_early"] and cut["history"][-1]["progress"] < 0.01
    capsys.readouterr()
    fitted = train(TrainConfig(out_dir=str(tmp_path / "fitted"), budget_to_stop=True, **run))
    assert not fitted["stopped_early"] and fitted["history"][-1]["progress"] > 0.5
    assert "the schedule fits the" in capsys.readouterr().err  # and says how long the start took
    state = torch.load(tmp_path / "fitted" / "checkpoint.pt", weights_only=False)["state"]
    assert state["ended"] and state["time_budget"] < 4.0
    with pytest.raises(BcnnError, match="--budget-to-stop"):
        train(TrainConfig(out_dir=str(tmp_path / "bad"), budget_to_stop=True, **{**run, "stop_after": None}))


def test_next_epoch_estimate_skips_a_calls_warm_up():
    """A call's first epoch also compiles the model (88 s against 1.7 s on session 12's GPU lease, where it
    ended a resumed run after one epoch): the estimate of the next epoch is the last gap within one call."""
    from bcnn.schedule import eta, next_epoch_seconds

    history = [{"epoch": 1, "seconds": 30.0, "finished_at": 100.0, "first_of_call": True}]
    assert next_epoch_seconds([]) == 0.0 and next_epoch_seconds(history) == 30.0  # nothing better yet
    history += [{"epoch": 2, "seconds": 1.5, "finished_at": 102.0}, {"epoch": 3, "seconds": 1.5, "finished_at": 104.0}]
    assert next_epoch_seconds(history) == 2.0
    history.append({"epoch": 4, "seconds": 88.0, "finished_at": 5000.0, "first_of_call": True})  # a resume
    assert next_epoch_seconds(history) == 2.0 and eta(history, 20) == ", about 40 s to go"
    history.append({"epoch": 5, "seconds": 2.0, "finished_at": 5002.5})
    assert next_epoch_seconds(history) == 2.0  # the median of 2, 2 and 2.5
    history.append({"epoch": 6, "seconds": 600.0, "finished_at": 5602.5})  # paused by SIGSTOP for 10 min
    assert next_epoch_seconds(history) == 2.5  # not a reason to stop 10 min early
    history += [{"epoch": e, "seconds": 3.0, "finished_at": 5602.5 + 3.0 * (e - 6)} for e in (7, 8)]
    assert next_epoch_seconds(history) == 3.0  # slower epochs for good: followed after two of them


def test_glorot_lr_scale_is_binarynets_per_layer_rate(data, tmp_path):
    """--lr-scale glorot: each binary layer's latent weights learn at lr x BinaryNet's W_LR_scale,
    sqrt((fan_in + fan_out) / 1.5) with the kernel in both fans; the other parameters at lr."""
    from bcnn.errors import BcnnError
    from bcnn.models import build_model
    from bcnn.train import TrainConfig, glorot_lr_scale, param_groups, train

    assert glorot_lr_scale(torch.empty(128, 128, 3, 3)) == pytest.approx(math.sqrt(2 * 128 * 9 / 1.5))  # 39.2
    assert glorot_lr_scale(torch.empty(1024, 8192)) == pytest.approx(math.sqrt((8192 + 1024) / 1.5))  # 78.4
    model = build_model("tiny", **json.loads(OPTIONS))
    groups = param_groups(model, "glorot")
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters())) and groups[-1]["scale"] == 1.0
    run = dict(arch="tiny", data=str(data), out_dir=str(tmp_path), batch_size=20, train_limit=40, test_limit=8,
               progress=False, export=False, model_options=json.loads(OPTIONS), epochs=2, lr=1e-3,
               schedule="exp:2", lr_scale="glorot")
    train(TrainConfig(**run))
    lrs = [g["lr"] for g in torch.load(tmp_path / "checkpoint.pt", weights_only=False)["optimizer"]["param_groups"]]
    factor = lrs[-1] / 1e-3  # the schedule's factor at the last step, the same for every group
    assert 0 < factor < 1 and lrs[:-1] == pytest.approx([1e-3 * factor * g["scale"] for g in groups[:-1]])
    with pytest.raises(BcnnError, match="--lr-scale"):  # it defines the run: a resume must keep it
        train(TrainConfig(resume=True, **{**run, "lr_scale": "none"}))
    with pytest.raises(BcnnError, match="expected one of"):
        train(TrainConfig(**{**run, "out_dir": str(tmp_path / "bad"), "lr_scale": "he"}))


def test_exponential_schedule_decays_to_its_last_halving(data, tmp_path):
    from bcnn.errors import BcnnError
    from bcnn.train import TrainConfig, train

    run = dict(arch="tiny", data=str(data), out_dir=str(tmp_path), batch_size=20, train_limit=40, test_limit=8,
               progress=False, export=False, model_options=json.loads(OPTIONS), epochs=2, lr=1e-2)
    summary = train(TrainConfig(schedule="exp:4", **run))
    assert [r["lr"] for r in summary["history"]] == pytest.approx([1e-2 / 4, 1e-2 / 16])
    with pytest.raises(BcnnError, match="exp:K"):
        train(TrainConfig(schedule="exp:0", **{**run, "out_dir": str(tmp_path / "bad")}))


def test_checkpoint_every_n_epochs_keeps_best_and_last(data, tmp_path, monkeypatch):
    """--checkpoint-every 3: checkpoint.pt after epochs 3 and 6, the last (7) and every best epoch only."""
    import bcnn.train as tr

    written = []
    save = tr.torch_save_atomic

    def spy(obj, path):
        if path.name == "checkpoint.pt":
            written.append(obj["state"]["epoch"])
        save(obj, path)

    monkeypatch.setattr(tr, "torch_save_atomic", spy)
    summary = tr.train(tr.TrainConfig(arch="tiny", data=str(data), out_dir=str(tmp_path / "run"), epochs=7,
                                      batch_size=20, train_limit=40, test_limit=8, progress=False, export=False,
                                      model_options=json.loads(OPTIONS), checkpoint_every=3))
    accs = [r["test_acc"] for r in summary["history"]]
    best = {i + 1 for i, a in enumerate(accs) if a > max(accs[:i], default=-1.0)}
    assert written == sorted(best | {3, 6, 7})
    assert len(written) < 7 or best == set(range(1, 8))  # fewer writes, unless every epoch was a best one


def test_resume_with_other_settings_is_refused(data, tmp_path):
    """The LR schedule is part of the checkpoint: --resume with another --epochs would silently keep it."""
    from bcnn.errors import BcnnError
    from bcnn.train import TrainConfig, train

    opts = json.loads(OPTIONS)
    run = dict(arch="tiny", data=str(data), out_dir=str(tmp_path), batch_size=20, train_limit=40, test_limit=8,
               model_options=opts, progress=False)
    train(TrainConfig(epochs=1, **run))
    with pytest.raises(BcnnError, match=r"--epochs 3 \(checkpoint: 1\)"):
        train(TrainConfig(epochs=3, resume=True, **run))
    with pytest.raises(BcnnError, match="--options"):
        train(TrainConfig(epochs=1, export_only=True, **{**run, "model_options": {**opts, "fc": [8]}}))
    with pytest.raises(BcnnError, match="--loss 'sqrhinge' \\(checkpoint: 'ce'\\)"):
        train(TrainConfig(epochs=1, resume=True, loss="sqrhinge", **run))
    # what does not define the run may change between resumptions
    assert train(TrainConfig(epochs=1, resume=True, precision="bf16", compile=True, **run))["epochs"] == 1
    # a checkpoint from before --loss and --schedule existed was trained with their defaults
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    del ckpt["config"]["loss"], ckpt["config"]["schedule"]
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    assert train(TrainConfig(epochs=1, resume=True, **run))["epochs"] == 1
    with pytest.raises(BcnnError, match="--schedule 'halve:5' \\(checkpoint: 'cosine'\\)"):
        train(TrainConfig(epochs=1, resume=True, schedule="halve:5", **run))


@pytest.mark.parametrize("extra", [[], ["--compile"]], ids=["eager", "compiled"])
def test_torchrun_two_processes(data, tmp_path, extra):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "bcnn",
           "train", "--arch", "tiny", "--data", str(data), "--epochs", "1", "--out", str(tmp_path / "ddp"),
           "--options", OPTIONS, "--batch-size", "20", "--no-progress", "--train-limit", "200",
           "--stop-after", "3600", "--time-budget", "3600", *extra]  # every rank follows rank 0's clock
    # two CPU processes (gloo) even on a machine with a GPU
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "ddp" / "model.bcnn").is_file()


def test_more_ranks_than_gpus_is_refused(monkeypatch):
    """nccl cannot put two ranks on one GPU: a second rank on a one-GPU node gets an error naming the fix
    (no GPU here, so the node's CUDA answers are stood in for)."""
    from bcnn import train as tr
    from bcnn.errors import BcnnError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert tr._device() == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(BcnnError, match="--nproc_per_node=1"):
        tr._device()


def test_warm_start_continues_from_an_earlier_run(data, tmp_path):
    """--init-from: a new schedule on an earlier run's best weights; the export counts both runs' epochs."""
    from bcnn.errors import BcnnError
    from bcnn.train import TrainConfig, train

    opts = json.loads(OPTIONS)
    run = dict(arch="tiny", data=str(data), batch_size=20, train_limit=40, test_limit=8, model_options=opts,
               progress=False)
    train(TrainConfig(out_dir=str(tmp_path / "a"), epochs=2, **run))
    # lr 0: the parameters stay those of a's best epoch (batch-norm statistics still move)
    b = train(TrainConfig(out_dir=str(tmp_path / "b"), epochs=1, lr=0.0, init_from=str(tmp_path / "a"), **run))
    start = torch.load(tmp_path / "a" / "best.pt", weights_only=False)
    end = torch.load(tmp_path / "b" / "best.pt", weights_only=False)
    params = [k for k in start["model"] if "running_" not in k and "num_batches" not in k]
    assert params and all(torch.equal(start["model"][k], end["model"][k]) for k in params)
    net = ir.load(tmp_path / "b" / "model.bcnn")
    # epoch 0 is the source's own accuracy, and a candidate for the export
    assert b["history"][0] == {"epoch": 0, "test_acc": start["acc"]} and b["best_acc"] >= start["acc"]
    assert b["epochs_trained"] == net.meta["epochs_trained"] == start["epoch"] + b["best_epoch"]
    assert net.meta["warm_start"] == {"init_from": str(tmp_path / "a"), "epochs_before": start["epoch"]}
    assert b["torch_engine_mismatches"] == 0
    # a warm-started run resumes only as itself
    with pytest.raises(BcnnError, match="--init-from not set"):
        train(TrainConfig(out_dir=str(tmp_path / "b"), epochs=1, lr=0.0, resume=True, **run))
    with pytest.raises(BcnnError, match="--options"):
        train(TrainConfig(out_dir=str(tmp_path / "c"), epochs=1, init_from=str(tmp_path / "a"),
                          **{**run, "model_options": {**opts, "fc": [8]}}))
    with pytest.raises(BcnnError, match="run folder holding best.pt"):
        train(TrainConfig(out_dir=str(tmp_path / "c"), epochs=1, init_from=str(tmp_path / "nowhere"), **run))
    # files torch cannot read at all: text, nothing, a zip that is not torch's
    for name, content in (("notes.pt", b"hours of training"), ("empty.pt", b""), ("other.pt", b"PK\x03\x04")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(BcnnError, match=re.escape(f"--init-from {tmp_path / name}: not a best.pt or checkpoint")):
            train(TrainConfig(out_dir=str(tmp_path / "c"), epochs=1, init_from=str(tmp_path / name), **run))


def test_warm_start_from_a_compiled_net(data, tmp_path, capsys):
    """--init-from model.bcnn: signs and thresholds rebuilt into float weights; epoch 0 scores what the net
    scores, and the run's export counts the net's epochs."""
    from bcnn.errors import BcnnError
    from bcnn.train import TrainConfig, train

    run = dict(arch="tiny", data=str(data), batch_size=20, train_limit=40, test_limit=50,
               model_options=json.loads(OPTIONS), progress=False)
    a = train(TrainConfig(out_dir=str(tmp_path / "a"), epochs=2, **run))
    source = ir.load(a["bcnn"])
    test = load(str(data), split="test", limit=50)
    capsys.readouterr()
    b = train(TrainConfig(out_dir=str(tmp_path / "b"), epochs=1, init_from=a["bcnn"], **run))
    assert "rebuilding float weights from" in capsys.readouterr().err  # the minutes before epoch 1 are named
    engine_acc = float((predict(source, run_reference(source, test.images)) == test.labels).mean())
    assert b["history"][0]["test_acc"] == engine_acc
    assert b["epochs_trained"] == source.meta["epochs_trained"] + b["best_epoch"]
    assert b["torch_engine_mismatches"] == 0
    with pytest.raises(BcnnError, match="as --arch cnv --options '{}'"):  # a bundled model, by name
        train(TrainConfig(out_dir=str(tmp_path / "c"), epochs=1, init_from="cnv", **run))


def test_a_compiled_net_is_calibrated_on_augmented_images(data, tmp_path):
    """The rebuilt net's batch norm holds the statistics of the training images as training augments them
    (whose batches train mode normalises by), not of the plain images."""
    from bcnn.checkpoints import CALIBRATION_IMAGES, warm_start
    from bcnn.models import build_model
    from bcnn.train import TrainConfig, augment, to_float, train

    run = dict(arch="tiny", data=str(data), batch_size=20, train_limit=40, test_limit=50,
               model_options=json.loads(OPTIONS), progress=False, seed=3)
    a = train(TrainConfig(out_dir=str(tmp_path / "a"), epochs=1, **run))
    images = load(str(data), split="train").images
    model = build_model("tiny", **json.loads(OPTIONS))
    warm_start(model, TrainConfig(out_dir=str(tmp_path / "b"), init_from=a["bcnn"], **run), images)
    norm = next(m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    seen = []
    hook = norm.register_forward_pre_hook(lambda _, args: seen.append(args[0].double().mean((0, 2, 3))))
    model.eval()
    with torch.no_grad():
        plain = torch.from_numpy(images[:CALIBRATION_IMAGES])
        model(to_float(augment(plain, torch.Generator().manual_seed(3))))
        model(to_float(plain))
    hook.remove()
    augmented_mean, plain_mean = seen
    assert not torch.allclose(augmented_mean, plain_mean, rtol=1e-3)  # the test can tell them apart
    torch.testing.assert_close(norm.running_mean.double(), augmented_mean, rtol=1e-4, atol=1e-6)


def test_freeze_features_trains_the_classifier_only(data, tmp_path):
    """--freeze-features: the convolutions compile back bit for bit to the warm start's (signs and thresholds);
    the fully connected layers learn; without a warm start it is refused."""
    from bcnn.errors import BcnnError
    from bcnn.train import TrainConfig, train

    run = dict(arch="tiny", data=str(data), batch_size=20, train_limit=40, test_limit=50,
               model_options=json.loads(OPTIONS), progress=False)
    a = train(TrainConfig(out_dir=str(tmp_path / "a"), epochs=1, **run))
    with pytest.raises(BcnnError, match="needs --init-from"):
        train(TrainConfig(out_dir=str(tmp_path / "c"), epochs=1, freeze_features=True, **run))
    tune = dict(run, epochs=2, lr=0.05, init_from=a["bcnn"], freeze_features=True, out_dir=str(tmp_path / "b"))
    train(TrainConfig(**tune))
    snap = train(TrainConfig(export_only=True, snapshot=True, **tune))  # the last epoch, whatever it scored
    assert snap["torch_engine_mismatches"] == 0
    source, tuned = ir.load(a["bcnn"]), ir.load(snap["bcnn"])
    convs = len(json.loads(OPTIONS)["channels"])
    for before, after in zip(source.layers[:convs], tuned.layers[:convs], strict=True):
        assert np.array_equal(before.weights, after.weights) and np.array_equal(before.thresholds, after.thresholds)
    assert any(not np.array_equal(before.weights, after.weights)
               for before, after in zip(source.layers[convs:], tuned.layers[convs:], strict=True))


def test_snapshot_carries_a_run_to_another_machine(data, tmp_path):
    """--export-only --snapshot compiles the latest epoch; --init-from it with --start-epoch K goes on at epoch
    K of the same schedule, as the uninterrupted run does, and counts the snapshot's epochs as its own."""
    from bcnn.errors import BcnnError
    from bcnn.train import TrainConfig, train

    run = dict(arch="tiny", data=str(data), batch_size=20, train_limit=40, test_limit=50, epochs=3,
               model_options=json.loads(OPTIONS), progress=False)
    whole = train(TrainConfig(out_dir=str(tmp_path / "whole"), **run))
    cut = train(TrainConfig(out_dir=str(tmp_path / "a"), stop_after=1e-3, **run))  # stops after epoch 1
    assert cut["stopped_early"] and cut["epochs"] == 1
    with pytest.raises(BcnnError, match="--snapshot goes with --export-only"):
        train(TrainConfig(out_dir=str(tmp_path / "a"), snapshot=True, **run))
    snap = train(TrainConfig(out_dir=str(tmp_path / "a"), export_only=True, snapshot=True, **run))
    assert snap["bcnn"] == str(tmp_path / "a" / "snapshot.bcnn") and snap["start_epoch"] == 1
    assert snap["torch_engine_mismatches"] == 0 and ir.load(snap["bcnn"]).meta["epochs_trained"] == 1
    on = train(TrainConfig(out_dir=str(tmp_path / "b"), init_from=snap["bcnn"], start_epoch=1, **run))
    source = ir.load(snap["bcnn"])
    test = load(str(data), split="test", limit=50)
    assert on["history"][0] == {"epoch": 1, "test_acc": float((predict(source, run_reference(source, test.images))
                                                                == test.labels).mean())}
    assert [r["epoch"] for r in on["history"]] == [1, 2, 3] and on["epochs"] == 3
    # the schedule goes on where the snapshot left it: each epoch ends at the uninterrupted run's lr
    assert [r["lr"] for r in on["history"][1:]] == [r["lr"] for r in whole["history"][1:]]
    assert on["epochs_trained"] == on["best_epoch"] and on["torch_engine_mismatches"] == 0
    # a second link, from a snapshot of the first at epoch 2: the run's curve travels in each snapshot
    train(TrainConfig(out_dir=str(tmp_path / "b2"), init_from=snap["bcnn"], start_epoch=1, stop_after=1e-3, **run))
    snap2 = train(TrainConfig(out_dir=str(tmp_path / "b2"), export_only=True, snapshot=True, **run))
    assert [r["epoch"] for r in ir.load(snap2["bcnn"]).meta["history"]] == [1, 2]
    last = train(TrainConfig(out_dir=str(tmp_path / "b3"), init_from=snap2["bcnn"], start_epoch=2, **run))
    assert [r["epoch"] for r in last["history"]] == [1, 2, 3]
    assert last["history"][0] == on["history"][0]  # the first link's measure of the first snapshot
    # carried epochs keep no timings of the machine they ran on: the next epoch's time is not a gap between two
    assert all("finished_at" not in r for r in last["history"][:2]) and "finished_at" in last["history"][2]
    for bad, match in ((dict(start_epoch=1), "needs --init-from"),
                       (dict(start_epoch=3, init_from=snap["bcnn"]), "an --epochs above it"),
                       (dict(start_epoch=2, init_from=snap["bcnn"]), "trained for 1 epochs, fewer than")):
        with pytest.raises(BcnnError, match=match):
            train(TrainConfig(out_dir=str(tmp_path / "c"), **{**run, **bad}))


def _cifar_batches(root: Path, labels_offset: int = 0) -> Path:
    """The CIFAR-10 pickle layout with learnable 32x32 images (4 colour classes); the training labels
    shifted by ``labels_offset`` (mod 4), the images and their order the same whatever the offset."""
    import pickle

    rng = np.random.default_rng(0)
    colours = np.array([[220, 40, 40], [40, 220, 40], [40, 40, 220], [200, 200, 60]])
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name, offset in [(f"data_batch_{i}", labels_offset) for i in range(1, 6)] + [("test_batch", 0)]:
        y = rng.integers(0, 4, 16)
        x = np.clip(colours[y][:, None, None, :] + rng.normal(0, 40, (16, 32, 32, 3)), 0, 255).astype(np.uint8)
        with open(d / name, "wb") as f:
            pickle.dump({b"data": x.transpose(0, 3, 1, 2).reshape(16, -1), b"labels": ((y + offset) % 4).tolist()}, f)
    return root


def test_distillation_at_weight_1_ignores_the_labels(tmp_path, capsys):
    """--teacher: at --distill-weight 1 the loss is the teacher's alone (labels shifted, same weights), at 0.5
    it mixes in the labels (shifted labels, other weights); the recipe names the teacher. The KL term's scale
    on the model's logits: --distill-scale, else 1 from scratch, else measured at a warm start (1 for a model
    that starts as the teacher), which best.pt's recipe records."""
    from bcnn.errors import BcnnError
    from bcnn.train import TrainConfig, train

    a, b = _cifar_batches(tmp_path / "a"), _cifar_batches(tmp_path / "b", labels_offset=1)
    run = dict(arch="tiny", epochs=1, batch_size=16, model_options={"input_size": 32, "channels": [4, 4],
               "fc": [8], "num_classes": 4}, progress=False)
    teacher = train(TrainConfig(data=str(a), out_dir=str(tmp_path / "teacher"), **run))["bcnn"]

    runs = itertools.count()

    def student(data: Path, weight: float, **more) -> dict:
        out = tmp_path / f"student{next(runs)}"
        train(TrainConfig(data=str(data), out_dir=str(out), distill_weight=weight, seed=1, export=False,
                          **run, **{"teacher": teacher, **more}))
        return {**torch.load(out / "checkpoint.pt", weights_only=False),
                "best": torch.load(out / "best.pt", weights_only=False)}

    same = [student(a, 1.0, distill_scale=2.0), student(b, 1.0, distill_scale=2.0)]
    mixed = [student(a, 0.5), student(b, 0.5)]
    assert all(torch.equal(v, same[1]["model"][k]) for k, v in same[0]["model"].items())
    assert not all(torch.equal(v, mixed[1]["model"][k]) for k, v in mixed[0]["model"].items())
    assert same[0]["state"]["history"][-1]["loss"] > 0  # the KL term itself, which the labels do not enter
    assert (same[0]["state"]["distill_scale"], mixed[0]["state"]["distill_scale"]) == (2.0, 1.0)
    assert student(a, 0.5, init_from=teacher)["state"]["distill_scale"] == pytest.approx(1.0, rel=1e-5)
    warm = student(a, 0.5, init_from=str(tmp_path / "student2"))
    assert warm["state"]["distill_scale"] != pytest.approx(1.0)
    # best.pt names the scale the run used, measured or given, for a run that goes on from its export
    assert [s["best"]["recipe"]["distill_scale"] for s in (warm, mixed[0], same[0])] == \
        [warm["state"]["distill_scale"], 1.0, 2.0]
    assert same[0]["config"]["teacher"] == teacher
    # an ensemble of one teacher twice teaches as that teacher: its logits' mean is exact
    twice = student(a, 1.0, distill_scale=2.0, teacher=f"{teacher},{teacher}")
    assert all(torch.equal(v, twice["model"][k]) for k, v in same[0]["model"].items())
    resumed = TrainConfig(data=str(a), out_dir=str(tmp_path / "student0"), teacher=teacher, distill_weight=1.0,
                          seed=1, export=False, resume=True, distill_scale=2.0, **run)
    for changed in (False, True):
        if changed:  # the teacher changes under the run, as a re-bundled model would
            net = ir.load(teacher)
            net.meta["note"] = "re-bundled"
            ir.save(net, teacher)
        capsys.readouterr()
        train(resumed)
        assert ("is not what this run started with" in capsys.readouterr().err) == changed
    # the teacher's bytes under another name resume a run (a re-bundled teacher kept from git); others do not
    fresh = replace(resumed, out_dir=str(tmp_path / "fresh"), resume=False)
    train(fresh)
    kept = tmp_path / "kept.bcnn"
    shutil.copy(teacher, kept)
    capsys.readouterr()
    train(replace(fresh, resume=True, teacher=str(kept)))
    assert "is not what this run started with" not in capsys.readouterr().err
    net.meta["note"] = "another net"
    ir.save(net, tmp_path / "other.bcnn")
    with pytest.raises(BcnnError, match="other settings: --teacher"):
        train(replace(fresh, resume=True, teacher=str(tmp_path / "other.bcnn")))
    with pytest.raises(BcnnError, match="input or classes differ"):  # cnv's 10 classes, this model's 4
        train(TrainConfig(data=str(a), out_dir=str(tmp_path / "c"), teacher="cnv", **run))


def test_shrunk_checkpoint_predicts_exactly_as_the_source(data, tmp_path):
    """shrink_checkpoint (the GPU script's returned weights): half the size, the same predictions."""
    from bcnn.checkpoints import shrink_checkpoint
    from bcnn.models import build_model
    from bcnn.train import TrainConfig, predictions, train

    opts = {**json.loads(OPTIONS), "channels": [32, 32], "fc": [64]}  # weights big enough to outweigh the rest
    train(TrainConfig(out_dir=str(tmp_path / "a"), arch="tiny", data=str(data), epochs=1, batch_size=20,
                      train_limit=80, model_options=opts, progress=False, export=False))
    for name in ("best.pt", "checkpoint.pt"):
        shrink_checkpoint(tmp_path / "a" / name, tmp_path / f"small-{name}")
        assert (tmp_path / f"small-{name}").stat().st_size < 0.6 * (tmp_path / "a" / name).stat().st_size
    source = torch.load(tmp_path / "a" / "best.pt", weights_only=False)["model"]
    small = torch.load(tmp_path / "small-best.pt", weights_only=False)["model"]
    assert {k for k, v in small.items() if v.dtype == torch.bfloat16} == \
        {k for k, v in source.items() if k.endswith(".weight") and v.dim() >= 2}
    # rounding keeps every latent weight's sign, so the binary layers and the predictions are the same
    images = load(data, split="test").images
    found = []
    for state in (source, small):
        model = build_model("tiny", **opts)
        model.load_state_dict(state)
        found.append(predictions(model, images))
    assert np.array_equal(*found)


def _returnable(out: Path) -> list[Path]:
    """The files of a device call's $OUT, checked against what such a call returns: at most 8 files of 16 MiB,
    no more than 2 folders down, named in letters, digits, '.', '_' and '-'."""
    files = [f for f in out.rglob("*") if f.is_file()]
    assert len(files) <= 8, files
    for f in files:
        rel = f.relative_to(out)
        assert len(rel.parts) <= 3 and all(re.fullmatch(r"[A-Za-z0-9._-]+", part) for part in rel.parts), rel
        assert f.stat().st_size <= 16 << 20, rel
    return files


def _gpu_script(tmp_path: Path):
    """benchmarks/gpu_train.sh run here as on a lent GPU, its folders under ``tmp_path`` (gpu, gpu2, work,
    returned), the data packed as `prepare` carries it (without its downloads: the wheels are installed
    here): the data, a ``call(command, out, ok=True, **env)`` that runs a command there and returns its
    output, and the script's command line."""
    repo = Path(__file__).resolve().parents[1]
    data = _dataset(tmp_path / "data", per_class=25, size=32)  # CIFAR-10's image size, as the carry packs it
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           **{var: str(tmp_path / name) for var, name in (("GPU_DIR", "gpu"), ("GPU2_DIR", "gpu2"),
                                                          ("GPU_WORK", "work"), ("RETURNED", "returned"))},
           "EXPORT_S": "10", "START_S": "2", "END_S": "8",
           "COMPILE": "0", "OMP_NUM_THREADS": "1"}  # eager: compiling tiny takes longer than training it

    def call(command: str, out: Path, ok: bool = True, **extra: str) -> str:
        proc = subprocess.run(["bash", "-c", command], cwd=repo, env={**env, "OUT": str(out), **extra},
                              capture_output=True, text=True, timeout=600)
        assert (proc.returncode == 0) == ok, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    call(f"python benchmarks/cifar_webp.py pack {data} {tmp_path / 'gpu' / 'cifar'} {tmp_path / 'gpu2' / 'cifar'}",
         tmp_path)
    return data, call, f"bash {repo / 'benchmarks' / 'gpu_train.sh'}"


def test_gpu_train_script_two_runs_over_three_calls(tmp_path):
    """benchmarks/gpu_train.sh, here on the CPU as on a lent GPU: the first call stages the data's first
    half (a `train` then refuses to start), the second brings the rest and trains two runs at once, one of
    them planned over two calls (stopped cleanly, then resumed in the third, as a lease's 10-minute calls
    need, its schedule by the clock, exported here by `check`), the other warm-restarted from its first run
    in the third call and exported there; `check` here of every returned folder."""
    data, call, script = _gpu_script(tmp_path)
    gpu, gpu2, work, returned = (tmp_path / name for name in ("gpu", "gpu2", "work", "returned"))
    tiny = "--options '{\"input_size\": 32, \"channels\": [8, 8], \"fc\": [16]}' --batch-size 20"
    assert sorted(p.name for p in (gpu / "cifar").glob("*.webp")) == \
        ["data_batch_1.webp", "data_batch_2.webp", "test_batch.webp"]
    hidden = gpu2.rename(tmp_path / "gpu2-later")  # call 1 carries only the first half
    assert "staged: data_batch_1 data_batch_2 test_batch" in call(f"{script} stage", tmp_path / "out1")
    assert "no data_batch_3 yet" in call(f"{script} train tiny 30 {tiny}", tmp_path / "out0", ok=False)
    hidden.rename(gpu2)

    both = "{} & a=$!; {}; b=$?; wait $a && exit $b"
    out2, out3 = tmp_path / "out2", tmp_path / "out3"
    log = call(both.format(f"CALL_S=40 {script} train tiny 70 {tiny}",
                           f"NAME=b {script} train tiny 70 {tiny} --epochs 3"), out2)
    assert "in 2 call(s)" in log and "in 1 call(s)" in log and "stopped after epoch" in log
    assert {f.name for f in _returnable(out2)} >= {"train.log", "run.tar.part00"}
    # the unpacked batches are the packed images, exactly
    test = load(work / "gpu-data" / "cifar-10-batches-py", split="test")
    assert np.array_equal(test.images, load(data, split="test").images)
    # generous budgets, for a loaded machine: the runs end by their clocks or --epochs, well before them
    log = call(both.format(f"{script} resume tiny 70",
                           f"NAME=b {script} train tiny 70 {tiny} --epochs 1 --schedule exp:2 "
                           f"--init-from {work / 'run-b.prev'}"), out3)
    _returnable(out3)

    def check(folder: Path, exported_there: bool) -> dict:
        log = call(f"{script} check {folder}", folder, DATA=str(data))
        assert '"accuracy"' in log and ("exporting the best epoch here" in log) == exported_there
        assert log.count("== bcnn infer on") == 1  # DATA given: not the JPEG copy too
        assert "median of the last" in log  # the run's level, beside its best epoch
        unpacked = returned / folder.name
        assert ir.load(unpacked / "model.bcnn").meta["torch_engine_mismatches"] == 0
        return {**json.loads((unpacked / "history.json").read_text()), "meta": ir.load(unpacked / "model.bcnn").meta}

    stopped = check(out2 / "tiny", exported_there=True)
    assert stopped["stopped_early"]
    finished = check(out3 / "tiny", exported_there=True)
    assert finished["epochs"] > stopped["epochs"] and finished["history"][:stopped["epochs"]] == stopped["history"]
    assert not finished["stopped_early"]  # its schedule ended by the clock, in the third call
    restarted = check(out3 / "b", exported_there=False)
    assert restarted["meta"]["warm_start"]["init_from"] == str(work / "run-b.prev")
    assert restarted["schedule"] == "exp:2"
    assert (returned / "b-best.pt").is_file()  # by run: the two runs of tiny keep both
    weights = torch.load(returned / "tiny-best.pt", weights_only=False)["model"]
    assert {v.dtype for k, v in weights.items() if k.endswith(".weight") and v.dim() >= 2} == {torch.bfloat16}


def test_no_export_trains_only_and_export_only_exports_later(data, tmp_path):
    """--no-export (the GPU script's timing run) writes no model; --export-only then exports the best epoch."""
    from bcnn.errors import BcnnError
    from bcnn.train import TrainConfig, train

    run = dict(arch="tiny", data=str(data), out_dir=str(tmp_path), batch_size=20, train_limit=40, test_limit=8,
               model_options=json.loads(OPTIONS), progress=False, epochs=1)
    summary = train(TrainConfig(export=False, lr=2e-3, schedule="exp:3", **run))
    assert summary["epochs"] == 1 and "bcnn" not in summary
    assert (tmp_path / "best.pt").is_file() and not (tmp_path / "model.bcnn").exists()
    assert (tmp_path / "history.json").is_file()
    with pytest.raises(BcnnError, match="would do nothing"):
        train(TrainConfig(export_only=True, export=False, **run))
    exported = train(TrainConfig(export_only=True, **run))
    assert (tmp_path / "model.bcnn").is_file() and exported["torch_engine_mismatches"] == 0
    # the recipe is the training run's (kept in best.pt), not the defaults of the command that exported it
    assert (exported["lr"], exported["schedule"]) == (2e-3, "exp:3")
    assert ir.load(tmp_path / "model.bcnn").meta["recipe"]["batch_size"] == 20


def test_a_float_teacher_trains_unexported_and_teaches_a_binary_net(data, tmp_path, capsys):
    resnet = ["--arch", "resnet9", "--options", json.dumps({"input_size": 8, "width": 4}), "--optimizer", "sgd",
              "--lr", "0.05", "--weight-decay", "5e-4"]
    teacher = _train(data, tmp_path / "teacher", 2, *resnet)
    assert teacher["best_acc"] > 0.5 and teacher["teacher"] == str(tmp_path / "teacher" / "best.pt")
    assert not list((tmp_path / "teacher").glob("model.*"))  # nothing binary to export
    saved = torch.load(tmp_path / "teacher" / "best.pt", weights_only=False)
    assert saved["recipe"]["optimizer"] == "sgd" and saved["recipe"]["weight_decay"] == 5e-4
    from bcnn.checkpoints import shrink_checkpoint  # the GPU script's returned weights: a float net's stay float32

    shrink_checkpoint(tmp_path / "teacher" / "best.pt", tmp_path / "returned.pt")
    returned = torch.load(tmp_path / "returned.pt", weights_only=False)["model"]
    assert all(torch.equal(returned[k], v) for k, v in saved["model"].items())
    from bcnn.distill import load_teacher
    from bcnn.models import build_model

    tiny = build_model("tiny", **json.loads(OPTIONS))
    run, runner = load_teacher(str(tmp_path / "teacher"), tiny, torch.device("cpu"))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # no thresholds to keep exact: bf16 will do
        assert runner == "torch, in the training precision"
        assert run(torch.zeros((2, 8, 8, 3), dtype=torch.uint8)).dtype == torch.bfloat16
    student = _train(data, tmp_path / "student", 2, "--teacher", str(tmp_path / "teacher"))
    assert student["best_acc"] > 0.5 and student["torch_engine_mismatches"] == 0
    assert ir.load(tmp_path / "student" / "model.bcnn").meta["recipe"]["teacher"] == str(tmp_path / "teacher")
    from bcnn.cli import main

    for bad, why in ((["--export-only"], "float net"), (["--optimizer", "lbfgs"], "invalid choice"),
                     (["--weight-decay", "-1"], "--weight-decay must be")):
        try:  # argparse's refusals exit, bcnn's return 2
            rc = main(["train", "--data", str(data), "--out", str(tmp_path / "teacher"), *resnet, *bad])
        except SystemExit as e:
            rc = e.code
        assert rc == 2 and why in capsys.readouterr().err


def test_gpu_train_script_trains_a_float_teacher_that_teaches_there(tmp_path):
    """The next lease's plan (docs/models.md, "Session 24"): a float teacher trains in one call, teaches a
    binary net from its run folder in the next, and comes back in float32, kept by `check` and not exported."""
    data, call, script = _gpu_script(tmp_path)
    call(f"{script} stage", tmp_path / "out1")
    resnet = "--options '{\"width\": 4}' --optimizer sgd --lr 0.05 --batch-size 50 --epochs 2"
    assert "not exported" in call(f"NAME=r9 {script} train resnet9 40 {resnet}", tmp_path / "out2")
    teacher = tmp_path / "work" / "run-r9"
    log = call(f"{script} train tiny 60 --options '{{\"input_size\": 32, \"channels\": [8], \"fc\": []}}' "
               f"--batch-size 20 --epochs 1 --teacher {teacher}", tmp_path / "out3")
    assert "in the training precision" in log and "torch vs engine mismatches 0" in log
    log = call(f"{script} check {tmp_path / 'out2' / 'r9'}", tmp_path, DATA=str(data))
    assert "a float teacher" in log and "bcnn infer" not in log and "median of the last" in log
    kept = torch.load(tmp_path / "returned" / "r9-best.pt", weights_only=False)["model"]
    assert all(torch.equal(kept[k], v) for k, v in torch.load(teacher / "best.pt", weights_only=False)["model"].items())
