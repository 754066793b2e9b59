"""Knowledge distillation: a frozen teacher's logits, and the loss that pulls the student's softmax to them.

A teacher is a function from a uint8 NHWC batch (the augmented images the student sees, on the training
device) to float logits. A compiled net (a ``.bcnn`` file or a bundled model's name) computes exactly its
integer function: on a CPU through the integer engine (on one thread binarynet at about 900 images/s
against torch's 60), on a GPU as that function in float32 torch (``bcnn.engine.float_torch``), which needs
no model rebuilt or calibrated; it runs through ``torch.compile`` when the run compiles, and its first
batch of each shape is checked against the engine. Eager, each layer's threshold, pooling and sign steps
are a dozen passes over its activations: with six such teachers a binarynet epoch took 14 s on an H200 in
session 23, against 2 s without a teacher in session 20 (three runs sharing the GPU both times). (Until
session 22 a GPU's teacher was the Brevitas model, rebuilt and calibrated on the CPU: 27 s per binarynet on
2 cores before its compile, `benchmarks/teacher_speed.py`; a five-net ensemble kept three GPU runs from
their first epoch for 4-6 minutes of a 10-minute call.) A float checkpoint (``.pt``: a binary net's run,
or a float teacher's, ``bcnn.floatnet``) teaches as a torch model in eval mode beside the student. A
binary net's torch teachers run in float32, even inside the student's bf16 autocast; a float net runs in the
student's precision. Several teachers (``--teacher A,B``) teach as one: the mean of their logits.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bcnn.checkpoints import model_from_weights, weights_source
from bcnn.errors import BcnnError
from bcnn.floatnet import FLOAT_ARCHS
from bcnn.ir import Net

Logits = Callable[[torch.Tensor], torch.Tensor]  # uint8 NHWC batch -> float logits (batch, classes)


def distill_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """KL(teacher || student) of the softmaxes of the teacher's logits and of ``scale`` x the student's,
    averaged over the batch (Hinton et al. at T = 1)."""
    return F.kl_div(F.log_softmax(logits.float() * scale, 1), F.log_softmax(teacher_logits.float(), 1),
                    log_target=True, reduction="batchmean")


def logit_spread(logits_of: Logits, images: np.ndarray, batch: int = 500) -> float:
    """The standard deviation of the logits across classes, averaged over ``images`` (uint8 NHWC)."""
    with torch.no_grad():
        spreads = [logits_of(torch.from_numpy(images[i:i + batch])).float().std(1)
                   for i in range(0, len(images), batch)]
    return float(torch.cat(spreads).mean())


def model_logits(model: torch.nn.Module, channels_last: bool = False) -> Logits:
    """A torch model's logits on uint8 batches, on the model's device, in whatever mode the model is."""
    from bcnn.train import to_float

    device = next(model.parameters()).device

    def logits(batch: torch.Tensor) -> torch.Tensor:
        x = to_float(batch.to(device))
        return model(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
    return logits


def engine_logits(net: Net) -> Logits:
    """A compiled net's logits (``acc · output_scale + output_bias``) from the fast engine, on the batch's
    device, with as many threads as torch uses."""
    from bcnn.engine.fast import FastEngine, default_threads

    engine = FastEngine(net)

    def logits(batch: torch.Tensor) -> torch.Tensor:
        acc = engine.run(np.ascontiguousarray(batch.cpu().numpy()),
                         threads=min(torch.get_num_threads(), default_threads()))
        return torch.from_numpy((acc * net.output_scale + net.output_bias).astype(np.float32)).to(batch.device)
    return logits


def float_torch_logits(net: Net, device: torch.device, compiled: bool = False) -> Logits:
    """A compiled net's logits from its integer function in float32 torch on ``device``, through
    ``torch.compile`` if ``compiled``: the engine's, to the bit (the accumulators are exact integers, which
    fusing the steps between the convolutions keeps, and the output affine is applied in float64 as the
    engine does). The first batch of each shape is checked against the engine, since cuDNN picks its
    convolution per shape: a difference is reported on stderr, and the teacher teaches on."""
    from bcnn.engine.float_torch import float_torch_model

    model = float_torch_model(net, str(device))
    if compiled:
        model = torch.compile(model, dynamic=False)
    scale, bias = (torch.tensor(a, dtype=torch.float64, device=device) for a in (net.output_scale, net.output_bias))
    engine, checked = engine_logits(net), set()

    def logits(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), torch.autocast(device.type, enabled=False):
            acc = model(batch.to(device))
        out = (acc.double() * scale + bias).float()
        if batch.shape not in checked:
            checked.add(batch.shape)
            differ = int((out.cpu() != engine(batch.cpu())).any(1).sum())
            if differ:
                print(f"warning: a compiled teacher's float32 torch logits on {device} differ from the integer "
                      f"engine's on {differ} of {len(batch)} images (a batch of shape {tuple(batch.shape)}): it "
                      f"teaches on, no longer exact", file=sys.stderr, flush=True)
        return out
    return logits


def teacher_sources(spec: str) -> list[str]:
    """The members of ``--teacher A[,B...]``, in order."""
    members = [m.strip() for m in spec.split(",")]
    if not all(members):
        raise BcnnError(f"--teacher {spec!r}: expected one or more comma-separated teachers, one is empty")
    return members


def teacher_digest(spec: str) -> str:
    """The SHA-256 of each of --teacher's files, comma-joined: how a resumed run knows its teacher."""
    return ",".join(hashlib.sha256(weights_source("--teacher", src).read_bytes()).hexdigest()
                    for src in teacher_sources(spec))


def load_teachers(spec: str, student: torch.nn.Module, device: torch.device, compiled: bool = False,
                  channels_last: bool = False) -> tuple[Logits, str]:
    """``--teacher A[,B...]``: one teacher (see load_teacher), or an ensemble whose logits are the mean of its
    members', so that it is a teacher like any other. On CIFAR-10, the four binarynet and cnv nets of session
    18 score 89.23% so (89.20% by the mean of their softmaxes), their best 88.11% (benchmarks/ensemble.py)."""
    members = [load_teacher(src, student, device, compiled, channels_last) for src in teacher_sources(spec)]
    if len(members) == 1:
        return members[0]
    runs = [run for run, _ in members]

    def mean(batch: torch.Tensor) -> torch.Tensor:
        return torch.stack([run(batch) for run in runs]).mean(0)
    return mean, " and ".join(dict.fromkeys(runner for _, runner in members))


def load_teacher(src: str, student: torch.nn.Module, device: torch.device, compiled: bool = False,
                 channels_last: bool = False, engine: bool | None = None) -> tuple[Logits, str]:
    """The frozen teacher named by ``--teacher`` (a run folder, a best.pt or checkpoint.pt, a .bcnn file or a
    bundled model's name) and what runs it; its input and classes must be the student's. A compiled net runs
    on the integer engine if ``engine`` (default: on a CPU device), else as its integer function in float32
    torch on ``device``; a float checkpoint runs as its torch model. Torch runs through ``torch.compile`` if
    ``compiled``."""
    from bcnn import ir

    def check_fits(height: int, width: int, channels: int, classes: int) -> None:
        if (height, width, channels, classes) != (student.input_size, student.input_size, student.in_channels,
                                                  student.num_classes):
            raise BcnnError(f"--teacher {src}: its input or classes differ from the model's")

    path: Path = weights_source("--teacher", src)
    if path.suffix != ".pt":
        net = ir.load(path)
        check_fits(*net.input_shape, net.n_outputs)
        if device.type == "cpu" if engine is None else engine:
            return engine_logits(net), "the integer engine"
        try:
            return float_torch_logits(net, device, compiled), "torch, as its integer function"
        except BcnnError:  # inputs too wide for float32 or a GPU's TF32: the engine computes any net exactly
            return engine_logits(net), "the integer engine"
    teacher, arch = model_from_weights(path, "--teacher")
    check_fits(teacher.input_size, teacher.input_size, teacher.in_channels, teacher.num_classes)
    teacher = teacher.eval().requires_grad_(False).to(device)
    if channels_last:
        teacher.to(memory_format=torch.channels_last)
    run = model_logits(torch.compile(teacher, dynamic=False) if compiled else teacher, channels_last)
    if arch in FLOAT_ARCHS:  # no thresholds to flip: bf16 costs a float net nothing but rounding
        return run, "torch, in the training precision"

    def in_float32(batch: torch.Tensor) -> torch.Tensor:
        # called inside a bf16 training step: bf16 activations keep 8 significant bits, so accumulators
        # above 256 (and the 8-bit input layer's sums) round and thresholds flip. In float32 they are exact,
        # TF32 convolutions included: their ±1 and 8-bit operands fit TF32's 11 bits.
        with torch.autocast(device.type, enabled=False):
            return run(batch)
    return in_float32, "torch"
