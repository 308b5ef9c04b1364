"""Another machine's run store merged into this one (`attn runs import FILE.sqlite`, the Runs page's
upload).

    report = RunStore().import_file("h100-box.sqlite", source="h100-box")
    report.added, report.skipped      # runs new here, runs this store already had

A run keeps its identity across machines: its uid (records.run_uid, a digest of what the run is),
so importing a file twice, or the same runs through two ledgers, adds each run once. An imported
run gets a new local id, and its `origin` says where it came from: the source's name (a machine's
name, by default the file's), the file, its id there and when it was imported. A run that was
itself imported keeps the origin it had.

The foreign file is opened read-only (SQLite URI mode=ro; immutable when no write-ahead log lies
beside it, so nothing is created next to it) with `trusted_schema` off, and only read with this
module's own SELECTs: nothing in it runs. It is read and checked whole before this store is
touched; a file that is not a run store, is damaged, or comes from a newer attn raises
RunStoreError and this store is left byte for byte as it was. Everything is added in one
transaction.
"""
from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from attn.runs.records import KINDS, RunStoreError, from_json, mode_of, run_uid, to_json
from attn.runs.schema import SCHEMA_VERSION

# the columns of `runs` each schema version has, beyond version 1's (schema.py)
V1_COLUMNS = ("id", "kind", "variant", "spec", "results", "environment", "created_at")
LATER_COLUMNS = {2: ("label", "tags", "device", "device_kind"), 3: ("mode",), 4: ("uid", "origin")}


@dataclass
class ImportReport:
    """What an import did: runs added (their new ids here) and runs skipped (already here)."""

    file: str
    source: str
    schema: int
    added: list[int] = field(default_factory=list)
    skipped: int = 0
    devices: list[str] = field(default_factory=list)  # the devices of the runs in the file

    def summary(self) -> str:
        devices = ", ".join(self.devices) or "no runs"
        return (f"{self.file}: {len(self.added)} run(s) added, {self.skipped} already here "
                f"(source {self.source!r}, schema {self.schema}; devices: {devices})")


def import_ledger(store: Any, path: str | os.PathLike[str], source: str | None = None) -> ImportReport:
    """Merge the run store at `path` into `store` (a RunStore, whose import_file calls this: the
    store imports this module, not the other way round); see the module's docstring."""
    path = Path(path).expanduser()
    rows, maps, version = read_ledger(path)
    source = (source or path.stem).strip() or path.name
    report = ImportReport(path.name, source, version,
                          devices=sorted({r["device"] for r in rows if r["device"]}))
    imported_at = datetime.now(timezone.utc).isoformat(timespec="seconds")

    def merge(db: sqlite3.Connection) -> None:
        have = {uid for (uid,) in db.execute("SELECT uid FROM runs")}
        for r in rows:
            if r["uid"] in have:
                report.skipped += 1
                continue
            origin = r["origin"] or {"source": source, "file": path.name, "id": r["id"],
                                     "imported_at": imported_at}
            cursor = db.execute(
                "INSERT INTO runs (kind, variant, spec, results, environment, created_at, label, tags,"
                " device, device_kind, mode, uid, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (r["kind"], r["variant"], r["spec"], r["results"], r["environment"], r["created_at"],
                 r["label"], r["tags"], r["device"], r["device_kind"], r["mode"], r["uid"], to_json(origin)))
            new_id = int(cursor.lastrowid)
            if r["id"] in maps:
                db.execute("INSERT INTO run_maps (run_id, format, data) VALUES (?, ?, ?)",
                           (new_id, *maps[r["id"]]))
            have.add(r["uid"])
            report.added.append(new_id)

    if rows:
        store._write(merge)
    return report


def read_ledger(path: Path) -> tuple[list[dict[str, Any]], dict[int, tuple[str, bytes]], int]:
    """Every run of the run store at `path` (each as the columns of this schema, uid included)
    and its maps, with the file's schema version; RunStoreError when it is not one this attn reads."""
    if not path.is_file():
        raise RunStoreError(f"{path} is not a file")
    try:
        db = _open_read_only(path)
        try:
            return _read(db, path)
        finally:
            db.close()
    except sqlite3.DatabaseError as err:
        raise RunStoreError(f"{path.name} is not an attn run store: {err}; nothing was imported") from None


def _open_read_only(path: Path) -> sqlite3.Connection:
    # with no write-ahead log beside it there is nothing but the file to read: immutable opens it
    # without the lock files a WAL reader would create next to it
    has_wal = Path(f"{path}-wal").exists()
    uri = f"file:{quote(str(path.resolve()))}?mode=ro" + ("" if has_wal else "&immutable=1")
    db = sqlite3.connect(uri, uri=True)
    db.execute("PRAGMA trusted_schema = OFF")  # no function a view or trigger names may run
    db.execute("PRAGMA query_only = ON")
    return db


def _read(db: sqlite3.Connection, path: Path) -> tuple[list[dict[str, Any]], dict[int, tuple[str, bytes]], int]:
    name = path.name
    check = db.execute("PRAGMA quick_check").fetchone()[0]
    if check != "ok":
        raise RunStoreError(f"{name} is damaged ({check}); nothing was imported")
    version = db.execute("PRAGMA user_version").fetchone()[0]
    tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "runs" not in tables or version < 1:
        raise RunStoreError(f"{name} is a SQLite file but not an attn run store (no runs table of a "
                            "known schema); nothing was imported")
    if version > SCHEMA_VERSION:
        raise RunStoreError(f"{name} has run store schema {version}, newer than this attn's "
                            f"({SCHEMA_VERSION}): upgrade attn to import it; nothing was imported")
    columns = V1_COLUMNS + tuple(c for v in range(2, version + 1) for c in LATER_COLUMNS[v])
    found = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    if not set(columns) <= found:
        missing = ", ".join(sorted(set(columns) - found))
        raise RunStoreError(f"{name} says schema {version} but its runs table lacks {missing}; "
                            "nothing was imported")
    rows = [dict(zip(columns, values)) for values in
            db.execute(f"SELECT {', '.join(columns)} FROM runs ORDER BY id")]
    maps: dict[int, tuple[str, bytes]] = {}
    if "run_maps" in tables and version >= 2:
        for i, f, d in db.execute("SELECT run_id, format, data FROM run_maps"):
            # copied as they are: a blob is checked, within bounds, when the run is opened
            # (maps_blob); bytes(d) of a number here would have allocated that many bytes
            if not isinstance(i, int) or not isinstance(f, str) or not isinstance(d, bytes):
                raise RunStoreError(f"{name}: the maps of run {str(i)[:20]} are not a blob; nothing was imported")
            maps[i] = (f, d)
    return [_checked(r, name) for r in rows], maps, version


def _checked(r: dict[str, Any], name: str) -> dict[str, Any]:
    """A foreign row in this schema's columns, its JSON checked; RunStoreError names a bad row."""
    where = f"{name}: run {r.get('id')!r}"
    if not isinstance(r["id"], int) or r["kind"] not in KINDS:
        raise RunStoreError(f"{where} is not a run this attn knows (kind {r['kind']!r}); nothing was imported")
    texts = ("spec", "results", "environment", "tags", "origin")
    parsed = {}
    for key in texts:
        text = r.get(key)
        try:
            json.loads(text) if text else None
        except (TypeError, ValueError):
            raise RunStoreError(f"{where} holds text that is not JSON; nothing was imported") from None
        try:  # spec, results, environment and origin are objects, tags a list
            parsed[key] = from_json(text, list if key == "tags" else dict)
        except RunStoreError:
            raise RunStoreError(f"{where} is not shaped like a run; nothing was imported") from None
    for key in ("spec", "results", "environment", "created_at"):
        if not isinstance(r[key], str):
            raise RunStoreError(f"{where} has no {key}; nothing was imported")
    env = parsed["environment"]
    content = (r["kind"], r["variant"], r["spec"], r["results"], r["environment"], r["created_at"])
    return {**r, "label": str(r.get("label") or ""), "tags": r.get("tags") or "[]",
            "device": str(r.get("device") or env.get("device") or ""),
            "device_kind": str(r.get("device_kind") or env.get("device_kind") or ""),
            "mode": r.get("mode") or mode_of(parsed["results"]),
            "uid": r.get("uid") or run_uid(*content), "origin": parsed["origin"]}

