"""Merging another machine's run store (attn runs import, RunStore.import_file): a run keeps its
identity (importing twice adds nothing), where it came from is kept, and a file that is not a run
store, is damaged or comes from a newer attn changes nothing, byte for byte."""
from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from attn.cli import EXIT_BAD_INPUT, main
from attn.runs import SCHEMA_VERSION, RunStore, RunStoreError
from attn.runs.schema import MIGRATIONS
from tests.test_runs_pages import CPU, GPU, profile

H100 = GPU


def ledger(path: Path, environment: dict, latency_ms: float = 0.01) -> RunStore:
    """Another machine's store: an sdpa profile (with maps) and a linear one, under its device."""
    other = RunStore(path)
    for variant, latency in (("sdpa", latency_ms), ("linear", latency_ms * 2)):
        p = profile(variant, 32, latency, 1e-7)
        other.save("profile", p["spec"], p, variant=variant, environment=environment,
                   maps={"map": np.eye(4, dtype=np.float32)} if variant == "sdpa" else None)
    other.close()
    return other


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def here() -> RunStore:
    store = RunStore()
    p = profile("sdpa", 32, 0.2, 1e-7)
    store.save("profile", p["spec"], p, variant="sdpa", environment=CPU)
    return store


def test_a_ledger_from_another_device_merges_with_its_device_and_origin(here, tmp_path):
    ledger(tmp_path / "h100-box.sqlite", H100)
    report = here.import_file(tmp_path / "h100-box.sqlite")
    assert len(report.added) == 2 and report.skipped == 0
    assert report.source == "h100-box" and report.devices == [H100["device"]]
    assert {s.device for s in here.list()} == {CPU["device"], H100["device"]}
    assert len(here.list(device="H100")) == 2 and len(here.list(device="cuda")) == 2
    run = here.get(report.added[0])
    assert run.environment == H100 and run.variant == "sdpa"
    assert run.origin["source"] == "h100-box" and run.origin["file"] == "h100-box.sqlite" and run.origin["id"] == 1
    assert run.maps["map"].tolist() == np.eye(4).tolist()  # the maps came along
    assert {s.source for s in here.list()} == {"", "h100-box"}
    assert here.list(search="h100-box")  # the source is searchable


def test_importing_twice_adds_nothing(here, tmp_path):
    ledger(tmp_path / "other.sqlite", H100)
    first = here.import_file(tmp_path / "other.sqlite")
    second = here.import_file(tmp_path / "other.sqlite", source="renamed")
    assert len(first.added) == 2
    assert second.added == [] and second.skipped == 2
    assert here.count() == 3


def test_a_run_s_identity_survives_a_merge_through_a_second_ledger(here, tmp_path):
    ledger(tmp_path / "a.sqlite", H100)
    relay = RunStore(tmp_path / "relay.sqlite")
    relay.import_file(tmp_path / "a.sqlite", source="machine-a")
    relay.close()
    here.import_file(tmp_path / "a.sqlite")
    again = here.import_file(tmp_path / "relay.sqlite")
    assert again.added == [] and again.skipped == 2
    # a run imported through the relay keeps the origin it had there
    third = RunStore(tmp_path / "third.sqlite")
    third.import_file(tmp_path / "relay.sqlite", source="relay")
    assert {third.get(s.id).origin["source"] for s in third.list()} == {"machine-a"}


def test_a_ledger_from_an_older_schema_merges_with_the_same_identity(here, tmp_path):
    old = tmp_path / "old.sqlite"
    raw = sqlite3.connect(old)
    for step in MIGRATIONS[:3]:
        step(raw)
    raw.execute("PRAGMA user_version = 3")
    raw.execute("INSERT INTO runs (kind, variant, spec, results, environment, created_at, device, device_kind, mode)"
                " VALUES ('profile', 'sdpa', ?, ?, ?, '2026-01-01T00:00:00.000+00:00', ?, 'cuda', 'forward')",
                (json.dumps({"seq": 32}), json.dumps({"latency_ms": 0.5}), json.dumps(H100), H100["device"]))
    raw.commit()
    raw.close()
    before = digest(old)
    assert len(here.import_file(old).added) == 1
    assert digest(old) == before and not Path(f"{old}-wal").exists()  # read-only, nothing beside it
    # the same file brought up to this schema gets the same uid: a second import adds nothing
    RunStore(old).close()
    assert here.import_file(old).added == []


@pytest.mark.parametrize("make, words", [
    (lambda p: p.write_bytes(b"not a database at all" * 100), "not an attn run store"),
    (lambda p: sqlite3.connect(p).execute("CREATE TABLE other (x)").connection.commit(), "not an attn run store"),
    (lambda p: (RunStore(p).close(), sqlite3.connect(p).execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")),
     "newer than this attn"),
    (lambda p: (ledger(p, H100), _corrupt(p)), "malformed|damaged"),
])
def test_a_foreign_corrupt_or_newer_file_changes_nothing(here, tmp_path, make, words):
    bad = tmp_path / "bad.sqlite"
    make(bad)
    here.close()
    before = digest(here.path)
    with pytest.raises(RunStoreError, match=words):
        RunStore(here.path).import_file(bad)
    assert digest(here.path) == before
    assert RunStore(here.path).count() == 1


def _corrupt(path: Path) -> None:
    """Scribble over the middle pages of a store: the header stays, the b-trees do not."""
    data = bytearray(path.read_bytes())
    data[4096:8192] = b"\xff" * 4096
    path.write_bytes(bytes(data))


def test_a_row_that_is_not_json_changes_nothing(here, tmp_path):
    bad = tmp_path / "bad.sqlite"
    ledger(bad, H100)
    raw = sqlite3.connect(bad)
    raw.execute("UPDATE runs SET results = '{not json' WHERE id = 2")
    raw.commit()
    raw.close()
    with pytest.raises(RunStoreError, match="run 2 holds text that is not JSON"):
        here.import_file(bad)
    assert here.count() == 1


def test_the_cli_imports_and_says_what_it_did(here, tmp_path, capsys):
    ledger(tmp_path / "box.sqlite", H100)
    assert main(["runs", "import", str(tmp_path / "box.sqlite"), "--source", "lab-h100", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["added"]) == 2 and data["source"] == "lab-h100"
    assert main(["runs", "import", str(tmp_path / "box.sqlite")]) == 0
    assert "0 run(s) added, 2 already here" in capsys.readouterr().out
    (tmp_path / "junk.sqlite").write_text("hello")
    assert main(["runs", "import", str(tmp_path / "junk.sqlite")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an attn run store" in err
    assert main(["runs", "import", str(tmp_path / "missing.sqlite")]) == EXIT_BAD_INPUT
    assert "is not a file" in capsys.readouterr().err
