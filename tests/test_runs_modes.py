"""Saved runs name their regime (forward, train, decode): the store's mode column and its
migration, the filter, the CSV and JSON exports and `attn runs list`. Runs saved before the
regimes name none and are forward."""
from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from attn.cli import main
from attn.runs import SCHEMA_VERSION, RunStore
from attn.runs.schema import MIGRATIONS

CPU = {"device": "Test CPU (2 cores)", "device_kind": "cpu"}
TRAIN = {"mode": "train", "latency_ms": 3.0, "forward_ms": 1.0, "backward_ms": 2.0, "saved_bytes": 4096,
         "grad_error": 2e-7}
DECODE = {"mode": "decode", "latency_ms": 0.05, "per_token_ms": 0.05, "bytes_read": 65664, "floor_ms": 0.003,
          "achieved_gbps": 1.3, "context": 256, "new_tokens": 1}


def old_store(path: Path) -> None:
    """A store as attn wrote it at schema version 2 (before the mode column): a profile and a
    sweep from before the regimes (no mode in their results), and a train profile and a decode
    sweep saved by the first attn that measured regimes but had no column for them yet."""
    raw = sqlite3.connect(path)
    for step in MIGRATIONS[:2]:
        step(raw)
    raw.execute("PRAGMA user_version = 2")
    rows = [("profile", "sdpa", {"latency_ms": 1.0}),
            ("sweep", "sdpa,linear", {"axis": "seq", "points": [{"variant": "sdpa", "x": 64}]}),
            ("profile", "sdpa", TRAIN),
            ("sweep", "sdpa", {"axis": "context", "mode": "decode", "points": []})]
    for kind, variant, results in rows:
        raw.execute("INSERT INTO runs (kind, variant, spec, results, environment, created_at, device,"
                    " device_kind) VALUES (?, ?, '{\"seq\": 64}', ?, ?, '2026-01-02T03:04:05.000+00:00', ?, ?)",
                    (kind, variant, json.dumps(results), json.dumps(CPU), CPU["device"], CPU["device_kind"]))
    raw.commit()
    raw.close()


def test_a_version_2_store_gets_a_mode_column_filled_from_each_runs_results(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    old_store(path)
    store = RunStore(path)
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 3
    # the runs from before the regimes are forward; the others keep the mode their JSON names
    assert [s.id for s in store.list(mode="forward")] == [2, 1]
    assert [s.id for s in store.list(mode="train")] == [3]
    assert [s.id for s in store.list(mode="decode")] == [4]
    assert [s.mode for s in store.list()] == ["decode", "train", "forward", "forward"]
    assert store.get(1).mode == "forward" and store.get(1).results == {"latency_ms": 1.0}
    # a new run after the migration
    new_id = store.save("profile", {"seq": 1, "kv_seq": 256}, DECODE, variant="sdpa", environment=CPU)
    assert [s.id for s in store.list(mode="decode")] == [new_id, 4]


def test_save_takes_the_mode_from_the_results_and_the_filters_combine(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    ids = {"old": store.save("profile", {"seq": 64}, {"latency_ms": 1.0}, variant="sdpa", environment=CPU),
           "train": store.save("profile", {"seq": 64}, TRAIN, variant="sdpa", environment=CPU),
           "decode": store.save("profile", {"seq": 1}, DECODE, variant="linear", environment=CPU)}
    assert {s.id: s.mode for s in store.list()} == {ids["old"]: "forward", ids["train"]: "train",
                                                    ids["decode"]: "decode"}
    assert [s.id for s in store.list(mode="train", variant="sdpa")] == [ids["train"]]
    assert store.list(mode="train", variant="linear") == []
    assert [s.id for s in store.list(search="decode")] == [ids["decode"]]  # the mode is searched too


def test_exports_name_the_mode_and_an_old_run_is_forward(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    old = store.save("profile", {"seq": 64}, {"latency_ms": 1.0}, variant="sdpa", environment=CPU)
    train = store.save("profile", {"seq": 64}, TRAIN, variant="sdpa", environment=CPU)
    sweep = store.save("sweep", {"seq": 1}, {"mode": "decode", "axis": "context", "points": [
        {"variant": "sdpa", "x": 256, "mode": "decode", "per_token_ms": 0.05},
        {"variant": "sdpa", "x": 512, "mode": "decode", "per_token_ms": 0.09}]}, variant="sdpa",
        environment=CPU)
    rows = list(csv.DictReader(io.StringIO(store.export([old, train, sweep], "csv"))))
    assert list(rows[0])[:3] == ["id", "kind", "mode"]  # beside the kind, not somewhere at the end
    assert [r["mode"] for r in rows] == ["forward", "train", "decode", "decode"]
    assert rows[1]["forward_ms"] == "1.0" and rows[1]["backward_ms"] == "2.0"
    assert [r["per_token_ms"] for r in rows[2:]] == ["0.05", "0.09"]
    data = json.loads(store.export([old, train], "json"))
    assert [d["mode"] for d in data] == ["forward", "train"]
    assert "mode" not in data[0]["results"]  # the saved results stay as they were saved


def test_runs_list_on_the_command_line_shows_and_filters_the_mode(capsys: pytest.CaptureFixture) -> None:
    store = RunStore()
    old = store.save("profile", {"seq": 64}, {"latency_ms": 1.0}, variant="sdpa", environment=CPU)
    decode = store.save("profile", {"seq": 1, "kv_seq": 256}, DECODE, variant="sdpa", environment=CPU)
    assert main(["runs", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == [f"#{decode}", "profile", "decode"]
    assert lines[1].split()[:3] == [f"#{old}", "profile", "forward"]
    assert main(["runs", "list", "--mode", "decode", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["mode"]) for r in listed] == [(decode, "decode")]
    assert main(["runs", "list", "--mode", "prefill"]) == 2
    assert "invalid choice: 'prefill'" in capsys.readouterr().err
