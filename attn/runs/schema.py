"""The store's schema, version by version. `MIGRATIONS[i]` takes a database from version i to
i + 1; the version lives in `PRAGMA user_version`."""
from __future__ import annotations

import sqlite3
from typing import Callable

from attn.runs.records import MODE_ABSENT, lenient_json, mode_of, run_uid


def _v1(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,  -- ids are never reused, so "run 12" stays put
            kind TEXT NOT NULL,
            variant TEXT,
            spec TEXT NOT NULL,
            results TEXT NOT NULL,
            environment TEXT NOT NULL,
            created_at TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX runs_by_kind ON runs (kind, id)")


def _v2(db: sqlite3.Connection) -> None:
    # labels and tags for the user; the device pulled out of the environment so that lists can
    # filter on it without parsing JSON; maps in their own table so that lists never read them
    db.execute("ALTER TABLE runs ADD COLUMN label TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE runs ADD COLUMN tags TEXT NOT NULL DEFAULT '[]'")
    db.execute("ALTER TABLE runs ADD COLUMN device TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE runs ADD COLUMN device_kind TEXT NOT NULL DEFAULT ''")
    for run_id, env_text in db.execute("SELECT id, environment FROM runs").fetchall():
        env = lenient_json(env_text)
        db.execute(
            "UPDATE runs SET device = ?, device_kind = ? WHERE id = ?",
            (str(env.get("device") or ""), str(env.get("device_kind") or ""), run_id),
        )
    db.execute(
        """CREATE TABLE run_maps (
            run_id INTEGER PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
            format TEXT NOT NULL,
            data BLOB NOT NULL
        )"""
    )


def _v3(db: sqlite3.Connection) -> None:
    # the regime (forward | train | decode) pulled out of the results, so that lists filter on
    # it without parsing JSON; runs saved before regimes existed name none and were forward calls
    db.execute(f"ALTER TABLE runs ADD COLUMN mode TEXT NOT NULL DEFAULT '{MODE_ABSENT}'")
    for run_id, results_text in db.execute("SELECT id, results FROM runs").fetchall():
        # results that are not JSON are left forward, as the run says nothing else
        mode = mode_of(lenient_json(results_text))
        if mode != MODE_ABSENT:
            db.execute("UPDATE runs SET mode = ? WHERE id = ?", (mode, run_id))


def _v4(db: sqlite3.Connection) -> None:
    # ledgers merged from several machines (attn runs import): each run's identity, the same on
    # every machine (records.run_uid, a digest of the run, so no machine hands ids out and a file
    # from an older attn gets the same uids when it is read), and where an imported run came from
    db.execute("ALTER TABLE runs ADD COLUMN uid TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE runs ADD COLUMN origin TEXT NOT NULL DEFAULT ''")
    rows = db.execute("SELECT id, kind, variant, spec, results, environment, created_at FROM runs").fetchall()
    for run_id, *content in rows:
        db.execute("UPDATE runs SET uid = ? WHERE id = ?", (run_uid(*content), run_id))
    db.execute("CREATE INDEX runs_by_uid ON runs (uid)")


# MIGRATIONS[i] takes the schema from version i to i + 1; append, never edit a released one
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1, _v2, _v3, _v4)
SCHEMA_VERSION = len(MIGRATIONS)
