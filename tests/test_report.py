"""The report: every figure tagged, plots embedded, and the page renders in headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from bcnn.bench import fpga_rows
from bcnn.report import PAPER, write_report


def _report() -> dict:
    fpga = fpga_rows({"ii_cycles": 1000, "latency_cycles": 2500, "clock_mhz": 90.0}, [1, 16, 256])
    cpu = [{"backend": "fast", "batch": b, "images_per_s": 500.0 * b ** 0.3, "latency_ms": b / (500 * b ** 0.3) * 1e3}
           for b in (1, 16, 256)]
    summary = {"model": "binarynet", "device": "xc7vx690t", "clock_mhz": 90.0, "images": 100, "accuracy": 0.5,
               "mismatches": 0, "rtl_mismatches": 0, "torch_mismatches": 0, "bit_exact": True,
               "ii_cycles": 1000, "latency_cycles": 2500, "planned_ii_cycles": 1000, "planned_latency_cycles": 2500,
               "fps": 90_000.0, "latency_us": 27.8, "tops": 2 * 617e6 * 90_000 / 1e12, "macs_per_image": 617_000_000,
               "lut": 100, "ff": 50, "bram36": 2.0, "dsp": 0, "watts": 8.0}
    plan = {"layers": [{"name": "conv0", "pe": 4, "simd": 27, "cycles": 900, "ii_share": 0.9, "mem": "bram",
                        "lut": 90, "bram36": 1.0}]}
    return {"summary": summary, "plan": plan, "bench": {"results": fpga + cpu, "notes": ["a note"]},
            "resources_by_layer": {"conv0": {"lut": 100, "bram36": 2.0}}}


def test_report_files_and_paper_table(tmp_path):
    paths = write_report(_report(), tmp_path)
    data = json.loads((tmp_path / "report.json").read_text())
    claims = {row["claim"]: row for row in data["paper_comparison"]}
    assert str(PAPER["tops"]) in claims["throughput"]["paper"]
    assert claims["power"]["source"].startswith("estimate")
    assert "no GPU power" in claims["small batches vs a processor"]["source"]  # said plainly: not measured here
    assert "small batches vs a GPU" not in claims
    assert "180.0x" in claims["small batches vs a processor"]["bcnn"]  # 90,000 / 500 images/s
    md = (tmp_path / "report.md").read_text()
    assert "| conv0 | 4 | 27 |" in md and "![throughput](throughput.png)" in md
    # the clock is the plan's target: said so wherever a figure depends on it
    assert "| clock (MHz) | 90 | target of the plan; timing closure not checked" in md
    assert "timing closure not checked" in claims["device, clock"]["source"]
    assert Image.open(paths["throughput"]).size[0] > 300


def test_gpu_rows_with_measured_watts_give_the_titan_x_style_ratios(tmp_path):
    report = _report()
    report["bench"]["results"] += [{"backend": "torch-cuda", "batch": b, "images_per_s": 1000.0 * b,
                                    "latency_ms": 1.0, "watts": 100.0} for b in (1, 256)]
    write_report(report, tmp_path)
    claims = {row["claim"]: row for row in json.loads((tmp_path / "report.json").read_text())["paper_comparison"]}
    # FPGA 90,000 images/s at 8 W; GPU 1,000 images/s at 100 W at batch 1: 90x faster, 1,125x more efficient
    assert claims["small batches vs a GPU"]["bcnn"].startswith("90.0x faster, 1,125.0x more efficient")
    assert claims["large batches vs a GPU"]["bcnn"].startswith("0.4x faster")  # 90,000 / 256,000
    assert "nvidia-smi" in claims["small batches vs a GPU"]["source"]
    assert "watts" in (tmp_path / "report.md").read_text()


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")), reason="no Chromium")
def test_report_page_renders_in_chromium(tmp_path):
    paths = write_report(_report(), tmp_path)
    shot = tmp_path / "shot.png"
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars", "--window-size=1000,1400",
                    f"--screenshot={shot}", f"file://{paths['html']}"], capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (1400, 1000)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # text, tables and plots, not a blank page
