"""A GPU's board power while a block of code runs, sampled with ``nvidia-smi`` (NVIDIA's own meter).

The energy columns of ``bcnn bench`` and the report's GPU comparison use it; where there is no
``nvidia-smi`` (or it reports no power), the result is None and the report says it was not measurable.
"""

from __future__ import annotations

import shutil
import subprocess
from statistics import median


def parse_power_draw(text: str) -> list[float]:
    """Watts from ``nvidia-smi --query-gpu=power.draw --format=csv,noheader,nounits`` output, one per line;
    lines that are not a number ("[N/A]", "[Not Supported]", blank) are skipped."""
    watts = []
    for line in text.splitlines():
        try:
            watts.append(float(line.strip()))
        except ValueError:
            continue
    return watts


class GpuPower:
    """``with GpuPower() as p: ...`` then ``p.watts``: the median board power of GPU ``index`` over the block,
    sampled every ``interval_ms`` (None without nvidia-smi or samples)."""

    def __init__(self, index: int = 0, interval_ms: int = 100):
        self.args = [f"--id={index}", "--query-gpu=power.draw", "--format=csv,noheader,nounits",
                     f"--loop-ms={interval_ms}"]
        self.proc: subprocess.Popen | None = None
        self.samples: list[float] = []
        self.watts: float | None = None

    def __enter__(self) -> GpuPower:
        exe = shutil.which("nvidia-smi")
        if exe:
            self.proc = subprocess.Popen([exe, *self.args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                         text=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        self.samples = parse_power_draw(out)
        self.watts = median(self.samples) if self.samples else None
