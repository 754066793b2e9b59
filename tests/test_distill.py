"""bcnn.distill: a compiled teacher gives the same logits on the integer engine and in torch (to the bit as its
integer function, to float rounding as its float checkpoint); an ensemble of teachers gives the mean of theirs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from bcnn import fuzz, ir
from bcnn.distill import distill_loss, load_teacher, load_teachers
from bcnn.errors import BcnnError
from bcnn.models import build_model
from test_decompile import EDGES, rebuilt_model

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_engine_and_torch_teachers_agree(tmp_path):
    res = fuzz.check_brevitas(EDGES)
    ir.save(res.net, tmp_path / "teacher.bcnn")
    torch.save({"config": {"arch": "tiny", "model_options": EDGES["options"]},
                "model": rebuilt_model(EDGES, res.net).state_dict()}, tmp_path / "best.pt")
    student = build_model("tiny", **EDGES["options"])
    images = np.random.default_rng(11).integers(0, 256, (40, 6, 6, 3), dtype=np.uint8)
    cpu = torch.device("cpu")
    by_engine, engine_runner = load_teacher(str(tmp_path / "teacher.bcnn"), student, cpu)
    from_pt, pt_runner = load_teacher(str(tmp_path), student, cpu)
    # as on a GPU: the net's integer function in float32 torch (the net names no --arch: none is needed)
    from_net, net_runner = load_teacher(str(tmp_path / "teacher.bcnn"), student, cpu, engine=False)
    # and as a compiled GPU run uses it: inductor fuses the steps between the convolutions
    compiled, _ = load_teacher(str(tmp_path / "teacher.bcnn"), student, cpu, compiled=True, engine=False)
    assert (engine_runner, pt_runner, net_runner) == ("the integer engine", "torch", "torch, as its integer function")
    batch = torch.from_numpy(images)
    with torch.no_grad():
        exact = by_engine(batch)
        assert exact.dtype == torch.float32 and exact.shape == (40, 4)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # as a bf16 training step calls a teacher
            torch._dynamo.reset()
            torch._dynamo.utils.counters.clear()  # reset() keeps them: an earlier test's graphs would count
            in_bf16_step = [from_pt(batch), from_net(batch), compiled(batch)]
            assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # it did compile
        assert torch.equal(from_net(batch), exact)
        assert torch.equal(in_bf16_step[1], exact) and torch.equal(in_bf16_step[2], exact)
        for rebuilt in [from_pt(batch), in_bf16_step[0]]:
            assert torch.equal(exact.argmax(1), rebuilt.argmax(1))
            torch.testing.assert_close(rebuilt, exact, rtol=1e-5, atol=1e-5 * float(exact.abs().max()))
            assert float(distill_loss(exact, rebuilt)) < 1e-6  # KL of a teacher with itself


def test_a_teacher_with_other_classes_is_refused(tmp_path):
    res = fuzz.check_brevitas(EDGES)
    ir.save(res.net, tmp_path / "teacher.bcnn")
    student = build_model("tiny", **{**EDGES["options"], "num_classes": 3})
    with pytest.raises(BcnnError, match="input or classes differ"):
        load_teacher(str(tmp_path / "teacher.bcnn"), student, torch.device("cpu"))


def test_an_ensemble_teaches_the_mean_of_its_members_logits(tmp_path):
    members = []
    for seed in (5, 6):
        res = fuzz.check_brevitas({**EDGES, "seed": seed})
        ir.save(res.net, tmp_path / f"t{seed}.bcnn")
        members.append(str(tmp_path / f"t{seed}.bcnn"))
    student = build_model("tiny", **EDGES["options"])
    images = np.random.default_rng(12).integers(0, 256, (40, 6, 6, 3), dtype=np.uint8)
    batch, cpu = torch.from_numpy(images), torch.device("cpu")
    alone = [load_teacher(m, student, cpu)[0](batch) for m in members]
    assert not torch.equal(*alone)
    ensemble, runner = load_teachers(" , ".join(members), student, cpu)
    assert runner == "the integer engine"
    assert torch.equal(ensemble(batch), (alone[0] + alone[1]) / 2)
    assert torch.equal(load_teachers(members[0], student, cpu)[0](batch), alone[0])


def test_a_net_too_wide_for_a_gpus_tf32_teaches_on_the_engine(tmp_path):
    res = fuzz.check_brevitas(EDGES)
    res.net.input_lut[0, 255] = 2**11 + 1  # beyond TF32's exact integers (an 8-bit input never is)
    ir.save(res.net, tmp_path / "wide.bcnn")
    student = build_model("tiny", **EDGES["options"])
    # as on a GPU, whose torch teacher would round: asked for cuda, it never gets there
    _, runner = load_teacher(str(tmp_path / "wide.bcnn"), student, torch.device("cuda"))
    assert runner == "the integer engine"


def test_a_torch_teacher_that_leaves_the_engine_says_so_once_per_shape(monkeypatch, capsys):
    """On a GPU cuDNN picks each shape's convolution, Winograd or FFT among them, whose misses this CPU's runs
    do not show: a reference engine off by one stands in for such a miss."""
    import bcnn.distill

    res = fuzz.check_brevitas(EDGES)
    images = torch.from_numpy(np.random.default_rng(13).integers(0, 256, (40, 6, 6, 3), dtype=np.uint8))
    cpu = torch.device("cpu")
    exact = bcnn.distill.float_torch_logits(res.net, cpu)
    exact(images), exact(images[:7])
    assert capsys.readouterr().err == ""
    engine = bcnn.distill.engine_logits(res.net)
    monkeypatch.setattr(bcnn.distill, "engine_logits", lambda net: lambda batch: engine(batch) + 1)
    missed = bcnn.distill.float_torch_logits(res.net, cpu)
    assert torch.equal(missed(images), exact(images))  # it teaches on
    assert "differ from the integer engine's on 40 of 40 images" in capsys.readouterr().err
    missed(images), missed(images[:7])  # a shape is checked once: only the new one is
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "on 7 of 7 images" in err


def test_compiled_teachers_of_one_architecture_share_one_graph():
    """An ensemble of many nets of one architecture must stay within dynamo's recompile limit (8), past which
    the rest would run eager: their weights are graph inputs, so one graph per batch shape serves them all."""
    from bcnn.distill import engine_logits, float_torch_logits

    nets = [fuzz.check_brevitas({**EDGES, "seed": seed}).net for seed in (5, 6, 7)]
    batch = torch.from_numpy(np.random.default_rng(14).integers(0, 256, (40, 6, 6, 3), dtype=np.uint8))
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    teachers = [float_torch_logits(net, torch.device("cpu"), compiled=True) for net in nets]
    outs = [teach(batch) for teach in teachers]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    assert all(torch.equal(out, engine_logits(net)(batch)) for out, net in zip(outs, nets, strict=True))
    assert not torch.equal(outs[0], outs[1])


def test_a_pt_file_not_written_by_bcnn_train_is_refused_naming_its_option(tmp_path):
    from bcnn.checkpoints import model_from_weights, shrink_checkpoint, warm_start
    from bcnn.train import TrainConfig

    student, cpu = build_model("tiny", **EDGES["options"]), torch.device("cpu")
    torch.save({"weights": student.state_dict()}, tmp_path / "other.pt")
    torch.save({"model": student.state_dict()}, tmp_path / "bare.pt")  # weights that do not name their arch
    with pytest.raises(BcnnError, match=r"^--teacher .*other\.pt: not a best\.pt or checkpoint\.pt"):
        load_teacher(str(tmp_path / "other.pt"), student, cpu)
    with pytest.raises(BcnnError, match=r"^--teacher .*bare\.pt: names no --arch"):
        load_teacher(str(tmp_path / "bare.pt"), student, cpu)
    cfg = TrainConfig(arch="tiny", data="", out_dir="", model_options=EDGES["options"], init_from="")
    with pytest.raises(BcnnError, match=r"^--init-from .*other\.pt: not a best\.pt"):
        warm_start(student, replace(cfg, init_from=str(tmp_path / "other.pt")), np.zeros((0, 6, 6, 3), np.uint8))
    with pytest.raises(BcnnError, match=r"^\S*other\.pt: not a best\.pt"):  # no option named it
        shrink_checkpoint(tmp_path / "other.pt", tmp_path / "small.pt")
    # --init-from needs no arch: the run's own --arch builds the model the weights go into
    assert warm_start(build_model("tiny", **EDGES["options"]),
                      replace(cfg, init_from=str(tmp_path / "bare.pt")), np.zeros((0, 6, 6, 3), np.uint8)) == (0, [])
    torch.save({"config": {"arch": "tiny", "model_options": EDGES["options"]}, "model": student.state_dict()},
               tmp_path / "best.pt")
    model, arch = model_from_weights(tmp_path / "best.pt")
    assert arch == "tiny" and all(torch.equal(v, student.state_dict()[k]) for k, v in model.state_dict().items())
    torch.save({"config": {"arch": "tiny", "model_options": {**EDGES["options"], "num_classes": 3}},
                "model": student.state_dict()}, tmp_path / "misnamed.pt")
    with pytest.raises(BcnnError, match=r"^--teacher .*misnamed\.pt: its weights do not fit"):
        model_from_weights(tmp_path / "misnamed.pt", "--teacher")
