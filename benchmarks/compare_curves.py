"""Two training runs' test accuracy at the same shares of their schedules: a 400-epoch cosine is judged against
a 200-epoch one where both have come equally far down their learning rates, not at the same epoch.

    python benchmarks/compare_curves.py RUN_A RUN_B [--at 0.25 0.5 ...] [--window 0.05]

A run is a `bcnn train --out` folder (its history.json once finished, else its checkpoint.pt, so a run in progress,
or stopped by --stop-after and resumed, can be read beside it) or either file; a run carried across machines by
snapshots holds its earlier links' epochs too (those its snapshots carried). At each share S it prints each run's
median test accuracy over the epochs whose progress lies in (S - window, S], since single epochs swing by up to
±0.7 points on cnv; then each run's median of its last 20 epochs, its last and its best epoch.
Markdown, for the docs.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from bcnn.checkpoints import read_weights
from bcnn.errors import BcnnError


def read_history(src: Path) -> tuple[list[dict], int]:
    """A run's per-epoch records (epoch, test_acc, progress) and the epochs its schedule spans."""
    if src.is_dir():
        finished = current_summary(src)
        src = src / "checkpoint.pt"
    else:
        finished = json.loads(src.read_text()) if src.suffix == ".json" else None
    if finished is not None:
        return finished["history"], finished.get("schedule_epochs", finished["epochs"])  # older: none kept
    saved = read_weights(src)
    return saved["state"]["history"], saved["config"]["epochs"]


def current_summary(run: Path) -> dict | None:
    """A run folder's history.json, or None where its checkpoint is the one to read: no history.json yet, or
    one that a --stop-after wrote, which goes stale as soon as the run is resumed (the checkpoint then runs
    ahead of it)."""
    path = run / "history.json"
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    return None if summary.get("stopped_early") and (run / "checkpoint.pt").exists() else summary


def progress(record: dict, epochs: int) -> float:
    """How far through its schedule a run was after this epoch (0 to 1); by the clock under --time-budget."""
    return record.get("progress", record["epoch"] / epochs)


def median_at(history: list[dict], epochs: int, share: float, window: float) -> tuple[float, int] | None:
    """The median test accuracy of the epochs in (share - window, share], and how many; None if there are none."""
    eps = 1e-9  # 0.5 - 0.05 is not 18 / 40 in floating point
    accs = [r["test_acc"] for r in history if share - window + eps < progress(r, epochs) <= share + eps]
    return (statistics.median(accs), len(accs)) if accs else None


def default_shares(reached: float) -> list[float]:
    """Every tenth of the schedule that both runs have passed, and the furthest share both have reached."""
    shares = [k / 10 for k in range(1, 11) if k / 10 <= reached + 1e-9]
    return shares if shares and abs(shares[-1] - reached) < 1e-9 else [*shares, round(reached, 3)]


def ending(history: list[dict]) -> str:
    accs = [r["test_acc"] for r in history]
    best = max(history, key=lambda r: r["test_acc"])
    return (f"median of the last {min(20, len(accs))} {statistics.median(accs[-20:]):.2%}, "
            f"last (epoch {history[-1]['epoch']}) {accs[-1]:.2%}, best (epoch {best['epoch']}) {best['test_acc']:.2%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs=2, help="two bcnn train --out folders, history.json or checkpoint.pt")
    parser.add_argument("--at", type=float, nargs="+", help="shares of the schedule (default: every tenth reached)")
    parser.add_argument("--window", type=float, default=0.05, help="the share each median spans (default 0.05)")
    args = parser.parse_args()
    try:
        (a, a_epochs), (b, b_epochs) = (read_history(run) for run in args.runs)
    except FileNotFoundError as e:
        parser.error(f"not a bcnn train --out folder, history.json or checkpoint.pt: {e.filename}")
    except BcnnError as e:
        parser.error(str(e))
    if not a or not b:
        parser.error("a run has no finished epoch yet")
    reached = min(progress(a[-1], a_epochs), progress(b[-1], b_epochs))
    names = [run.name if run.is_dir() else f"{run.parent.name}/{run.name}" for run in args.runs]
    print(f"| share | {names[0]} ({a_epochs} epochs) | {names[1]} ({b_epochs} epochs) | difference |")
    print("|---|---|---|---|")
    for share in args.at or default_shares(reached):
        at_a, at_b = median_at(a, a_epochs, share, args.window), median_at(b, b_epochs, share, args.window)
        cells = [f"{at[0]:.2%} ({at[1]} epoch{'s' * (at[1] > 1)})" if at else "-" for at in (at_a, at_b)]
        diff = f"{(at_b[0] - at_a[0]) * 100:+.2f} points" if at_a and at_b else "-"
        print(f"| {share:.0%} | {cells[0]} | {cells[1]} | {diff} |")
    for name, history in zip(names, (a, b), strict=True):
        print(f"{name}: {ending(history)}")


if __name__ == "__main__":
    main()
