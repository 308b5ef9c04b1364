"""python -m attn: every command's JSON, and bad input as exit code 2 with one line on stderr.
Commands run in-process through attn.cli.main; one test runs the module as a subprocess."""
import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from attn import calibrate, variants
from attn.cli import EXIT_BAD_INPUT, main

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--batch", "1", "--seq", "32", "--heads", "2", "--head-dim", "16"]


def run_json(capsys, *argv):
    """Run a command with --json; it must succeed, print JSON and nothing on stderr."""
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err == ""
    return json.loads(out)


def test_variants_lists_the_registry(capsys):
    data = run_json(capsys, "variants")
    assert [d["variant"] for d in data] == variants.names()
    assert set(data[0]) == {"variant", "title", "exact", "params", "summary"}
    assert {d["variant"]: d["exact"] for d in data}["linear"] is False


@pytest.mark.slow  # a fresh interpreter imports torch: seconds on a busy machine
def test_variants_as_a_subprocess():
    done = subprocess.run([sys.executable, "-m", "attn", "variants", "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "dense" in [d["variant"] for d in json.loads(done.stdout)]


def test_cost_gives_the_numbers_of_the_contract(capsys):
    data = run_json(capsys, "cost", "--variant", "dense", *TINY, "--causal")
    for key in ("variant", "spec", "device", "flops", "proj_flops", "kv_cache_bytes_per_token",
                "pairs", "peak_bytes", "arithmetic_intensity"):
        assert key in data
    assert data["variant"] == "dense" and data["spec"]["causal"] is True
    assert data["pairs"] == 32 * 33 // 2
    assert data["flops"] == 4 * 1 * 2 * 16 * data["pairs"]


def test_profile_of_a_tiny_spec(capsys):
    data = run_json(capsys, "profile", "--variant", "sdpa", *TINY, "--device", "cpu", "--budget", "0.05")
    for key in ("variant", "spec", "device", "backend", "latency_ms", "p10_ms", "p90_ms", "repeats",
                "flops", "flops_counted", "flops_note", "achieved_tflops", "peak_bytes",
                "kernel_error", "approx_error", "environment"):
        assert key in data
    assert data["p10_ms"] <= data["latency_ms"] <= data["p90_ms"]
    assert data["kernel_error"] < 1e-4 and "run_id" not in data  # not saved unless asked


def test_sweep_of_two_variants(capsys):
    data = run_json(capsys, "sweep", "--variants", "dense,linear", *TINY[:2], "--seq", "32,64",
                    *TINY[4:], "--device", "cpu", "--budget", "0.01")
    assert set(data) >= {"axis", "xs", "variants", "device", "points", "fits", "crossovers", "walls", "spec"}
    assert data["xs"] == [32, 64] and data["variants"] == ["dense", "linear"]
    assert [(p["variant"], p["x"], p["status"]) for p in data["points"]] == [
        ("dense", 32, "ok"), ("dense", 64, "ok"), ("linear", 32, "ok"), ("linear", 64, "ok")]
    assert data["fits"]["dense"]["flops"]["exponent"] == pytest.approx(2.0)


def test_maps_of_a_tiny_spec(capsys):
    data = run_json(capsys, "maps", "--variant", "dense", *TINY, "--head", "1", "--max-size", "16")
    assert {"variant", "spec", "device", "map", "head_stats"} <= set(data)
    assert len(data["map"]["values"]) == 16 and data["map"]["head"] == 1
    assert len(data["head_stats"]) == 2  # every head's statistics


def test_monitor_for_a_moment(capsys):
    data = run_json(capsys, "monitor", "--seconds", "0.3")
    assert {"device", "gpu_status", "count", "samples", "summary"} <= set(data)
    assert data["count"] >= 1


def test_calibrate(capsys, monkeypatch):
    monkeypatch.setattr(calibrate, "matmul_tflops", lambda device, dtype, n, repeats=5: 1.5)
    monkeypatch.setattr(calibrate, "copy_gbps", lambda device, nbytes, repeats=5: 20.0)
    data = run_json(capsys, "calibrate", "--device", "cpu")
    assert data["matmul_tflops"] == {"float32": 1.5, "bfloat16": 1.5, "float16": 1.5}
    assert data["bandwidth_gbps"] == 20.0 and {"device", "torch", "measured_at"} <= set(data)


def test_a_saved_profile_through_runs_list_show_and_export(capsys, tmp_path):
    saved = run_json(capsys, "profile", "--variant", "dense", *TINY, "--device", "cpu",
                     "--budget", "0.02", "--save")
    run_id = saved["run_id"]
    listed = run_json(capsys, "runs", "list")
    assert [r["id"] for r in listed] == [run_id] and listed[0]["kind"] == "profile"
    shown = run_json(capsys, "runs", "show", str(run_id))
    assert shown["id"] == run_id and shown["results"]["latency_ms"] == saved["latency_ms"]

    out = tmp_path / "run.csv"
    assert main(["runs", "export", str(run_id), "--format", "csv", "--out", str(out)]) == 0
    assert capsys.readouterr().err.strip() == f"wrote {out}"
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 1 and rows[0]["id"] == str(run_id) and float(rows[0]["latency_ms"]) > 0

    assert main(["runs", "export", str(run_id), "--format", "json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["id"] == run_id and exported["results"]["flops"] == saved["flops"]


def test_human_output_without_json(capsys):
    assert main(["cost", "--variant", "dense", *TINY]) == 0
    assert "flops" in capsys.readouterr().out
    assert main(["runs", "list"]) == 0
    assert capsys.readouterr().out.strip() == "no runs saved yet"


@pytest.mark.parametrize("argv, message", [
    (["cost", "--variant", "dense", "--heads", "12", "--kv-heads", "5"],
     "heads (12) must be a multiple of kv_heads (5)"),
    (["cost", "--variant", "dense", "--seq", "0"], "seq must be at least 1, got 0"),
    (["cost", "--variant", "dense", "--batch", "-2"], "batch must be at least 1, got -2"),
    (["sweep", "--variants", "dense", "--seq", "64,-1"], "seq must be at least 1, got -1"),
    (["cost", "--variant", "nope"], "unknown variant 'nope'"),
    (["sweep", "--variants", "dense,nope", "--seq", "32"], "unknown variant 'nope'"),
    (["cost", "--variant", "dense", "--dtype", "float8"], "unknown dtype 'float8'"),
    (["cost", "--variant", "sliding_window", "--window", "0"], "window must be at least 1"),
    (["cost", "--variant", "sdpa", "--backend", "fastest"], "unknown backend 'fastest': choose one of auto"),
    (["profile", "--variant", "sdpa", "--backend", "fastest", *TINY], "unknown backend 'fastest': choose one of auto"),
    (["profile", "--variant", "linformer", "--causal", *TINY], "linformer: pools keys across positions"),
    (["cost", "--variant", "linformer", "--causal", *TINY], "so it cannot be causal"),
    (["profile", "--variant", "dense", "--seq", "10000000", "--device", "cpu"], "does not fit: "),
    (["profile", "--variant", "dense", "--seq", "many"], "invalid int value: 'many'"),
    (["runs", "show", "999"], "no run with id 999"),
    (["runs", "show", "abc"], "give exactly one run id"),
    (["monitor", "--seconds", "0"], "--seconds must be positive"),
    (["maps", "--variant", "dense", *TINY, "--head", "2"], "--head must be in 0..1"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_input_exits_2_with_one_line_on_stderr(capsys, argv, message):
    assert main([*argv, "--json"]) == EXIT_BAD_INPUT
    out, err = capsys.readouterr()
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("attn: error: ") and message in err


# hostile input from issue 16 that crashed or hung: each now gets one line and exit 2, at once
@pytest.mark.parametrize("argv, message", [
    (["profile", "--variant", "block_sparse", "--seq", "100000000", "--block", "64"],
     "block_sparse: a layout of 1,562,500 x 1,562,500 blocks"),
    (["cost", "--variant", "block_sparse", "--seq", "64", "--seed", "9223372036854775808"],
     "seed must be at most 9223372036854775807"),
    (["profile", "--variant", "dense", *TINY, "--budget", "nan"], "budget must be a finite number"),
    (["profile", "--variant", "dense", *TINY, "--budget", "-1"], "budget must be a finite number"),
    (["sweep", "--variants", "dense", "--seq", "32", "--budget", "inf"], "budget must be a finite number"),
    (["maps", "--variant", "sdpa", "--seq", "100000000", "--heads", "64"], "maps of sdpa compute"),
    # maps with no compute bound computed for hours; now refused with the length that would do
    (["maps", "--variant", "dense", "--seq", "200000"], "use seq <= 11,585 at 8 heads"),
    (["maps", "--variant", "dense", "--seq", "300000", "--heads", "1", "--head-dim", "1"],
     "use seq <= 32,768 at 1 head"),
    (["maps", "--variant", "linformer", "--seq", "512", "--rank", "1000000000"], "rank must be at most"),
])
def test_hostile_sizes_and_values_get_one_line(capsys, argv, message):
    assert main([*argv, "--json"]) == EXIT_BAD_INPUT
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    assert message in err



def test_a_map_at_a_huge_batch_is_drawn_from_its_one_item(capsys):
    # the issue's `maps --variant linear --batch 100000 --seq 4096` drew every batch item and did
    # not fit; a map is batch item 0's, so only it is drawn and the answer is a map (#16)
    data = run_json(capsys, "maps", "--variant", "linear", "--batch", "100000", "--seq", "1024")
    assert data["spec"]["batch"] == 100000 and len(data["head_stats"]) == 8

@pytest.mark.parametrize("argv", [
    # block_sparse's cost hung at a million tokens, then was refused past its layout limit: its
    # pairs are a closed form now, so the cost answers at any length
    ["cost", "--variant", "block_sparse", "--seq", "1000000", "--heads", "2", "--kv-heads", "1",
     "--head-dim", "64", "--causal"],
    ["cost", "--variant", "block_sparse", "--seq", "1000000000000000000", "--causal"],
    ["cost", "--variant", "linear", "--seq", "1000000000000000000"],
    ["cost", "--variant", "performer", "--seq", "1000000000000000000", "--mode", "train"],
])
def test_huge_costs_answer(capsys, argv):
    data = run_json(capsys, *argv)
    assert data["flops"] > 0


def test_a_device_only_reason_does_not_make_a_cost_bad(capsys):
    # flash needs a GPU to run, but its cost can still be worked out anywhere
    data = run_json(capsys, "cost", "--variant", "sdpa", "--backend", "efficient", *TINY)
    assert data["spec"]["backend"] == "efficient"


def test_profile_and_maps_on_text_take_the_models_shape(capsys):
    from attn.cli import main

    assert main(["maps", "--variant", "dense", "--text", "a few real tokens", "--max-size", "8", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["spec"]["heads"] == 12 and data["spec"]["head_dim"] == 32  # MiniLM's layers
    assert "minilm layer 0" in data["inputs"]
    assert main(["profile", "--variant", "topk", "--top-k", "2", "--text", "a few real tokens",
                 "--budget", "0.02", "--json"]) == 0
    prof = json.loads(capsys.readouterr().out)
    assert prof["spec"]["seq"] == data["spec"]["seq"] and prof["approx_error"] > 0


def test_sweep_over_another_axis(capsys):
    from attn.cli import main

    assert main(["sweep", "--variants", "dense", "--seq", "32", "--axis", "heads", "--values", "1,2,4",
                 "--budget", "0.02", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["axis"] == "heads" and data["xs"] == [1, 2, 4]
    assert data["fits"]["dense"]["flops"]["exponent"] == pytest.approx(1.0, abs=0.01)  # FLOPs ∝ heads
    assert main(["sweep", "--variants", "dense", "--axis", "batch"]) == 2
    assert "needs --values" in capsys.readouterr().err


@pytest.mark.parametrize("word", ["a\nb", "a\x1db", "a\u2028b", "a\rb"])
def test_an_error_that_echoes_a_line_break_stays_one_line(capsys, word):
    # found by bench.fuzz: argparse echoes unrecognized words as given, so a newline or a
    # control character in one made the error two lines
    assert main(["variants", word]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("attn: error: unrecognized arguments: a"), repr(err)


@pytest.mark.parametrize("command", ["profile", "maps"])
@pytest.mark.parametrize("temperature", ["nan", "inf", "1e-300", "0", "-1", "1000"])
def test_a_temperature_the_inputs_cannot_carry_is_refused(capsys, command, temperature):
    # found by fuzzing: NaN passed `temperature <= 0` and profiled q full of NaN; 1e-300 overflowed
    # q to inf, and every error of the profile read NaN
    assert main([command, "--variant", "dense", *TINY, "--temperature", temperature, "--device", "cpu"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert f"temperature must be between 0.01 and 100 (q is divided by it), got {float(temperature)}" in err


@pytest.mark.parametrize("variant", ["dense", "performer", "sigmoid", "relu", "linear"])
@pytest.mark.parametrize("temperature", ["0.01", "100"])
def test_a_temperature_at_either_end_of_its_range_gives_finite_errors(capsys, variant, temperature):
    assert main(["profile", "--variant", variant, *TINY, "--temperature", temperature, "--dtype", "float16",
                 "--budget", "0", "--device", "cpu", "--json"]) == 0
    import json

    data = json.loads(capsys.readouterr().out)
    assert math.isfinite(data["kernel_error"]) and math.isfinite(data["approx_error"])
