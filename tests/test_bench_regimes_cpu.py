"""bench/regimes_cpu.py: its quick run end to end (tiny sizes), and its verdicts by hand."""
import json

import pytest

from bench import regimes_cpu
from bench.regimes_cpu import QUICK


@pytest.mark.slow
def test_the_quick_run_measures_every_row_and_judges_every_target(tmp_path, capsys):
    out = tmp_path / "regimes.json"
    result = regimes_cpu.main(["--quick", "--json", str(out)])
    assert [(r["variant"], r["seq"]) for r in result["train"]] == [
        (name, seq) for seq in QUICK.train_seqs for name in ("dense", "sdpa")]
    for r in result["train"]:
        assert r["saved_ratio"] == r["saved_bytes"] / r["saved_predicted"]
        assert r["peak_ratio"] == r["peak_bytes"] / r["step_predicted"]
        assert r["forward_ms"] > 0 and r["backward_ms"] > 0 and r["grad_error"] < 1e-4
    last = QUICK.contexts[-1]
    assert [(r["variant"], r["context"], r["kv_heads"]) for r in result["decode"]] == [
        row for c in QUICK.contexts for row in
        [("sdpa", c, 8)] + ([("sdpa", c, 2)] if c == last else []) + [("linear", c, 8)]]
    read = {(r["variant"], r["context"], r["kv_heads"]): r["bytes_read"] for r in result["decode"]}
    # sdpa reads its whole cache, a quarter of it with 2 KV heads of 8; linear reads its state
    first = QUICK.contexts[0]
    assert read[("sdpa", 2 * first, 8)] > read[("sdpa", first, 8)]
    assert read[("sdpa", last, 2)] < read[("sdpa", last, 8)] / 3
    assert read[("linear", last, 8)] == read[("linear", first, 8)]
    assert all(r["vs_floor"] == r["per_token_ms"] / r["floor_ms"] for r in result["decode"])
    assert len(result["targets"]) == 2 * len(result["train"]) + 1 + 2 + 3
    assert all(isinstance(t["met"], bool) and t["measured"] > 0 for t in result["targets"])
    for when in ("load_before", "load_after"):
        assert len(result["info"][when]["load_average"]) == 3
        assert 0 <= result["info"][when]["cpu_percent"] <= 100
    text = capsys.readouterr().out
    assert "quick smoke run at tiny sizes" in text and "### Targets" in text
    assert "load average" in text and "CPUs busy" in text
    assert json.loads(out.read_text())["targets"] == result["targets"]


def test_the_verdicts_by_hand():
    train = [{"variant": "dense", "seq": 256, "saved_ratio": 1.1, "peak_ratio": 0.8, "saved_bytes": 100},
             {"variant": "sdpa", "seq": 256, "saved_ratio": 1.0, "peak_ratio": 1.0, "saved_bytes": 10}]

    def step(name, context, kv_heads, ms, vs_floor=1.0):
        return {"variant": name, "context": context, "kv_heads": kv_heads, "per_token_ms": ms,
                "vs_floor": vs_floor}
    decode = [step("sdpa", 256, 8, 1.0, 5.0), step("linear", 256, 8, 0.1),
              step("sdpa", 1024, 8, 2.0, 1.5), step("linear", 1024, 8, 0.2),
              step("sdpa", 2048, 8, 4.0, 2.5), step("sdpa", 2048, 2, 1.0), step("linear", 2048, 8, 0.15)]
    sizes = regimes_cpu.Sizes(train_seqs=(256,), contexts=(256, 1024, 2048), floor_from=1024,
                              heads=8, kv_heads_gqa=2, train_budget_s=0.01, decode_budget_s=0.01)
    met = {t["target"]: (t["measured"], t["met"]) for t in regimes_cpu.targets(sizes, train, decode)}
    assert met["train dense seq 256: measured saved / saved_bytes within 15%"] == (1.1, True)
    assert met["train dense seq 256: measured step peak / step_bytes within 15%"] == (0.8, False)
    assert met["train seq 256: dense saved / sdpa saved >= 10x"] == (10.0, True)
    # the floor counts from 1024 up: 256's 5x is not judged
    assert [k for k in met if "floor" in k] == [
        "decode sdpa context 1024: step / bandwidth floor <= 2x",
        "decode sdpa context 2048: step / bandwidth floor <= 2x"]
    assert met["decode sdpa context 2048: step / bandwidth floor <= 2x"] == (2.5, False)
    assert met["decode context 2048: sdpa / linear >= 20x"] == (pytest.approx(4.0 / 0.15), True)
    # linear's two ends within 1.5x, either way round
    assert met["decode linear: context 2048 / context 256 within 1.5x"] == (pytest.approx(1.5), True)
    assert met["decode sdpa context 2048: 8 KV heads / 2 KV heads >= 3x"] == (4.0, True)
