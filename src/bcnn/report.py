"""The report of a run: ``report.json`` (everything), ``report.md`` and ``report.html`` (one page, plots inline).

Every figure is tagged with where it comes from: ``measured`` (simulation, a timed run on this machine),
``estimate`` (Yosys counts, the power model) or ``paper`` (the published claim), so a reader can tell them
apart. The paper is Li et al., "A 7.663-TOPS 8.2-W Energy-efficient FPGA Accelerator for Binary
Convolutional Neural Networks", FPGA 2017.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

PAPER = {
    "device": "xc7vx690t",
    "clock_mhz": 90.0,
    "tops": 7.663,
    "watts": 8.2,
    "network": "BinaryNet CIFAR-10 (128C3-128C3-MP2-256C3-256C3-MP2-512C3-512C3-MP2-1024FC-1024FC-10)",
    "ops_per_image": 1.234e9,
    "small_batch_speedup_vs_titan_x": 8.3,
    "small_batch_efficiency_vs_titan_x": 75.0,
    "large_batch_throughput_vs_titan_x": 1.0,
    "large_batch_efficiency_vs_titan_x": 9.5,
}
# Yosys maps and counts but does not place or route: nothing here shows that the clock is met
CLOCK_NOT_CLOSED = "timing closure not checked (no place-and-route here)"
# watts / energy: measured (nvidia-smi) for a GPU; for the FPGA rows the report gives the estimate elsewhere
BENCH_COLS = ["backend", "batch", "images_per_s", "latency_ms", "watts", "energy_mj_per_image"]


def paper_comparison(s: dict, bench: dict | None) -> list[dict]:
    """Rows of claim / paper / bcnn / source for the side-by-side table."""
    fps, watts = s["fps"], s.get("watts")
    gops = 2 * s["macs_per_image"] * fps / 1e9
    rows = [
        {"claim": "network", "paper": PAPER["network"], "bcnn": f"{s['model']} ({s['macs_per_image'] / 1e6:,.1f} M "
         f"MACs/image)", "source": "the run's model" + ("" if s["model"] == "binarynet" else
                                                         "; not the paper's network, so throughputs differ in scale")},
        {"claim": "device, clock", "paper": f"{PAPER['device']}, {PAPER['clock_mhz']:g} MHz",
         "bcnn": f"{s['device']}, {s['clock_mhz']:g} MHz", "source": f"plan; {CLOCK_NOT_CLOSED}"},
        {"claim": "throughput", "paper": f"{PAPER['tops']} TOPS "
         f"({PAPER['tops'] * 1e12 / PAPER['ops_per_image']:,.0f} images/s)",
         "bcnn": f"{s['tops']:.3f} TOPS ({fps:,.0f} images/s)",
         "source": "measured: Verilator II, at the target clock"},
        {"claim": "power", "paper": f"{PAPER['watts']} W (board measurement)",
         "bcnn": "n/a" if watts is None else f"{watts:.2f} W", "source": "estimate: bcnn.power model"},
        {"claim": "energy efficiency", "paper": f"{PAPER['tops'] * 1e3 / PAPER['watts']:,.0f} GOPS/W",
         "bcnn": "n/a" if watts is None else f"{gops / watts:,.0f} GOPS/W", "source": "measured II / estimated W"},
        {"claim": "throughput independent of batch size", "paper": "yes",
         "bcnn": "yes: f/II at every batch; latency = pipeline latency + (B-1)·II",
         "source": "measured II and latency"},
    ]
    fpga_gops_w = None if watts is None else gops / watts
    no_gpu = "" if _has_gpu_power(bench) else "; no GPU power measured here"
    for batch, size, paper in ((1, "small batches", "8.3x faster, 75x more efficient than a Titan X GPU"),
                               (None, "large batches", "same throughput, 9.5x more efficient than a Titan X")):
        gpu = _best(bench, batch, only="torch-cuda")
        if gpu and gpu.get("watts") and fpga_gops_w:
            gpu_gops_w = 2 * s["macs_per_image"] * gpu["images_per_s"] / 1e9 / gpu["watts"]
            rows.append({"claim": f"{size} vs a GPU", "paper": paper,
                         "bcnn": f"{fps / gpu['images_per_s']:,.1f}x faster, {fpga_gops_w / gpu_gops_w:,.1f}x more "
                         f"efficient than this GPU (torch, batch {gpu['batch']}, {gpu['watts']:.0f} W)",
                         "source": "measured images/s and GPU watts (nvidia-smi); FPGA watts estimated"})
        cpu = _best(bench, batch, exclude=("fpga", "torch-cuda"))
        if cpu:
            rows.append({"claim": f"{size} vs a processor", "paper": paper,
                         "bcnn": f"{fps / cpu['images_per_s']:,.1f}x the images/s of the best CPU backend "
                         f"({cpu['backend']}, {cpu['images_per_s']:,.0f} images/s) at batch {cpu['batch']}",
                         "source": "measured on this machine" + no_gpu})
    return rows


def _has_gpu_power(bench: dict | None) -> bool:
    return bool(bench) and any(r.get("watts") for r in bench["results"] if r["backend"] == "torch-cuda")


def _best(bench: dict | None, batch: int | None, exclude: tuple[str, ...] = (), only: str | None = None) -> dict | None:
    if not bench:
        return None
    rows = [r for r in bench["results"] if r["backend"] not in exclude and (only is None or r["backend"] == only)
            and (batch is None or r["batch"] == batch)]
    return max(rows, key=lambda r: r["images_per_s"]) if rows else None


def _md_table(rows: list[dict], cols: list[str]) -> str:
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return "" if v is None else str(v)


def _html_table(rows: list[dict], cols: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(report: dict, out_dir: str | Path) -> dict[str, str]:
    """Write report.json, report.md, report.html (and the PNG plots) into ``out_dir``; returns their paths."""
    from bcnn.bench import plot

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s, bench = report["summary"], report.get("bench")
    report["paper_comparison"] = paper_comparison(s, bench)
    plots = {}
    if bench and bench.get("results"):
        plots["throughput"] = plot(bench, out / "throughput.png", title=f"{s['model']}: images/s against batch size")
        plots["latency"] = plot(bench, out / "latency.png", title=f"{s['model']}: latency against batch size",
                                metric="latency_ms")
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))

    layer_cols = ["name", "pe", "simd", "cycles", "ii_share", "mem", "lut (model)", "lut (yosys)",
                  "bram36 (model)", "bram36 (yosys)"]
    yosys = report.get("resources_by_layer", {})
    layers = [{**layer, "lut (model)": layer.get("lut"), "bram36 (model)": layer.get("bram36"),
               "lut (yosys)": yosys.get(layer["name"], {}).get("lut"),
               "bram36 (yosys)": yosys.get(layer["name"], {}).get("bram36")} for layer in report["plan"]["layers"]]
    key = [
        {"figure": "images run", "value": s["images"], "source": "measured"},
        {"figure": "accuracy on these images", "value": "n/a" if s["accuracy"] is None else f"{s['accuracy']:.1%}",
         "source": "measured (integer engine)"},
        *([{"figure": "model accuracy, whole test set", "value": f"{s['model_test_accuracy']:.2%} of "
            f"{s['model_test_images']:,} images" + (f" ({s['model_test_data']})" if s.get("model_test_data") else ""),
            "source": "measured at export (integer engine; torch vs engine "
            f"mismatches: {s.get('model_torch_mismatches')})"}]
          if s.get("model_test_accuracy") is not None else []),
        {"figure": "RTL vs engine mismatches", "value": s.get("rtl_mismatches", s["mismatches"]),
         "source": "measured (Verilator)"},
        {"figure": "torch vs engine mismatches", "value": s.get("torch_mismatches"), "source": "measured"},
        {"figure": "II (cycles)", "value": s["ii_cycles"], "source": f"measured; planned {s['planned_ii_cycles']:,}"},
        {"figure": "latency (cycles)", "value": s["latency_cycles"],
         "source": f"measured; planned {s['planned_latency_cycles']:,}"},
        {"figure": "clock (MHz)", "value": s["clock_mhz"], "source": f"target of the plan; {CLOCK_NOT_CLOSED}"},
        {"figure": "latency (µs)", "value": s["latency_us"], "source": "measured cycles at the target clock"},
        {"figure": "throughput (images/s)", "value": s["fps"], "source": "measured II at the target clock"},
        {"figure": "TOPS", "value": s["tops"], "source": "measured II at the target clock"},
        {"figure": "LUT / FF / BRAM36 / DSP", "value": " / ".join(_fmt(s[k]) for k in ("lut", "ff", "bram36", "dsp")),
         "source": "estimate: Yosys synth_xilinx"},
        {"figure": "power (W)", "value": s.get("watts"), "source": "estimate: bcnn.power model"},
        {"figure": "energy per image (µJ)", "value": None if s.get("watts") is None else s["watts"] / s["fps"] * 1e6,
         "source": "estimate W / measured images/s"},
    ]
    bench_rows = bench["results"] if bench else []
    md = [f"# bcnn report: {s['model']} on {s['device']} at {s['clock_mhz']:g} MHz", "",
          "Figures marked *measured* come from this run; *estimate* from a model (Yosys counts, the power model);",
          "*paper* from Li et al., FPGA 2017.", "", "## Key figures", "", _md_table(key, ["figure", "value", "source"]),
          "", "## Against the paper", "", _md_table(report["paper_comparison"], ["claim", "paper", "bcnn", "source"]),
          "", "## The design", "", _md_table(layers, layer_cols), "",
          "## Throughput and latency against batch size", "",
          _md_table(bench_rows, BENCH_COLS)]
    md += [f"\n![{k}]({Path(p).name})" for k, p in plots.items()]
    md += ["", *[f"- {n}" for n in (bench or {}).get("notes", [])]]
    (out / "report.md").write_text("\n".join(md) + "\n")

    imgs = "".join(f'<figure><img alt="{k}" src="data:image/png;base64,'
                   f'{base64.b64encode(Path(p).read_bytes()).decode()}"></figure>' for k, p in plots.items())
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in (bench or {}).get("notes", []))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>bcnn report: {html.escape(s['model'])}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}
th{{background:#f3f3f3}}figure{{display:inline-block;margin:0.5em}}img{{max-width:480px}}
.ok{{color:#1a7f37;font-weight:bold}}.bad{{color:#c00;font-weight:bold}}</style></head><body>
<h1>bcnn: {html.escape(s['model'])} on {html.escape(s['device'])} at {s['clock_mhz']:g} MHz</h1>
<p class="{'ok' if s['bit_exact'] else 'bad'}">{'Bit-exact' if s['bit_exact'] else 'NOT bit-exact'}: the RTL
simulation, the fast engine and torch against the reference engine on {s['images']} images
({s['mismatches']} mismatches).</p>
<p><i>measured</i>: this run; <i>estimate</i>: a model (Yosys counts, the power model); <i>paper</i>: Li et al.,
FPGA 2017.</p>
<h2>Key figures</h2>{_html_table(key, ["figure", "value", "source"])}
<h2>Against the paper</h2>{_html_table(report["paper_comparison"], ["claim", "paper", "bcnn", "source"])}
<h2>Throughput and latency against batch size</h2>{imgs}
{_html_table(bench_rows, BENCH_COLS)}<ul>{notes}</ul>
<h2>The design</h2>{_html_table(layers, layer_cols)}
</body></html>"""
    (out / "report.html").write_text(page)
    return {"json": str(out / "report.json"), "md": str(out / "report.md"), "html": str(out / "report.html"),
            **{k: str(p) for k, p in plots.items()}}
