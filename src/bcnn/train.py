"""Training a Brevitas BCNN on CIFAR-style data, resumable, and exporting the best epoch.

Artifacts in ``out_dir``: ``checkpoint.pt`` (written atomically after every epoch; ``resume=True`` continues
from it exactly), ``best.pt`` (float weights of the best epoch: keep out of git), ``model.onnx`` (QONNX
export of the best epoch) and ``model.bcnn`` (the compiled integer IR), ``history.json``.

Determinism: the shuffle and augmentation of epoch e draw from a generator seeded with (seed, e), so a run
resumed after a kill reaches the same weights as an uninterrupted one. Runs under ``torchrun`` with
DistributedDataParallel (gloo on CPU, nccl on GPUs): each rank takes every world_size-th batch.

Time limit: ``stop_after`` ends a run early, cleanly, at an epoch's end, with its checkpoint written, so
that ``resume=True`` goes on with the same schedule later, on this machine or another. ``time_budget``
plans a run by the clock instead of by epochs: the lr of each step follows the fraction of the budget
spent, and the run ends when its next epoch would not fit (not reproducible, by its nature).

Warm start: ``init_from`` starts a new run (fresh optimizer and learning-rate schedule) from the weights of an
earlier one, so training can go on after a finished schedule; the export counts the earlier epochs.

Beside this module: ``bcnn.schedule`` (the lr of each step, the run's clock), ``bcnn.checkpoints`` (the weight
files, warm starts), ``bcnn.distill`` (teachers and the KL term).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bcnn import data as bdata
from bcnn.checkpoints import (
    CALIBRATION_IMAGES,
    carried_history,
    check_same_run,
    torch_save_atomic,
    warm_start,
    weights_source,
)
from bcnn.distill import (
    Logits,
    distill_loss,
    load_teachers,
    logit_spread,
    model_logits,
    teacher_digest,
    teacher_sources,
)
from bcnn.errors import BcnnError
from bcnn.floatnet import FLOAT_ARCHS
from bcnn.schedule import eta, halving_epochs, lr_factor, out_of_time, parse_schedule, rank0, run_progress


@dataclass
class TrainConfig:
    arch: str
    data: str
    out_dir: str
    epochs: int = 10
    batch_size: int = 100
    lr: float = 5e-3
    weight_decay: float = 0.0  # L2 on every parameter (a float teacher's regularizer; binary nets use none)
    optimizer: str = "adam"  # "adam", or "sgd": SGD with Nesterov momentum 0.9, for a float teacher
    seed: int = 0
    resume: bool = False
    train_limit: int | None = None  # first N training images (round-robin over classes)
    test_limit: int | None = None
    model_options: dict = field(default_factory=dict)
    threads: int | None = None
    progress: bool = True
    export_only: bool = False  # skip training: export and check the best epoch of out_dir so far
    export: bool = True  # False: train only (timing runs); `export_only` later exports the best epoch
    precision: str = "fp32"  # "bf16": autocast the training forward pass (about 1.5x faster on AVX512-BF16)
    compile: bool = False  # torch.compile training and evaluation: fuses Brevitas's elementwise quantizers
    init_from: str | None = None  # warm start: a run folder (its best.pt) or a .pt file of one
    # with init_from: the new run begins at this epoch of its schedule and shuffles, as if it had trained the
    # epochs before it: init_from is then another run's snapshot at that epoch, carried over as a .bcnn
    start_epoch: int = 0
    # with export_only: export the latest epoch (checkpoint.pt) as snapshot.bcnn, not the best as model.bcnn
    snapshot: bool = False
    loss: str = "ce"  # "ce": cross-entropy; "sqrhinge": BinaryNet's and Brevitas bnn_pynq's squared hinge
    schedule: str = "cosine"  # "cosine" to 0 over the run, "exp:K" to lr/2^K, "halve:N" every N epochs
    # "glorot": each binary layer's latent weights learn at lr x glorot_lr_scale (BinaryNet's W_LR_scale,
    # 26-78 for binarynet's layers); "none": every parameter at lr
    lr_scale: str = "none"
    channels_last: bool = False  # NHWC activations and conv weights in training (cuDNN's tensor-core layout)
    # checkpoint.pt after every N-th epoch, the last and every best one: on a GPU its writing is a third of
    # a 1-s epoch
    checkpoint_every: int = 1
    # stop cleanly, checkpoint written, before an epoch would end more than this many seconds after the start,
    # and leave the rest of the schedule to --resume (a machine lent for a fixed time, a session's end)
    stop_after: float | None = None
    # a run planned by time, not by epochs: the schedule spans this many seconds of the epoch loop (training,
    # testing, checkpoints; not the start-up), and the run ends when its next epoch would not fit;
    # `epochs` is then only a cap. Not reproducible: the lr of each step depends on the clock.
    time_budget: float | None = None
    # with time_budget and stop_after, a new run's schedule ends at the stop: its budget shrinks by however
    # long the start took (a one-call plan on a lent machine, where three runs starting at once may take a
    # minute and more to reach their first epoch)
    budget_to_stop: bool = False
    # knowledge distillation: the loss is (1 - distill_weight) x the task loss + distill_weight x the KL
    # divergence from this frozen model's softmax (a run folder, .pt, .bcnn or a bundled name: binarynet
    # teaching cnv); distill_weight 1 ignores the labels (ReActNet's distributional loss)
    teacher: str | None = None
    distill_weight: float = 0.5
    # the factor on the model's logits in the KL term; None: the teacher's spread of logits over the model's
    # when warm-starting (--init-from), 1 from scratch, whose random logits say nothing of the scale it learns
    distill_scale: float | None = None
    # train the fully connected layers only: the convolutions keep the weights and batch norm of the warm
    # start (--init-from), in eval mode; a step then costs about a quarter of a whole-net step
    freeze_features: bool = False


PRECISIONS = ("fp32", "bf16")
OPTIMIZERS = ("adam", "sgd")
LOSSES = ("ce", "sqrhinge")
LR_SCALES = ("none", "glorot")
# What defines a run's weights and LR schedule: a resumed run must use the same (precision, compile, threads
# and progress may change between resumptions).
RUN_DEFINING = ("arch", "model_options", "epochs", "batch_size", "lr", "weight_decay", "seed", "train_limit",
                "init_from", "loss", "schedule", "time_budget", "lr_scale", "teacher", "distill_weight",
                "distill_scale", "optimizer", "freeze_features")
# what best.pt keeps of how it was trained, so that an export elsewhere (--export-only) names the run's recipe
RECIPE = ("lr", "lr_scale", "schedule", "loss", "batch_size", "weight_decay", "seed", "precision",
          "time_budget", "teacher", "distill_weight", "distill_scale", "optimizer", "freeze_features")


def loss_fn(name: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy, or the squared hinge on +-1 one-hot targets (Courbariaux et al.; Brevitas bnn_pynq)."""
    if name == "ce":
        return F.cross_entropy(logits, labels)
    target = F.one_hot(labels, logits.shape[1]).to(logits.dtype) * 2 - 1
    return (1 - logits * target).clamp(min=0).square().mean()


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """Lower-precision forward pass for training only. The latent weights, the optimizer, evaluation and the
    export check stay float32, so the exported network and its exactness check do not depend on it."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _device() -> torch.device:
    """This process's GPU (one per torchrun rank) when there is one, else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    rank, gpus = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
    if rank >= gpus:  # nccl cannot share a GPU between ranks
        raise BcnnError(f"torchrun started more processes on this node than it has GPUs ({gpus}): use "
                        f"--nproc_per_node={gpus}, or CUDA_VISIBLE_DEVICES= to train on the CPU")
    return torch.device("cuda", rank)


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(_device())
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random crop with 4-pixel zero padding and horizontal flip, on a uint8 NHWC batch on any device.
    The draws come from the CPU generator ``gen`` whatever the device, so a run is the same on a GPU."""
    n, h, w, _ = x.shape
    padded = F.pad(x.permute(0, 3, 1, 2), (4, 4, 4, 4))
    dy = torch.randint(0, 9, (n,), generator=gen)
    dx = torch.randint(0, 9, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, :, None]
    cols = dx[:, None] + torch.arange(w)[None, :]
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, :]
    batch = torch.arange(n)[:, None, None]
    dev = x.device
    return padded[batch.to(dev), :, rows.to(dev), cols.to(dev)]  # (n, h, w, c)


def to_float(x_uint8_nhwc: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> pixel/255 NCHW, as ToTensor."""
    return x_uint8_nhwc.permute(0, 3, 1, 2).float().div(255)


def latent_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    """The float weights behind the model's binary quantizers."""
    return [m.weight for m in model.modules() if hasattr(m, "weight_quant") and getattr(m, "weight", None) is not None]


def glorot_lr_scale(weight: torch.Tensor) -> float:
    """BinaryNet's W_LR_scale, 1 / sqrt(1.5 / (fan_in + fan_out)), with its fans: kernel size x input and
    x output channels for a convolution, inputs and outputs for a dense layer. With Adam, whose step is about
    lr whatever the gradient's scale, it sets how far a latent weight in [-1, 1] moves per step: wider
    layers' weights flip more easily."""
    receptive = weight[0, 0].numel()  # k*k for a convolution's [out, in, k, k], 1 for a dense [out, in]
    return math.sqrt((weight.shape[0] + weight.shape[1]) * receptive / 1.5)


def param_groups(model: torch.nn.Module, lr_scale: str) -> list[dict]:
    """The optimizer's parameter groups and each one's lr multiplier ("scale"): one group at 1 for "none";
    for "glorot", one group per binary layer's latent weights at its glorot_lr_scale, then the rest at 1."""
    trained = [p for p in model.parameters() if p.requires_grad]  # not the frozen features (--freeze-features)
    if lr_scale == "none":
        return [{"params": trained, "scale": 1.0}]
    latent = [w for w in latent_weights(model) if w.requires_grad]
    ids = {id(w) for w in latent}
    return [{"params": [w], "scale": glorot_lr_scale(w)} for w in latent] + \
        [{"params": [p for p in trained if id(p) not in ids], "scale": 1.0}]


def clip_latent_weights(weights: list[torch.Tensor]) -> None:
    """Keep the latent weights in [-1, 1] (BinaryNet's rule); a float net has none."""
    if not weights:
        return
    with torch.no_grad():  # two multi-tensor kernels instead of one launch per layer (matters on a GPU)
        torch._foreach_clamp_min_(weights, -1.0)
        torch._foreach_clamp_max_(weights, 1.0)


def predictions(model: torch.nn.Module, images: np.ndarray, batch: int = 500) -> np.ndarray:
    """The model's class per image (argmax of its float output), in eval mode."""
    logits = model_logits(model.eval())
    with torch.no_grad():
        return np.concatenate([logits(torch.from_numpy(images[i:i + batch])).argmax(1).cpu().numpy()
                               for i in range(0, len(images), batch)])


def evaluate(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, batch: int = 500) -> float:
    return float((predictions(model, images, batch) == labels).mean()) if len(images) else 0.0


def check_config(cfg: TrainConfig) -> None:
    """Every flag's bounds and choices, before the model is built or the data are read."""
    for name, value in (("epochs", cfg.epochs), ("batch-size", cfg.batch_size), ("train-limit", cfg.train_limit),
                        ("test-limit", cfg.test_limit), ("checkpoint-every", cfg.checkpoint_every)):
        if value is not None and value < 1:
            raise BcnnError(f"--{name} must be at least 1, got {value}")
    if not (math.isfinite(cfg.lr) and cfg.lr >= 0):  # 0 keeps the weights (a check that only BN moves)
        raise BcnnError(f"--lr must be a finite number of at least 0, got {cfg.lr}")
    if not (math.isfinite(cfg.weight_decay) and cfg.weight_decay >= 0):
        raise BcnnError(f"--weight-decay must be a finite number of at least 0, got {cfg.weight_decay}")
    if cfg.optimizer not in OPTIMIZERS:
        raise BcnnError(f"--optimizer {cfg.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
    if cfg.arch in FLOAT_ARCHS and (cfg.export_only or cfg.init_from
                                    and weights_source("--init-from", cfg.init_from).suffix != ".pt"):
        raise BcnnError(f"--arch {cfg.arch} is a float net: it has no compiled form to export or start from; it "
                        f"teaches from its run's best.pt (--teacher RUN)")
    if cfg.freeze_features and (cfg.arch in FLOAT_ARCHS or not cfg.init_from):
        raise BcnnError("--freeze-features trains a binary net's fully connected layers on the convolutions of a "
                        "warm start: it needs --init-from and a binary --arch")
    for name, value in (("stop-after", cfg.stop_after), ("time-budget", cfg.time_budget)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise BcnnError(f"--{name} must be a positive number of seconds, got {value}")
    if cfg.budget_to_stop and not (cfg.time_budget and cfg.stop_after):
        raise BcnnError("--budget-to-stop needs --time-budget and --stop-after")
    if cfg.export_only and not cfg.export:
        raise BcnnError("--export-only with --no-export would do nothing: choose one")
    if cfg.snapshot and not cfg.export_only:
        raise BcnnError("--snapshot goes with --export-only: it exports a run's latest epoch, training nothing")
    if cfg.start_epoch and not (cfg.init_from and 0 < cfg.start_epoch < cfg.epochs and cfg.time_budget is None):
        raise BcnnError(f"--start-epoch {cfg.start_epoch} needs --init-from (the snapshot it goes on from), an "
                        f"--epochs above it ({cfg.epochs}) and no --time-budget")
    if not 0.0 <= cfg.distill_weight <= 1.0:
        raise BcnnError(f"--distill-weight must be between 0 and 1, got {cfg.distill_weight}")
    if cfg.distill_scale is not None and not (math.isfinite(cfg.distill_scale) and cfg.distill_scale > 0):
        raise BcnnError(f"--distill-scale must be a positive number, got {cfg.distill_scale}")
    for src in teacher_sources(cfg.teacher) if cfg.teacher else ():  # a typo fails before the data
        weights_source("--teacher", src)
    if cfg.precision not in PRECISIONS:
        raise BcnnError(f"--precision {cfg.precision!r}: expected one of {', '.join(PRECISIONS)}")
    if cfg.loss not in LOSSES:
        raise BcnnError(f"--loss {cfg.loss!r}: expected one of {', '.join(LOSSES)}")
    if cfg.lr_scale not in LR_SCALES:
        raise BcnnError(f"--lr-scale {cfg.lr_scale!r}: expected one of {', '.join(LR_SCALES)}")


def train(cfg: TrainConfig) -> dict:
    """Train, checkpoint every epoch (or every N-th), export and compile the best epoch; returns a summary
    dict."""
    from bcnn.models import build_model

    check_config(cfg)
    schedule = parse_schedule(cfg.schedule)
    started = time.time()
    rank, world = _distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    ckpt = out / "checkpoint.pt"
    if ckpt.is_file() and not (cfg.resume or cfg.export_only):  # hours of training are not lost to a typo
        raise BcnnError(f"{out} already holds a run (checkpoint.pt): --resume continues it, --export-only "
                        f"exports its best epoch; for a new run choose another --out")
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch, **cfg.model_options)  # before the data: a bad option fails at once
    train_ds = bdata.load(cfg.data, split="train", limit=cfg.train_limit)
    test_ds = bdata.load(cfg.data, split="test", limit=cfg.test_limit)
    if train_ds.labels is None or test_ds.labels is None:
        raise BcnnError(f"{cfg.data}: training needs labelled data (a class-folder tree or CIFAR-10 batches)")

    expected = (model.input_size, model.input_size, model.in_channels)
    if tuple(train_ds.images.shape[1:]) != expected:
        raise BcnnError(f"model {cfg.arch} expects images {expected} (H, W, C), data has "
                        f"{tuple(train_ds.images.shape[1:])}; set the input_size option, e.g. --options "
                        f"'{{\"input_size\": {train_ds.images.shape[1]}}}'")
    out.mkdir(parents=True, exist_ok=True)
    device = _device()
    model.to(device)
    if cfg.channels_last:  # the state dict's values are the same: only the training layout changes
        model.to(memory_format=torch.channels_last)
    if cfg.freeze_features:
        model.features.requires_grad_(False)
    groups = param_groups(model, cfg.lr_scale)
    scales = [g.pop("scale") for g in groups]  # a checkpoint's optimizer state does not keep extra keys
    opt = make_optimizer(cfg, groups, device)
    steps_per_epoch = math.ceil(len(train_ds) / cfg.batch_size / world)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest convolution once
    ddp = model if world == 1 else torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)
    # The training forward and the per-epoch evaluation (which only picks the best epoch) may be compiled;
    # the export and its exactness check always use the eager model (same parameters).
    compiled = cfg.compile and not cfg.export_only
    forward = torch.compile(ddp, dynamic=False) if compiled else ddp
    evaluator = torch.compile(model, dynamic=False) if compiled else model

    state, warm_acc = _restore_state(cfg, model, opt, evaluator, train_ds, test_ds, device, rank)

    # the whole training set lives on the device (150 MB of uint8 for CIFAR-10): batches and augmentation
    # are gathered there, with no host-to-device copy per step
    images = torch.from_numpy(train_ds.images).to(device)
    labels = torch.from_numpy(train_ds.labels).to(device)
    teacher = None if cfg.export_only else \
        _attach_teacher(cfg, model, train_ds.images, device, compiled, state, rank)
    steps = _Steps(cfg, schedule, steps_per_epoch, forward, opt, scales, latent_weights(model), images, labels,
                   teacher, state.get("distill_scale"))
    if warm_acc is not None and rank == 0:  # after the teacher: best.pt's recipe names the KL term's scale
        _save_best(out, model, cfg, state, cfg.start_epoch, warm_acc)
    budget = state.get("time_budget", cfg.time_budget)  # a budget fitted to the stop is the run's from then on
    mark = time.time()  # where state["train_seconds"] was last brought up to date
    if cfg.budget_to_stop and state["epoch"] == 0 and not cfg.export_only:
        # fitted at `mark`, and the budget's end and the stop judged below at one instant, `now`: the schedule's
        # end then comes no later than the stop, however long anything between takes (a millisecond less,
        # so that float rounding cannot put the stop first)
        budget = rank0(min(cfg.time_budget, max(1e-3, cfg.stop_after - (mark - started) - 1e-3)), world, device)
        state["time_budget"] = budget
        if rank == 0:  # a slow start shows here, not only as a short schedule (session 22's teachers)
            print(f"the schedule fits the {budget:.0f} s left before the stop; the start took "
                  f"{mark - started:.0f} s", file=sys.stderr, flush=True)
    first_epoch = state["epoch"]
    for epoch in range(first_epoch, 0 if cfg.export_only or state["ended"] else cfg.epochs):
        # where the run stands (0 to 1) and how much of it this epoch is, the same on every rank
        at, share = run_progress(cfg.epochs, budget, epoch, state["train_seconds"], state["history"], world, device)
        gen = torch.Generator().manual_seed(cfg.seed * 1000003 + epoch)
        perm = torch.randperm(len(train_ds), generator=gen)
        batches = [perm[i:i + cfg.batch_size] for i in range(0, len(perm), cfg.batch_size)][rank::world]
        ddp.train()
        if cfg.freeze_features:  # batch norm keeps the warm start's statistics: the convolutions' bits stay
            model.features.eval()
        label = f"epoch {epoch + 1}" + ("" if budget else f"/{cfg.epochs}") if cfg.progress and rank == 0 else None
        t0 = time.time()
        mean_loss = steps.epoch(epoch, batches, gen, at, share, label)
        acc = evaluate(evaluator, test_ds.images, test_ds.labels)
        # finished_at: the gap between two epochs' finished_at also counts the writing of best.pt and checkpoint.pt
        now = time.time()
        state["train_seconds"] += now - mark
        mark = now
        # the lr the next epoch starts at, so that a log shows where a schedule stands
        done = state["train_seconds"] / budget if budget else (epoch + 1) / cfg.epochs
        record = {"epoch": epoch + 1, "loss": mean_loss, "test_acc": acc,
                  "seconds": now - t0, "finished_at": now, "progress": min(done, 1.0),
                  "lr": cfg.lr * lr_factor(schedule, done, (epoch + 1) * steps_per_epoch, steps_per_epoch)}
        if epoch == first_epoch:  # its time includes this process's compile: not a measure of the epochs to come
            record["first_of_call"] = True
        state["history"].append(record)
        state["epoch"] = epoch + 1
        # a time-planned run ends when its next epoch would not fit its budget
        state["ended"] = bool(budget) and out_of_time(
            budget, now - state["train_seconds"], now, state["history"], world, device)
        if rank == 0:
            best = acc > state["best_acc"]
            if best:
                state["best_acc"] = acc
                _save_best(out, model, cfg, state, epoch + 1, acc)
            left = f", {state['train_seconds']:.0f} of {budget:g} s" if budget else \
                eta(state["history"], cfg.epochs - epoch - 1)
            print(f"epoch {epoch + 1}: loss {record['loss']:.4f}  test accuracy {acc:.4f}  "
                  f"(best {state['best_acc']:.4f}, lr {record['lr']:.3g}, {record['seconds']:.0f} s{left})",
                  file=sys.stderr, flush=True)
        last = epoch + 1 == cfg.epochs or state["ended"]
        stop = not last and cfg.stop_after is not None and out_of_time(
            cfg.stop_after, started, now, state["history"], world, device)
        if rank == 0:
            # a best epoch too, so that the checkpoint never lags best.pt (--export-only reads both)
            if best or stop or last or (epoch + 1) % cfg.checkpoint_every == 0:
                torch_save_atomic({"model": model.state_dict(), "optimizer": opt.state_dict(), "state": state,
                                    "config": cfg.__dict__}, ckpt)
        if stop:
            if rank == 0:
                where = f"{state['train_seconds']:.0f} of {budget:g} s" if budget else \
                    f"{epoch + 1} of {cfg.epochs} epochs"
                print(f"stopped after epoch {epoch + 1} ({where}): the next would end past --stop-after; "
                      f"--resume with the same settings goes on", file=sys.stderr, flush=True)
            break
        if state["ended"]:
            break

    run_epochs = state.get("schedule_epochs", cfg.epochs)  # an --export-only's: the run's, not its own --epochs
    summary = {"arch": cfg.arch, "lr": cfg.lr, "schedule": cfg.schedule, "loss": cfg.loss,
               # epochs done, and the schedule's length (they differ after a --stop-after, or mid-run)
               "epochs": state["epoch"], "schedule_epochs": run_epochs, "best_acc": state["best_acc"],
               # true too for an --export-only mid-run: its history.json goes stale as the run goes on
               "stopped_early": run_epochs is not None and not state["ended"] and state["epoch"] < run_epochs,
               "history": state["history"], "out_dir": str(out)}
    if rank == 0 and cfg.snapshot:
        summary.update(export_snapshot(cfg, model, out, test_ds))
    elif rank == 0:
        if cfg.arch in FLOAT_ARCHS:  # nothing binary to compile: the run's best.pt is the teacher
            summary["teacher"] = str(out / "best.pt")
            print(f"{cfg.arch} is a float net, not exported: it teaches as --teacher {out}", file=sys.stderr,
                  flush=True)
        elif cfg.export:
            summary.update(export_best(cfg, model, out, test_ds))
        (out / "history.json").write_text(json.dumps(summary, indent=2))
    if world > 1:
        torch.distributed.destroy_process_group()
    return summary


@dataclass
class _Steps:
    """What every training step of a run uses; ``epoch`` takes one epoch's steps."""

    cfg: TrainConfig
    schedule: tuple[str, int]  # parse_schedule(cfg.schedule)
    steps_per_epoch: int
    forward: Callable[[torch.Tensor], torch.Tensor]  # the training forward: compiled, DDP-wrapped or the model
    opt: torch.optim.Optimizer
    scales: list[float]  # each param group's factor on cfg.lr
    latent: list[torch.Tensor]  # clipped to [-1, 1] after every step
    images: torch.Tensor  # the whole training set on the device, uint8 NHWC
    labels: torch.Tensor
    teacher: Logits | None
    distill_scale: float | None

    def epoch(self, epoch: int, batches: list[torch.Tensor], gen: torch.Generator, at: float, share: float,
              label: str | None) -> float:
        """Epoch ``epoch``'s steps over ``batches``, in order; ``gen`` draws the augmentation. The run stands at
        ``at`` (0 to 1) when the epoch starts, and the epoch is ``share`` of it. ``label`` names the progress
        bar (None: no bar). Returns the mean loss over the epoch's images."""
        cfg, t0, seen = self.cfg, time.time(), 0
        bar = _bar(len(batches), label)
        # summed on the device: reading the loss every step would make a GPU wait for the host each batch
        loss_sum = torch.zeros((), device=self.images.device)
        for step, idx in enumerate(batches):
            factor = lr_factor(self.schedule, at + share * step / self.steps_per_epoch,
                               epoch * self.steps_per_epoch + step, self.steps_per_epoch)
            for group, scale in zip(self.opt.param_groups, self.scales, strict=True):
                group["lr"] = cfg.lr * scale * factor
            idx = idx.to(self.images.device)
            seen_images = augment(self.images[idx], gen)
            x = to_float(seen_images)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(self.images.device, cfg.precision):
                logits = self.forward(x)
                loss = batch_loss(cfg, logits, self.labels[idx], self.teacher, seen_images, self.distill_scale)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            clip_latent_weights(self.latent)
            seen += len(idx)
            loss_sum += loss.detach().float() * len(idx)
            if bar is not None:
                bar.update(1)
                if step % 10 == 0:
                    bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}", img_s=f"{seen / (time.time() - t0):.0f}")
        if bar is not None:
            bar.close()
        return loss_sum.item() / max(1, seen)


def make_optimizer(cfg: TrainConfig, groups: list[dict], device: torch.device) -> torch.optim.Optimizer:
    """Adam (the binary nets'), or SGD with Nesterov momentum (a float teacher's, as in DAWNBench's ResNet-9)."""
    # one kernel for all parameters on a GPU (the CPU keeps the default, so CPU runs resume alike)
    fused = True if device.type == "cuda" else None
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay,
                               fused=fused)
    return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


def batch_loss(cfg: TrainConfig, logits: torch.Tensor, labels: torch.Tensor, teacher: Logits | None,
               images: torch.Tensor, distill_scale: float | None) -> torch.Tensor:
    """The task loss of a batch, mixed with the KL term from ``teacher``'s logits on the same augmented
    ``images`` (uint8 NHWC) when distilling."""
    loss = loss_fn(cfg.loss, logits, labels)
    if teacher is None:
        return loss
    with torch.no_grad():
        soft = teacher(images)
    return (1 - cfg.distill_weight) * loss + cfg.distill_weight * distill_loss(logits, soft, distill_scale)


def _restore_state(cfg: TrainConfig, model: torch.nn.Module, opt: torch.optim.Optimizer,
                   evaluator: torch.nn.Module, train_ds: bdata.Dataset, test_ds: bdata.Dataset,
                   device: torch.device, rank: int) -> tuple[dict, float | None]:
    """Where the run starts: checkpoint.pt's state (and weights, on --resume), a warm start's source scored as
    epoch 0 (--init-from), or nothing yet; and a warm start's test accuracy, for best.pt (else None)."""
    out = Path(cfg.out_dir)
    ckpt = out / "checkpoint.pt"
    # train_seconds: the epoch loop's time so far, over every call of a resumed run (a time-planned run's clock)
    state = {"epoch": 0, "best_acc": -1.0, "history": [], "epochs_before": 0, "train_seconds": 0.0, "ended": False}
    if cfg.export_only:
        needed = ckpt if cfg.snapshot else out / "best.pt"
        if not needed.is_file():
            raise BcnnError(f"{out}: no {needed.name} to export; train first")
        # the run's schedule for history.json, unknown without its checkpoint (never saved: an export writes none)
        state["schedule_epochs"] = None
        if ckpt.is_file():
            saved = torch.load(ckpt, weights_only=False, map_location="cpu")
            check_same_run(saved.get("config", {}), cfg, ("arch", "model_options"), ckpt)
            state = {**state, **saved["state"]}  # the defaults first: older checkpoints lack some
            state["schedule_epochs"] = saved.get("config", {}).get("epochs", cfg.epochs)
    elif cfg.resume and ckpt.is_file():
        saved = torch.load(ckpt, weights_only=False, map_location=device)
        # a halving schedule does not depend on the run's length: such a run may be lengthened
        defining = RUN_DEFINING if halving_epochs(cfg.schedule) is None else \
            tuple(k for k in RUN_DEFINING if k != "epochs")
        if cfg.teacher and saved["state"].get("teacher_sha256") == teacher_digest(cfg.teacher):
            # the run's teacher under another name: a bundled teacher since re-bundled, kept as a file
            defining = tuple(k for k in defining if k != "teacher")
        check_same_run(saved.get("config", {}), cfg, defining, ckpt)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])  # the lr follows from the state: no scheduler state
        state = {**state, **saved["state"]}
    else:
        if cfg.resume and rank == 0:
            print(f"no checkpoint in {out}; starting from {cfg.init_from or 'scratch'}", file=sys.stderr)
        if cfg.init_from:
            trained, carried = warm_start(model, cfg, train_ds.images, verbose=rank == 0)
            if trained < cfg.start_epoch:
                raise BcnnError(f"--init-from {cfg.init_from} was trained for {trained} epochs, fewer than "
                                f"--start-epoch {cfg.start_epoch}")
            # the source's epochs from the start one on are this run's own
            state["epoch"], state["epochs_before"] = cfg.start_epoch, trained - cfg.start_epoch
            # the source is this run's first epoch: a warm restart never exports worse weights than it began with
            acc = evaluate(evaluator, test_ds.images, test_ds.labels)
            state["best_acc"] = acc
            # the snapshot's run so far (with --start-epoch), then its last epoch as this run measures it
            state["history"] = [*carried, {"epoch": cfg.start_epoch, "test_acc": acc}]
            if rank == 0:
                at = f", going on at epoch {cfg.start_epoch} of {cfg.epochs}" if cfg.start_epoch else ""
                print(f"warm start from {cfg.init_from} ({trained} epochs{at}): test accuracy {acc:.4f}",
                      file=sys.stderr, flush=True)
            return state, acc
    return state, None


def _attach_teacher(cfg: TrainConfig, model: torch.nn.Module, train_images: np.ndarray, device: torch.device,
                    compiled: bool, state: dict, rank: int) -> Logits | None:
    """--teacher's frozen model (or ensemble), if any; records its files' digests and the KL term's scale in
    ``state``."""
    if not cfg.teacher:
        return None
    teacher, runner = load_teachers(cfg.teacher, model, device, compiled, cfg.channels_last)
    # a bundled teacher is re-bundled, a run folder's best.pt trains on: say so rather than resume silently
    digest = teacher_digest(cfg.teacher)
    if state.get("teacher_sha256", digest) != digest and rank == 0:
        print(f"warning: --teacher {cfg.teacher} is not what this run started with (a file's SHA-256 differs); "
              f"the run goes on with it as it is now", file=sys.stderr, flush=True)
    state["teacher_sha256"] = digest
    why = "the run's own, kept on resuming"
    if "distill_scale" not in state:
        state["distill_scale"], why = _distill_scale(cfg, model, teacher, train_images[:CALIBRATION_IMAGES])
    if rank == 0:
        print(f"distilling {cfg.teacher} (on {runner}): the KL term scales this model's logits by "
              f"{state['distill_scale']:.3g} ({why})", file=sys.stderr, flush=True)
    return teacher


def _distill_scale(cfg: TrainConfig, model: torch.nn.Module, teacher: Logits,
                   calibration: np.ndarray) -> tuple[float, str]:
    """The factor on the model's logits in the KL term (TrainConfig.distill_scale), and where it comes from.
    A squared-hinge model's logits spread about 0.5, binarynet's about 7: compared as they are, the softmaxes
    would differ mostly in scale, which only the output affine can follow, slowly."""
    if cfg.distill_scale is not None:
        return cfg.distill_scale, "--distill-scale"
    if not cfg.init_from:
        return 1.0, "from scratch; --distill-scale sets another"
    student = logit_spread(model_logits(model.eval()), calibration)
    scale = logit_spread(teacher, calibration) / student if student > 0 else 1.0
    return scale, "the teacher's spread of logits over this model's at the start"


def _save_best(out: Path, model: torch.nn.Module, cfg: TrainConfig, state: dict, epoch: int, acc: float) -> None:
    torch_save_atomic({"model": model.state_dict(), "epoch": epoch, "acc": acc, "arch": cfg.arch,
                        "model_options": cfg.model_options, "epochs_before": state.get("epochs_before", 0),
                        "init_from": cfg.init_from, "recipe": run_recipe(vars(cfg), state)},
                       out / "best.pt")


def run_recipe(config: dict, state: dict) -> dict:
    """What best.pt and snapshot.bcnn keep of how the run trained (RECIPE), with the KL term's scale as the
    run used it: measured at a warm start, it is what a run going on elsewhere must give as --distill-scale."""
    recipe = {k: config[k] for k in RECIPE if k in config}
    if state.get("distill_scale") is not None:
        recipe["distill_scale"] = state["distill_scale"]
    return recipe


def export_best(cfg: TrainConfig, model: torch.nn.Module, out: Path, test_ds: bdata.Dataset) -> dict:
    """QONNX export and compile of the best epoch's weights, then the check that matters: on the test set,
    the torch model and the compiled integer engine must predict the same class for every image."""
    best = torch.load(out / "best.pt", weights_only=False, map_location="cpu")
    return _export(cfg, model, best, out, "model", test_ds)


def export_snapshot(cfg: TrainConfig, model: torch.nn.Module, out: Path, test_ds: bdata.Dataset) -> dict:
    """The latest epoch (checkpoint.pt) as ``snapshot.bcnn``, checked as a best epoch is: a compiled net that
    ``--init-from snapshot.bcnn --start-epoch K`` carries on from, on a machine without this run's folder.
    Only the signs and thresholds go: latent magnitudes, batch-norm affines and the optimizer's moments are
    rebuilt or begin anew there (bcnn.decompile)."""
    saved = torch.load(out / "checkpoint.pt", weights_only=False, map_location="cpu")
    config, state = saved.get("config", {}), saved["state"]
    scale = state.get("distill_scale")
    latest = {"model": saved["model"], "epoch": state["epoch"], "epochs_before": state.get("epochs_before", 0),
              "init_from": config.get("init_from"), "recipe": run_recipe(config, state),
              "history": carried_history(state["history"], state["epoch"])}
    done = _export(cfg, model, latest, out, "snapshot", test_ds)
    print(f"another machine goes on with the same flags plus --init-from snapshot.bcnn --start-epoch "
          f"{state['epoch']}{'' if scale is None else f' --distill-scale {scale:.9g}'} (a new --out)",
          file=sys.stderr, flush=True)
    return {**done, "start_epoch": state["epoch"]}


def _export(cfg: TrainConfig, model: torch.nn.Module, best: dict, out: Path, name: str,
            test_ds: bdata.Dataset) -> dict:
    """``best`` (the weights of one epoch and where they came from) as OUT/NAME.onnx and OUT/NAME.bcnn, with
    the torch-vs-engine check on the test set."""
    from bcnn import ir
    from bcnn.compile import compile_onnx
    from bcnn.engine.fast import run_fast
    from bcnn.engine.reference import predict
    from bcnn.models import export_onnx, snap_thresholds

    print(f"exporting epoch {best['epoch']}: QONNX, compile, then torch against the engine on {len(test_ds):,} "
          f"test images ...", file=sys.stderr, flush=True)
    model.cpu().load_state_dict(best["model"])
    model.eval()
    snap_thresholds(model)  # same function, but no accumulator near a float crossing: exact everywhere
    onnx_path = out / f"{name}.onnx"
    h, w, c = test_ds.images.shape[1:]
    export_onnx(model, onnx_path, (1, c, h, w))
    net = compile_onnx(onnx_path)
    torch_pred = predictions(model, test_ds.images)
    engine_pred = predict(net, run_fast(net, test_ds.images))
    check = {"test_images": len(test_ds), "test_data": test_ds.source,
             "engine_test_acc": float((engine_pred == test_ds.labels).mean()),
             "torch_test_acc": float((torch_pred == test_ds.labels).mean()),
             "torch_engine_mismatches": int((torch_pred != engine_pred).sum())}
    before = best.get("epochs_before", 0)
    recipe = best.get("recipe", {})  # older best.pt files have none
    net.meta.update({"arch": cfg.arch, "epochs_trained": before + best["epoch"], "seed": recipe.get("seed", cfg.seed),
                     "model_options": cfg.model_options, **({"recipe": recipe} if recipe else {}), **check})
    if best.get("init_from"):
        net.meta["warm_start"] = {"init_from": best["init_from"], "epochs_before": before}
    if "history" in best:  # a snapshot: the run's curve so far travels with it
        net.meta["history"] = best["history"]
    ir.save(net, out / f"{name}.bcnn")
    print(f"exported epoch {best['epoch']}: engine accuracy {check['engine_test_acc']:.4f} on {len(test_ds)} "
          f"test images, torch vs engine mismatches {check['torch_engine_mismatches']}", file=sys.stderr, flush=True)
    # the recipe's lr, schedule and loss replace those of an --export-only command, which trains nothing
    return {"onnx": str(onnx_path), "bcnn": str(out / f"{name}.bcnn"), "best_epoch": best["epoch"],
            "epochs_trained": before + best["epoch"],
            **{k: recipe[k] for k in ("lr", "schedule", "loss") if k in recipe}, **check}


def _bar(total: int, desc: str | None):
    """A progress bar of ``total`` batches named ``desc``; None for no bar."""
    if desc is None:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True)
