"""bench/gpu.py without a GPU: its dry run drives the same code on the CPU at tiny sizes, and
its bookkeeping (anchors, refusals, the report) is plain Python."""
import pytest
import torch

from bench import gpu


def test_the_dry_run_checks_every_case_and_section_on_the_cpu(tmp_path, capsys):
    out = tmp_path / "results.json"
    results = gpu.main(["--dry-run", "--sections", "timing,auto,oom", "--seqs", "64",
                        "--budget", "0.005", "--out", str(out)])
    rows = results["timing"]
    assert {r["case"] for r in rows} == {c.label for c in gpu.CASES}
    refused = {(r["case"], r["causal"]) for r in rows if r["status"] != "ok"}
    # what a CPU cannot run, and linformer, which cannot be causal: refused with a reason
    assert refused == {("sdpa:efficient", False), ("sdpa:efficient", True),
                       ("sdpa:cudnn", False), ("sdpa:cudnn", True), ("linformer", True)}
    assert all(r["status"] == "unsupported" and r["message"] for r in rows if r["status"] != "ok")
    assert all(r["error_ok"] and r["latency_ms"] > 0 for r in rows if r["status"] == "ok")
    assert [r["chosen"] in ("flash", "math") for r in results["auto"]] == [True, True]
    assert results["oom"]["oom_seen"] and results["oom"]["walls"]
    text = capsys.readouterr().out
    assert "kernel error within 0.01: every case" in text
    assert "cudnn: needs a CUDA GPU" in text and "cudnn: cudnn:" not in text
    assert out.stat().st_size > 0


def test_each_row_is_compared_with_the_anchor_of_the_same_implementation():
    anchors = {"rows": [{"S": 1024, "causal": True, "impl": "cudnn", "ms": 0.5, "tflops": 400.0,
                         "peak_MiB": 64.0},
                        {"S": 1024, "causal": True, "impl": "flex_sw256", "ms": 0.2, "tflops": 90.0}]}
    ok = dict(status="ok", seq=1024, causal=True, latency_ms=1.0, tflops=200.0)
    rows = gpu.with_anchor_ratios([
        {**ok, "case": "sdpa", "anchor": None, "backend": "cudnn"},  # auto: what it chose
        {**ok, "case": "sdpa:cudnn", "anchor": "cudnn", "backend": "cudnn"},
        {**ok, "case": "sliding_window", "anchor": "flex_sw256", "causal": False},
        {**ok, "case": "sdpa:flash", "anchor": "flash"},  # no anchor measured
        {"status": "oom", "case": "dense", "anchor": "eager", "seq": 1024, "causal": True},
    ], anchors)
    assert rows[0]["ms_vs_anchor"] == 2.0 and rows[0]["tflops_vs_anchor"] == 0.5
    assert rows[1]["anchor_peak_mib"] == 64.0
    assert "anchor_ms" not in rows[2]  # the anchors' windows are causal only
    assert "anchor_ms" not in rows[3] and "anchor_ms" not in rows[4]


def test_an_unknown_case_or_section_is_refused_by_name():
    with pytest.raises(SystemExit, match="unknown case.*sdpa:fast.*choose from dense"):
        gpu.select_cases("dense,sdpa:fast")
    with pytest.raises(SystemExit, match="unknown section.*timings"):
        gpu.main(["--dry-run", "--sections", "timings"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the real run would start")
def test_without_a_gpu_it_asks_for_the_dry_run():
    with pytest.raises(SystemExit, match="no CUDA GPU here: run with --dry-run"):
        gpu.main(["--sections", "auto"])
