"""A run's weight files: ``best.pt`` and ``checkpoint.pt`` written atomically, shrunk for carrying to another
machine, checked against the run that reads them, and loaded as a warm start (``--init-from``), where a
compiled net's weights are rebuilt by ``bcnn.decompile``."""

from __future__ import annotations

import json
import pickle
import sys
from dataclasses import MISSING, fields
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

from bcnn.errors import BcnnError
from bcnn.fileio import atomic_write
from bcnn.floatnet import FLOAT_ARCHS

if TYPE_CHECKING:
    from bcnn.train import TrainConfig

CALIBRATION_IMAGES = 2000  # training images that set batch norm when warm-starting from a compiled net


def torch_save_atomic(obj: dict, path: Path) -> None:
    """torch.save through a temporary file: a run killed while writing leaves the last whole checkpoint."""
    with atomic_write(path) as f:
        torch.save(obj, f)


def shrink_checkpoint(src: str | Path, dst: str | Path) -> None:
    """A best.pt or checkpoint.pt at about half the size, for ``--init-from``: the latent weights of the
    binary layers in bfloat16, whose rounding keeps every sign and so every binary weight; batch norm and
    the quantizers' scales stay float32, since rounding them moves the accuracy (0.4 points on binarynet).
    The optimizer state is dropped; a float net's weights (``bcnn.floatnet``) stay float32."""
    saved = read_weights(Path(src))
    saved.pop("optimizer", None)
    saved.pop("scheduler", None)
    if run_settings(saved).get("arch") in FLOAT_ARCHS:
        torch_save_atomic(saved, Path(dst))
        return
    saved["model"] = {k: v.bfloat16() if k.endswith(".weight") and v.is_floating_point() and v.dim() >= 2 else v
                      for k, v in saved["model"].items()}
    torch_save_atomic(saved, Path(dst))


class WarmStart(NamedTuple):
    """What a warm start's source carries over besides its weights."""

    epochs: int  # the epochs its weights were trained for
    history: list[dict]  # its run's epoch records before ``start_epoch`` (a snapshot's; none from a .pt)


def warm_start(model: torch.nn.Module, cfg: TrainConfig, train_images: np.ndarray,
               verbose: bool = False) -> WarmStart:
    """Load the weights of ``cfg.init_from`` into ``model``, reading the source once.

    ``init_from``: a run folder (its best.pt), a best.pt or checkpoint.pt, or a compiled net (a ``.bcnn``
    file or a bundled model's name), whose weights ``bcnn.decompile`` rebuilds with
    ``calibration_images`` (``verbose``: saying so first, on stderr)."""
    src = weights_source("--init-from", cfg.init_from)
    if src.suffix != ".pt":
        return _warm_start_from_net(model, cfg, src, train_images, verbose)
    saved = read_weights(src, "--init-from")
    check_same_run(run_settings(saved), cfg, ("arch", "model_options"), src)
    # a best.pt of older versions does not name its arch: only loading tells
    _load_weights(model, saved, f"--init-from {src}", f"--arch {cfg.arch} with these --options")
    # a checkpoint.pt counts its run's epochs in its state, a best.pt at its top; weights saved by hand, none
    counts = saved.get("state", saved)
    return WarmStart(counts.get("epochs_before", 0) + counts.get("epoch", 0), [])


def read_weights(path: Path, flag: str = "") -> dict:
    """A best.pt or checkpoint.pt written by bcnn train, as saved (on the CPU); ``flag``, the option that
    named it, begins the error if it is not one."""
    not_weights = f"{_named(flag, path)}: not a best.pt or checkpoint.pt written by bcnn train"
    try:
        saved = torch.load(path, weights_only=False, map_location="cpu")
    except (pickle.UnpicklingError, EOFError, RuntimeError) as e:  # not a pickle, empty, not a whole torch zip
        raise BcnnError(f"{not_weights} (torch cannot read it: {str(e).splitlines()[0]})") from None
    if not isinstance(saved, dict) or "model" not in saved:
        raise BcnnError(not_weights)
    return saved


def model_from_weights(path: Path, flag: str = "") -> tuple[torch.nn.Module, str]:
    """The model that a best.pt or checkpoint.pt holds, built as the arch and options it names, and that
    arch (``run_settings``); weights that name none are refused."""
    from bcnn.models import build_model

    saved = read_weights(path, flag)
    defined = run_settings(saved)
    if "arch" not in defined:
        raise BcnnError(f"{_named(flag, path)}: names no --arch (weights saved by hand, or by an older bcnn)")
    model = build_model(defined["arch"], **(defined.get("model_options") or {}))
    _load_weights(model, saved, _named(flag, path), "the --arch and --options it names")
    return model, defined["arch"]


def run_settings(saved: dict) -> dict:
    """The settings a weights file was trained with: checkpoint.pt keeps its run's config, best.pt its arch
    and options beside its weights."""
    return saved.get("config", saved)


def _load_weights(model: torch.nn.Module, saved: dict, named: str, settings: str) -> None:
    try:
        model.load_state_dict(saved["model"])
    except RuntimeError as e:
        raise BcnnError(f"{named}: its weights do not fit {settings}: {str(e).splitlines()[0]}") from None


def _named(flag: str, path: Path) -> str:
    return f"{flag} {path}" if flag else str(path)


def weights_source(flag: str, src: str) -> Path:
    """The file that ``--init-from`` or ``--teacher`` names: a run folder's best.pt, a .pt file, or a compiled
    net (a .bcnn file or a bundled model's name)."""
    from bcnn import ir

    path = Path(src)
    path = path / "best.pt" if path.is_dir() else path
    if path.suffix == ".pt":
        if not path.is_file():
            raise BcnnError(f"{flag} {src}: expected a run folder holding best.pt, a .pt file, a .bcnn file or a "
                            f"bundled model's name")
        return path
    try:
        return ir.resolve(src)
    except BcnnError as e:
        raise BcnnError(f"{flag} {e}; or a run folder holding best.pt, or a .pt file") from None


def _warm_start_from_net(model: torch.nn.Module, cfg: TrainConfig, path: Path, train_images: np.ndarray,
                         verbose: bool) -> WarmStart:
    from bcnn import ir
    from bcnn.decompile import load_net_weights

    net = ir.load(path)
    arch, options = net.meta.get("arch", cfg.arch), net.meta.get("model_options", cfg.model_options)
    if (arch, options) != (cfg.arch, cfg.model_options):
        raise BcnnError(f"--init-from {cfg.init_from}: a net trained as --arch {arch} --options "
                        f"'{json.dumps(options)}'; train with those")
    device = next(model.parameters()).device
    if verbose:  # minutes for binarynet, before the first word of the warm start's result
        print(f"rebuilding float weights from {cfg.init_from}'s signs and thresholds (batch norm calibrated on "
              f"{CALIBRATION_IMAGES:,} augmented training images) ...", file=sys.stderr, flush=True)
    load_net_weights(model.cpu(), net, calibration_images(train_images, cfg.seed))
    model.to(device)
    # a snapshot of an older bcnn carries no history
    history = [r for r in net.meta.get("history", []) if r["epoch"] < cfg.start_epoch]
    return WarmStart(int(net.meta.get("epochs_trained", 0)), history)


# a record's fields that read another machine's clock: a carried epoch is not timed (bcnn.schedule.epoch_gaps)
CLOCK_FIELDS = ("seconds", "finished_at", "first_of_call")


def carried_history(history: list[dict], epoch: int) -> list[dict]:
    """The records of a run's epochs up to ``epoch`` that its snapshot keeps, so that the run's curve goes on
    across machines (``benchmarks/compare_curves.py`` reads it whole); without their timings."""
    return [{k: v for k, v in r.items() if k not in CLOCK_FIELDS} for r in history if r["epoch"] <= epoch]


def calibration_images(train_images: np.ndarray, seed: int) -> np.ndarray:
    """The first ``CALIBRATION_IMAGES`` training images, augmented as training augments them. Train mode
    normalises by the statistics of augmented batches, as the source run did; calibrated on plain images
    (whose statistics differ: no zero-padded borders), the rebuilt binarynet started 1.2-1.6 points
    below its source in train mode and in the running statistics that training then left (session 27)."""
    from bcnn.train import augment

    plain = torch.from_numpy(np.ascontiguousarray(train_images[:CALIBRATION_IMAGES]))
    return np.ascontiguousarray(augment(plain, torch.Generator().manual_seed(seed)).numpy())


def check_same_run(saved: dict, cfg: TrainConfig, keys: tuple[str, ...], ckpt: Path) -> None:
    """Refuse to continue a checkpoint with other settings: the LR schedule and the shuffles would silently
    follow the checkpoint's, not the command line's."""
    flag = {"model_options": "--options", "weight_decay": "weight decay"}
    # a checkpoint written before a setting existed was trained with its default
    defaults = {f.name: f.default for f in fields(cfg) if f.default is not MISSING}
    saved = {**{k: v for k, v in defaults.items() if k in keys}, **saved}

    def shown(value: object) -> str:
        return "not set" if value is None else repr(value)

    differ = [f"{flag.get(k, '--' + k.replace('_', '-'))} {shown(getattr(cfg, k))} (checkpoint: {shown(saved[k])})"
              for k in keys if k in saved and saved[k] != getattr(cfg, k)]
    if differ:
        raise BcnnError(f"{ckpt} was written by a run with other settings: " + "; ".join(differ) +
                        ". Use the checkpoint's settings, or a new --out folder for a new run.")
