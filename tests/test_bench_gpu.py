"""bench/gpu.py without a GPU: its dry run drives the same code on the CPU at tiny sizes, and
its bookkeeping (anchors, refusals, the report) is plain Python."""
import json

import pytest
import torch

from bench import gpu, gpu_regimes


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


def test_the_dry_run_measures_train_and_decode_on_the_cpu(tmp_path, capsys):
    anchors = tmp_path / "anchors.json"
    anchors.write_text(json.dumps({"device": "H100 (test)", "rows": []}))
    results = gpu.main(["--dry-run", "--sections", "train,decode", "--train-seqs", "64",
                        "--budget", "0.002", "--anchors", str(anchors)])
    train = results["train"]
    assert [r["case"] for r in train] == [c.label for c in gpu_regimes.TRAIN_CASES]
    # what a CPU cannot run is refused with a reason
    assert {r["case"]: r["message"] for r in train if r["status"] != "ok"} == {
        "sdpa:efficient": "efficient: needs a CUDA GPU", "sdpa:cudnn": "cudnn: needs a CUDA GPU"}
    ok = {r["case"]: r for r in train if r["status"] == "ok"}
    for r in ok.values():
        assert r["forward_ms"] > 0 and r["backward_ms"] > 0 and r["error_ok"]
        assert r["saved_vs_predicted"] == r["saved_bytes"] / r["saved_predicted"]
        assert r["peak_vs_predicted"] == r["peak_bytes"] / r["step_predicted"]
        assert 0 <= r["grad_error"] < 0.05
        assert (r["tflops_executed"] is None) == (r["flops_executed"] is None)
    # eager attention keeps its weights for the backward, a fused kernel its output and
    # log-sum-exps; a kernel that recomputes the scores executes more than the useful FLOPs
    assert ok["dense"]["saved_bytes"] > 4 * ok["sdpa:flash"]["saved_bytes"]
    assert ok["dense"]["tflops_executed"] is None
    assert ok["sdpa:flash"]["tflops_executed"] == pytest.approx(ok["sdpa:flash"]["tflops"] * 7 / 6, rel=1e-3)

    decode = results["decode"]
    cfg = gpu.dry_run_config()
    assert len(decode) == len(gpu_regimes.DECODE_CASES) * len(cfg.decode_batches) * len(cfg.decode_contexts)
    assert all(r["status"] == "ok" and r["error_ok"] for r in decode)
    assert {r["case"]: r["kv_heads"] for r in decode} == {
        "sdpa": 4, "sdpa:gqa": 2, "sdpa:mqa": 1, "sliding_window": 4, "linear": 4}
    by = {(r["case"], r["batch"], r["context"]): r for r in decode}
    assert all(r["vs_floor"] == r["latency_ms"] / r["floor_ms"] for r in decode)
    assert all(r["per_token_ms"] == r["latency_ms"] for r in decode)  # one new token

    def read(case, batch, context):
        return by[(case, batch, context)]["bytes_read"]
    # the cache a step reads: grows with the context and the batch, shrinks with shared KV
    # heads; a window of 64 caps it; a recurrent state does not grow at all
    assert read("sdpa", 1, 256) > read("sdpa", 1, 128) and read("sdpa", 2, 128) > read("sdpa", 1, 128)
    assert read("sdpa", 1, 256) > read("sdpa:gqa", 1, 256) > read("sdpa:mqa", 1, 256)
    assert read("sliding_window", 1, 256) == read("sliding_window", 1, 128) < read("sdpa", 1, 128)
    assert read("linear", 1, 256) == read("linear", 1, 128)
    assert results["decode_bandwidth_gbps"] > 0

    text = capsys.readouterr().out
    assert "### Train (forward + backward, causal)" in text and "### Decode" in text
    assert text.count("anchors (H100 (test)): none: the anchors hold forward timings only") == 2
    assert results["train_anchors"] == results["decode_anchors"] == gpu_regimes.NO_ANCHORS


def test_cases_are_chosen_across_sections():
    assert gpu.select_cases("sdpa:gqa,dense", gpu_regimes.TRAIN_CASES) == gpu_regimes.TRAIN_CASES[:1]
    assert gpu.select_cases("sdpa:gqa", gpu.CASES) == ()
    assert [c.label for c in gpu.select_cases("sdpa:mqa,sdpa", gpu_regimes.DECODE_CASES)] == ["sdpa:mqa", "sdpa"]
    assert {"train", "decode"} <= set(gpu.SECTIONS)  # the default runs every section


@pytest.mark.slow
def test_the_dry_run_starts_with_the_selftest_and_saves_it(capsys):
    """The lent GPU's one command: the self-test first (the CPU's quick run here), its table at
    the head of the report, saved as a run; then the anchor comparisons."""
    from attn.runs import RunStore

    results = gpu.main(["--dry-run", "--sections", "selftest,auto", "--seqs", "64"])
    st = results["selftest"]
    assert st["device"] == "cpu" and st["quick"] and st["complete"]
    assert RunStore().get(st["run_id"]).kind == "selftest"
    text = capsys.readouterr().out
    assert text.index("### Self-test") < text.index("### sdpa auto")
    assert "dense forward against float64" in text and "needs a CUDA device" in text
