"""The run store: round trips, migrations, crashes, concurrent writers, export."""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from attn.runs import SCHEMA_VERSION, RunStore, RunStoreError, default_path, spec_short
from attn.spec import AttentionSpec

REPO = Path(__file__).resolve().parents[1]
CPU = {"device": "Intel(R) Xeon(R) Test CPU (2 cores)", "device_kind": "cpu", "torch": "2.13.0"}
GPU = {"device": "NVIDIA H100 80GB HBM3", "device_kind": "cuda", "driver": "550.54"}


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "runs.sqlite")


def profile_results() -> dict:
    return {"latency_ms": {"median": 1.25, "p10": 1.2, "p90": 1.4}, "flops": 4.3e9,
            "peak_bytes": 8 << 20, "kernel_error": 3e-7, "repeats": 20}


def sweep_results() -> dict:
    return {"points": [
        {"variant": "dense", "seq": 512, "latency_ms": 0.5, "flops": 1e9, "peak_bytes": 1 << 20},
        {"variant": "sdpa", "seq": 512, "latency_ms": 0.2, "flops": 1e9, "peak_bytes": 1 << 18},
        {"variant": "sdpa", "seq": 1024, "latency_ms": 0.7, "flops": 4e9, "error": "out of memory"},
    ], "repeats": 10}


# -- round trips ------------------------------------------------------------------------------

def test_profile_round_trip(store: RunStore) -> None:
    spec = AttentionSpec(seq=1024, heads=8, kv_heads=2, dtype="float16", causal=True)
    run_id = store.save("profile", spec, profile_results(), variant="sdpa", environment=GPU,
                        label="baseline", tags=["gqa", "fp16"])
    run = store.get(run_id)
    assert (run.id, run.kind, run.variant, run.label, run.tags) == (
        run_id, "profile", "sdpa", "baseline", ["gqa", "fp16"])
    assert AttentionSpec.from_dict(run.spec) == spec
    assert run.results == profile_results()
    assert run.environment == GPU and run.device == "NVIDIA H100 80GB HBM3"
    assert run.maps is None
    assert run.created_at.endswith("+00:00")  # UTC


def test_sweep_round_trip_keeps_points_and_variants(store: RunStore) -> None:
    spec = {"seq": [512, 1024], "heads": 8, "head_dim": 64}
    run_id = store.save("sweep", spec, sweep_results(), variant=["dense", "sdpa"], environment=CPU)
    run = store.get(run_id)
    assert run.variant == "dense,sdpa"
    assert run.spec == spec and run.results == sweep_results()


def test_model_round_trip(store: RunStore) -> None:
    spec = {"model": "all-MiniLM-L6-v2", "text": "the cost of attention", "seq": 7}
    results = {"layers": [{"layer": i, "flops": 1000 * i, "latency_ms": 0.1} for i in range(6)],
               "total_flops": 15000, "attn_implementation": "eager", "ok": True, "note": None}
    run = store.get(store.save("model", spec, results, environment=CPU))
    assert (run.kind, run.variant, run.spec, run.results) == ("model", None, spec, results)


def test_maps_round_trip_keeps_arrays_binary_and_exact(store: RunStore) -> None:
    import torch

    rng = np.random.default_rng(1)
    pooled = rng.random((4, 64, 64), dtype=np.float32)
    pooled /= pooled.sum(-1, keepdims=True)
    maps = {
        "values": pooled,  # (heads, rows, cols)
        "q_edges": np.arange(0, 4097, 64, dtype=np.int64),
        "exact": False,
        "reduce": "max",
        "heads": {"3": torch.full((2, 2), 0.25)},  # tensors are saved as arrays too
        "layers": [np.float64(0.5), np.zeros(3, np.float16)],
    }
    run = store.get(store.save("maps", {"seq": 4096}, {"max_size": 64}, variant="dense",
                               maps=maps, environment=CPU))
    np.testing.assert_array_equal(run.maps["values"], pooled)
    assert run.maps["values"].dtype == np.float32 and run.maps["values"].flags.writeable
    np.testing.assert_array_equal(run.maps["q_edges"], maps["q_edges"])
    assert run.maps["q_edges"].dtype == np.int64
    assert (run.maps["exact"], run.maps["reduce"]) == (False, "max")
    np.testing.assert_array_equal(run.maps["heads"]["3"], np.full((2, 2), 0.25, np.float32))
    assert run.maps["layers"][0] == 0.5 and run.maps["layers"][1].dtype == np.float16


def test_float64_maps_are_stored_as_float32(store: RunStore) -> None:
    values = np.linspace(1e-9, 1, 50)
    run = store.get(store.save("maps", {}, {}, maps={"values": values}, environment=CPU))
    assert run.maps["values"].dtype == np.float32
    np.testing.assert_allclose(run.maps["values"], values, rtol=1e-7)


def test_save_describes_the_machine_when_no_environment_is_given(store: RunStore) -> None:
    run = store.get(store.save("profile", AttentionSpec(device="cpu"), {"latency_ms": 1.0}))
    assert run.environment["device_kind"] == "cpu"
    assert run.environment["python"] and run.environment["attn"]


def test_bad_kind_and_missing_run_say_what_is_wrong(store: RunStore) -> None:
    with pytest.raises(ValueError, match="kind must be one of profile, sweep, model, maps"):
        store.save("benchmark", {}, {})
    with pytest.raises(KeyError, match="no run with id 99"):
        store.get(99)


# -- list, update, delete, count --------------------------------------------------------------

def fill(store: RunStore) -> dict[str, int]:
    return {
        "cpu_dense": store.save("profile", {"seq": 512}, {"latency_ms": 3.0}, variant="dense",
                                environment=CPU, label="first try"),
        "gpu_sdpa": store.save("profile", AttentionSpec(seq=2048), profile_results(),
                               variant="sdpa", environment=GPU, tags=["flash"]),
        "sweep": store.save("sweep", {"seq": [512, 1024]}, sweep_results(),
                            variant="dense,sdpa", environment=GPU),
        "maps": store.save("maps", {"seq": 64}, {}, variant="topk", environment=CPU,
                           maps={"values": np.eye(4)}),
    }


def test_list_is_newest_first_with_key_numbers(store: RunStore) -> None:
    ids = fill(store)
    runs = store.list()
    assert [r.id for r in runs] == sorted(ids.values(), reverse=True)
    gpu = next(r for r in runs if r.id == ids["gpu_sdpa"])
    # a {"median": ...} timing gives its median
    assert (gpu.latency_ms, gpu.flops, gpu.peak_bytes) == (1.25, 4.3e9, 8 << 20)
    assert gpu.device == "NVIDIA H100 80GB HBM3" and gpu.tags == ["flash"]
    assert gpu.spec_short == "B1 S2048 H8 D64 float32"
    sweep = next(r for r in runs if r.id == ids["sweep"])
    assert sweep.points == 3 and sweep.latency_ms is None
    assert [r.has_maps for r in runs] == [True, False, False, False]
    assert [r.id for r in store.list(limit=2)] == [ids["maps"], ids["sweep"]]


def test_list_filters(store: RunStore) -> None:
    ids = fill(store)

    def found(**filters: str) -> set[int]:
        return {r.id for r in store.list(**filters)}

    assert found(kind="profile") == {ids["cpu_dense"], ids["gpu_sdpa"]}
    # a sweep over dense and sdpa is found under either
    assert found(variant="sdpa") == {ids["gpu_sdpa"], ids["sweep"]}
    assert found(variant="dense") == {ids["cpu_dense"], ids["sweep"]}
    assert found(variant="sdp") == set()
    assert found(device="cuda") == found(device="h100") == {ids["gpu_sdpa"], ids["sweep"]}
    assert found(device="cpu") == {ids["cpu_dense"], ids["maps"]}
    assert found(search="FIRST") == {ids["cpu_dense"]}  # the label, any case
    assert found(search="flash") == {ids["gpu_sdpa"]}  # a tag
    assert found(search=f"#{ids['maps']}") == {ids["maps"]}
    assert found(search="100%") == set()  # % is a character, not a wildcard
    assert found(kind="profile", device="cuda") == {ids["gpu_sdpa"]}


def test_update_delete_and_count(store: RunStore) -> None:
    ids = fill(store)
    store.update(ids["sweep"], label="overnight", tags=["a100", "long"])
    assert (store.get(ids["sweep"]).label, store.get(ids["sweep"]).tags) == (
        "overnight", ["a100", "long"])
    with pytest.raises(KeyError, match="no run with id 1234"):
        store.update(1234, label="x")

    assert store.count() == 4 and store.count("profile") == 2
    assert store.delete([ids["maps"], ids["cpu_dense"], 1234]) == 2
    assert store.count() == 2
    with pytest.raises(KeyError):
        store.get(ids["maps"])
    with sqlite3.connect(store.path) as raw:  # its maps went with it
        assert raw.execute("SELECT COUNT(*) FROM run_maps").fetchone()[0] == 0
    # ids are never reused, so "run 4" always means the same run
    assert store.save("profile", {}, {}, environment=CPU) == max(ids.values()) + 1


# -- export -----------------------------------------------------------------------------------

def test_export_csv_has_a_row_per_run_and_per_sweep_point(store: RunStore) -> None:
    ids = fill(store)
    text = store.export([ids["gpu_sdpa"], ids["sweep"]], fmt="csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 1 + 3
    profile, *points = rows
    assert profile["id"] == str(ids["gpu_sdpa"]) and profile["kind"] == "profile"
    assert profile["spec.seq"] == "2048" and profile["latency_ms.median"] == "1.25"
    assert profile["device"] == "NVIDIA H100 80GB HBM3"
    assert [p["point"] for p in points] == ["0", "1", "2"]
    assert [p["variant"] for p in points] == ["dense", "sdpa", "sdpa"]
    assert [p["latency_ms"] for p in points] == ["0.5", "0.2", "0.7"]
    assert points[2]["error"] == "out of memory" and points[0]["error"] == ""
    assert {p["repeats"] for p in points} == {"10"}  # the sweep's own results on every row
    assert json.loads(points[0]["spec.seq"]) == [512, 1024]


def test_export_json_gives_whole_runs_as_strict_json(store: RunStore) -> None:
    ids = fill(store)
    nan_id = store.save("profile", {}, {"latency_ms": float("nan")}, environment=CPU)

    def strict(text: str):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))

    one = strict(store.export(ids["maps"]))
    assert one["id"] == ids["maps"] and one["maps"]["values"] == np.eye(4).tolist()
    assert one["environment"] == CPU
    both = strict(store.export([ids["sweep"], nan_id], fmt="json", include_maps=False))
    assert [run["id"] for run in both] == [ids["sweep"], nan_id]
    assert both[0]["results"] == sweep_results() and "maps" not in both[0]
    assert both[1]["results"]["latency_ms"] is None
    with pytest.raises(ValueError, match="fmt must be"):
        store.export(nan_id, fmt="xml")


def test_spec_short_covers_gqa_cross_attention_and_other_shapes() -> None:
    spec = AttentionSpec(batch=2, seq=128, kv_seq=1024, heads=8, kv_heads=1, causal=True)
    assert spec_short(spec.to_dict()) == "B2 S128 KV1024 H8/1 D64 float32 causal"
    assert spec_short({"model": "bert", "seq": 7}) == "bert S7"
    assert spec_short({"steps": 3}) == "steps=3"


# -- files: location, corruption, schema versions ------------------------------------------

def test_attn_home_moves_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTN_HOME", str(tmp_path / "elsewhere"))
    store = RunStore()
    store.save("profile", {}, {}, environment=CPU)
    assert store.path == tmp_path / "elsewhere" / "runs.sqlite" and store.path.exists()
    monkeypatch.delenv("ATTN_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_path() == tmp_path / "home" / ".attn" / "runs.sqlite"


def test_a_file_that_is_not_a_database_is_reported_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    junk = b"these are someone's notes, not a database\n" * 200
    path.write_bytes(junk)
    with pytest.raises(RunStoreError, match="is not a SQLite database: move it aside") as caught:
        RunStore(path)
    assert str(path) in str(caught.value)
    assert path.read_bytes() == junk


def test_a_store_from_a_newer_attn_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RunStoreError, match="newer than this attn"):
        RunStore(path)


def test_a_version_1_store_is_migrated_with_its_runs_intact(tmp_path: Path) -> None:
    # the schema as attn's first run store wrote it: no labels, tags, device column or maps
    path = tmp_path / "runs.sqlite"
    raw = sqlite3.connect(path)
    raw.executescript("""
        CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,
            variant TEXT, spec TEXT NOT NULL, results TEXT NOT NULL, environment TEXT NOT NULL,
            created_at TEXT NOT NULL);
        CREATE INDEX runs_by_kind ON runs (kind, id);
        PRAGMA user_version = 1;
    """)
    old = [("profile", "sdpa", {"seq": 512}, {"latency_ms": 2.5}, GPU),
           ("sweep", "dense,linear", {"seq": [64, 128]}, sweep_results(), CPU)]
    for kind, variant, spec, results, env in old:
        raw.execute("INSERT INTO runs (kind, variant, spec, results, environment, created_at)"
                    " VALUES (?, ?, ?, ?, ?, '2025-01-02T03:04:05.000+00:00')",
                    (kind, variant, json.dumps(spec), json.dumps(results), json.dumps(env)))
    raw.commit()
    raw.close()

    store = RunStore(path)
    for run_id, (kind, variant, spec, results, env) in enumerate(old, start=1):
        run = store.get(run_id)
        assert (run.kind, run.variant, run.spec, run.results, run.environment) == (
            kind, variant, spec, results, env)
        assert (run.label, run.tags, run.maps) == ("", [], None)
    # the device was pulled out of each old environment, so filters work on old runs too
    assert [r.id for r in store.list(device="cuda")] == [1]
    assert [r.id for r in store.list(device="xeon")] == [2]
    new_id = store.save("maps", {}, {}, maps={"values": np.ones(2)}, label="new",
                        environment=CPU)
    assert new_id == 3 and store.get(new_id).label == "new"
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert RunStore(path).count() == 3  # opening a current store changes nothing


# -- crashes and concurrency ------------------------------------------------------------------

@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_writer_killed_mid_transaction_loses_only_its_open_run(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    writer = subprocess.Popen(  # imports attn from the editable install
        [sys.executable, str(REPO / "tests" / "runs_writer.py"), str(path), "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = [writer.stdout.readline().strip() for _ in range(6)]
        assert lines[-1] == "inside", (lines, writer.stderr.read() if writer.poll() else "")
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait(timeout=30)
        writer.stdout.close()
        writer.stderr.close()
    assert writer.returncode == -signal.SIGKILL

    store = RunStore(path)
    committed = [int(line) for line in lines[:5]]
    assert sorted(r.id for r in store.list()) == committed
    for i, run_id in enumerate(committed):
        run = store.get(run_id)
        assert (run.label, run.spec, run.results) == (
            f"committed {i}", {"seq": 64 * (i + 1)}, {"latency_ms": float(i)})
        assert run.maps["values"].shape == (8, 8)
    assert store.list(search="uncommitted") == []
    # the dead writer's lock went with it
    assert store.save("profile", {}, {}, environment=CPU, label="after") > committed[-1]


def test_threads_writing_and_listing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    shared = RunStore(path)
    writers, saves = 8, 25
    done = threading.Event()
    errors: list[BaseException] = []
    seen: list[list[int]] = [[], []]

    def write(w: int) -> None:
        # half the threads share one store, as browser sessions do; half open their own
        store = shared if w % 2 else RunStore(path)
        try:
            for i in range(saves):
                run_id = store.save("profile", {"seq": i}, {"latency_ms": float(i)},
                                    variant="dense", environment=CPU, label=f"w{w} s{i}",
                                    maps={"values": np.full((4, 4), w, np.float32)} if i % 5 == 0
                                    else None)
                assert store.get(run_id).label == f"w{w} s{i}"
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    def read(r: int) -> None:
        try:
            while not done.is_set():
                seen[r].append(len(shared.list(kind="profile")))
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    readers = [threading.Thread(target=read, args=(r,)) for r in range(2)]
    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in readers + threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    for thread in readers:
        thread.join()

    assert errors == []
    labels = {r.label for r in shared.list()}
    assert labels == {f"w{w} s{i}" for w in range(writers) for i in range(saves)}
    assert shared.count() == writers * saves
    # each reader saw the store only grow: no half-written state, nothing lost on the way
    for counts in seen:
        assert counts and counts == sorted(counts)
    assert sum(r.has_maps for r in shared.list()) == writers * saves // 5


@pytest.mark.parametrize("column, text, message", [
    ("results", " ", "run 1's results is not JSON"),
    ("spec", "1e999", "run 1's spec is a JSON float, not an object"),
    ("tags", "{}", "run 1's tags is a JSON dict, not a list"),
])
def test_a_damaged_column_lists_and_opens_with_one_line(tmp_path, column, text, message):
    # found by tests/test_fuzz.py: a column that is not the JSON it should be raised
    # JSONDecodeError, AttributeError or TypeError, from listing the runs too
    import sqlite3

    store = RunStore(tmp_path / "runs.sqlite")
    run_id = store.save("profile", {"seq": 8}, {"latency_ms": 1.0}, variant="sdpa")
    with sqlite3.connect(store.path) as db:
        db.execute(f"UPDATE runs SET {column} = ? WHERE id = ?", (text, run_id))
    assert [s.id for s in store.list()] == [run_id]
    with pytest.raises(RunStoreError, match=message):
        store.get(run_id)


@pytest.mark.parametrize("blob", [b"", b"x\x01ca``\xc8+\xcd\xc9\x01\x00\x04\x83\x01\xc0", b"\xff" * 9])
def test_damaged_maps_are_one_line(blob):
    # found by tests/test_fuzz.py: zlib.error, KeyError and TypeError from a damaged blob
    from attn.runs.maps_blob import decode_maps

    with pytest.raises(RunStoreError, match="the saved maps are damaged"):
        decode_maps(blob)


def test_an_id_past_sqlites_integers_is_no_run(tmp_path):
    # found by fuzzing: `attn runs show 9999999999999999999999999` raised OverflowError
    store = RunStore(tmp_path / "runs.sqlite")
    huge = 10**25
    with pytest.raises(KeyError, match=f"no run with id {huge}"):
        store.get(huge)
    with pytest.raises(KeyError):
        store.update(huge, label="x")
    assert store.delete([huge, -huge]) == 0
    assert store.list(limit=huge) == []
