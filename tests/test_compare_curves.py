"""benchmarks/compare_curves.py: two runs of different lengths compared at equal shares of their schedules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmark_scripts import load

compare_curves = load("compare_curves")


def _records(epochs: int, acc_of_epoch, with_progress: bool = True) -> list[dict]:
    return [{"epoch": e, "test_acc": acc_of_epoch(e), **({"progress": e / epochs} if with_progress else {})}
            for e in range(1, epochs + 1)]


def test_a_share_takes_the_epochs_that_end_in_its_window_of_each_schedule() -> None:
    short, long = _records(10, lambda e: e / 100), _records(20, lambda e: e / 200 + 0.1)
    assert compare_curves.median_at(short, 10, 0.5, 0.1) == (0.05, 1)  # epoch 5 only: (0.4, 0.5]
    assert compare_curves.median_at(long, 20, 0.5, 0.1) == (pytest.approx(0.1475), 2)  # epochs 9 and 10
    assert compare_curves.median_at(long, 20, 0.02, 0.01) is None
    older = _records(20, lambda e: e / 200 + 0.1, with_progress=False)  # histories before `progress` was kept
    assert compare_curves.median_at(older, 20, 0.5, 0.1) == (pytest.approx(0.1475), 2)
    assert compare_curves.default_shares(0.56) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.56]
    assert compare_curves.default_shares(1.0)[-1] == 1.0 and len(compare_curves.default_shares(1.0)) == 10


def test_a_finished_run_against_one_in_progress(tmp_path: Path) -> None:
    finished, running = tmp_path / "finished", tmp_path / "running"
    finished.mkdir(), running.mkdir()
    (finished / "history.json").write_text(json.dumps({"epochs": 10, "history": _records(10, lambda e: e / 100)}))
    # half of a 40-epoch run, as its checkpoint holds it while training goes on
    history = _records(40, lambda e: e / 500 + 0.2)[:20]
    torch.save({"model": {}, "config": {"epochs": 40}, "state": {"epoch": 20, "history": history}},
               running / "checkpoint.pt")
    script = str(Path(compare_curves.__file__))
    out = subprocess.run([sys.executable, script, str(finished), str(running)],
                         capture_output=True, text=True, check=True).stdout
    assert "| 50% | 5.00% (1 epoch) | 23.90% (2 epochs) | +18.90 points |" in out  # epoch 5; epochs 19, 20
    assert "| 60% |" not in out  # the run in progress has not come that far
    missing = subprocess.run([sys.executable, script, str(finished), str(tmp_path / "none")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and f"checkpoint.pt: {tmp_path / 'none'}" in missing.stderr
    assert "running: median of the last 20 22.10%, last (epoch 20) 24.00%, best (epoch 20) 24.00%" in out


def test_a_run_resumed_after_stop_after_is_read_from_its_checkpoint(tmp_path: Path) -> None:
    # --stop-after wrote history.json at epoch 10; the resumed run's checkpoint has gone on to 20
    run = tmp_path / "run"
    run.mkdir()
    history = _records(40, lambda e: e / 1000)
    (run / "history.json").write_text(json.dumps({"epochs": 10, "stopped_early": True, "history": history[:10]}))
    torch.save({"model": {}, "config": {"epochs": 40}, "state": {"epoch": 20, "history": history[:20]}},
               run / "checkpoint.pt")
    assert compare_curves.read_history(run) == (history[:20], 40)
    assert compare_curves.read_history(run / "history.json") == (history[:10], 10)  # older: no schedule kept
    (run / "history.json").write_text(json.dumps({"epochs": 10, "schedule_epochs": 40, "stopped_early": True,
                                                  "history": history[:10]}))
    assert compare_curves.read_history(run / "history.json") == (history[:10], 40)
    (run / "history.json").write_text(json.dumps({"epochs": 40, "stopped_early": False, "history": history}))
    assert compare_curves.read_history(run) == (history, 40)  # finished: its summary, the checkpoint aside
