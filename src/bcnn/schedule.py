"""Where a training run stands and the learning rate it trains at: by epochs, or by the clock for a run
planned over a time budget (``--time-budget``), whose decisions every torchrun rank must share."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from bcnn.errors import BcnnError


def parse_schedule(schedule: str) -> tuple[str, int]:
    """("cosine", 0), ("halve", N) or ("exp", K); anything else is refused."""
    if schedule == "cosine":
        return "cosine", 0
    kind, _, n = schedule.partition(":")
    if kind not in ("halve", "exp") or not n.isdigit() or int(n) < 1:
        raise BcnnError(f"--schedule {schedule!r}: expected cosine, halve:N (every N epochs) or exp:K (K "
                        f"halvings over the run), N and K at least 1")
    return kind, int(n)


def halving_epochs(schedule: str) -> int | None:
    """N of a "halve:N" schedule, which does not depend on the run's length; None for the others."""
    kind, n = parse_schedule(schedule)
    return n if kind == "halve" else None


def lr_factor(schedule: tuple[str, int], progress: float, step: int, steps_per_epoch: int) -> float:
    """The multiplier of the initial lr at global step ``step``, ``progress`` (0 to 1) into the run: cosine
    decay to 0, or exp:K, BinaryNet's exponential decay to 1/2^K, both over the run (its steps, or its time
    budget); halve:N halves every N epochs, whatever the run's length (bnn_pynq's schedule). ``schedule``:
    what :func:`parse_schedule` made of it."""
    kind, n = schedule
    progress = min(max(progress, 0.0), 1.0)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if kind == "exp":
        return 0.5 ** (n * progress)
    return 0.5 ** (step // (n * steps_per_epoch))


def epoch_gaps(history: list[dict]) -> list[float]:
    """The times from one epoch's end to the next's, writing included, within one call of a run: the first
    epoch of a call also waited for the model to compile (up to a minute and a half on a GPU machine), and
    the gap before it spans the pause between two calls."""
    timed = [r for r in history if "finished_at" in r]  # not a warm start's epoch 0
    return [b["finished_at"] - a["finished_at"] for a, b in itertools.pairwise(timed) if not b.get("first_of_call")]


def next_epoch_seconds(history: list[dict]) -> float:
    """How long the next epoch will take: the median of the last three gaps between two epochs of one call
    (after a resumed run's first epoch, those of the call before: its warm-up is not the epochs to come),
    else the only epoch's own time. A median, since one gap may span a pause (a SIGSTOP'd process), which
    would otherwise stop a --stop-after run, or end a time-planned one, that long before it need."""
    gaps = epoch_gaps(history)
    if gaps:
        return float(np.median(gaps[-3:]))
    timed = [r for r in history if "finished_at" in r]
    return timed[-1]["seconds"] if timed else 0.0


# Every broadcast of rank0, kept for the life of the process: a gloo worker thread that dropped the last
# reference to one would need the GIL to free its Python-made tensor, and if that happened as the process
# group is torn down (its destructor joins the workers holding the GIL), the rank would hang forever.
_BROADCASTS: list = []


def rank0(value: float, world: int, device: torch.device) -> float:
    """Rank 0's value on every rank: decisions made by the clock must not differ between ranks."""
    if world == 1:
        return value
    t = torch.tensor(value, dtype=torch.float64, device=device)
    work = torch.distributed.broadcast(t, 0, async_op=True)
    work.wait()
    _BROADCASTS.append(work)
    return float(t.item())


def out_of_time(limit: float, started: float, now: float, history: list[dict], world: int,
                device: torch.device) -> bool:
    """Whether one more epoch, begun at ``now``, would end past ``limit`` seconds after ``started``."""
    return bool(rank0(float(now + next_epoch_seconds(history) > started + limit), world, device))


def run_progress(epochs: int, budget: float | None, epoch: int, train_seconds: float, history: list[dict],
                 world: int, device: torch.device) -> tuple[float, float]:
    """Where the run stands at the start of ``epoch`` (0 to 1) and the share of the run that epoch is: by
    epochs, or, for a run planned over ``budget`` seconds, by the clock and next_epoch_seconds (none for
    the first)."""
    if not budget:
        return epoch / epochs, 1 / epochs
    share = next_epoch_seconds(history) / budget
    return rank0(train_seconds / budget, world, device), rank0(share, world, device)


def eta(history: list[dict], epochs_left: int) -> str:
    """', about 6.2 h to go' from the median of the last five epochs (one slow epoch does not swing it)."""
    times = epoch_gaps(history)[-5:] or [r["seconds"] for r in history[-5:] if "seconds" in r]
    if not epochs_left or not times:
        return ""
    left = float(np.median(times)) * epochs_left
    if left >= 3600:
        return f", about {left / 3600:.1f} h to go"
    return f", about {left / 60:.0f} min to go" if left >= 60 else f", about {left:.0f} s to go"
