"""The run store: every profile, sweep, model run and map saved in one SQLite file.

The file is `~/.attn/runs.sqlite` (the folder moves with `ATTN_HOME`). Several browser sessions
and command-line processes may write at once, so the store runs in WAL mode, every write is one
short `BEGIN IMMEDIATE` transaction retried while another writer holds the lock, and each thread
has its own connection. A process killed mid-write leaves only its committed runs behind.

The schema version lives in `PRAGMA user_version`; `MIGRATIONS[i]` takes a database from version
i to i + 1, so a file written by an older attn is brought up to date when it is opened. The store
never deletes or rewrites a file it cannot read: it says so and leaves the file to the user.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, NoReturn, TypeVar

from attn.device import attn_home
from attn.environment import environment as describe_environment
from attn.home import disk_full, ensure_folder, sqlite_no_room
from attn.runs.export import export_runs
from attn.runs.maps_blob import MAPS_FORMAT, decode_maps, encode_maps
from attn.runs.records import (KINDS, Run, RunStoreError, RunSummary, from_json, mode_of, run_uid,
                               summary_from_row, to_json)
from attn.runs.schema import MIGRATIONS, SCHEMA_VERSION

# how long a writer waits for another writer before giving up, in seconds
LOCK_WAIT_S = 30.0

T = TypeVar("T")


def default_path() -> Path:
    """`$ATTN_HOME/runs.sqlite`, or `~/.attn/runs.sqlite` without ATTN_HOME."""
    return attn_home() / "runs.sqlite"


# -- the store -------------------------------------------------------------------------------

class RunStore:
    """Runs saved in SQLite. Safe to share between threads and between processes.

    >>> store = RunStore(tmp / "runs.sqlite")
    >>> run_id = store.save("profile", spec.to_dict(), {"latency_ms": 1.2}, variant="sdpa")
    >>> store.get(run_id).results["latency_ms"]
    1.2
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_path()
        ensure_folder(self.path.parent)
        self._local = threading.local()
        self._migrate()

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    # -- writing ---------------------------------------------------------------------------------
    def save(
        self,
        kind: str,
        spec: dict[str, Any] | Any,
        results: dict[str, Any],
        variant: str | Iterable[str] | None = None,
        maps: dict[str, Any] | None = None,
        environment: dict[str, Any] | None = None,
        label: str = "",
        tags: Iterable[str] = (),
    ) -> int:
        """Save one run and return its id.

        `spec` is a dict (or anything with `to_dict()`, such as an AttentionSpec); `results` a
        JSON-able dict (numpy scalars and arrays are converted); a sweep keeps its points as
        `results["points"]`, a list of dicts. `maps` is a dict whose values may be numpy arrays
        or tensors, nested dicts and lists, or plain JSON values; float arrays are kept as
        float32 (float16 ones as float16). Without `environment`, this machine's description
        for the spec's device is saved.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        spec_dict = spec.to_dict() if hasattr(spec, "to_dict") else dict(spec)
        if not isinstance(results, dict):
            raise ValueError(f"results must be a dict, not {type(results).__name__}")
        if variant is not None and not isinstance(variant, str):
            variant = ",".join(variant)
        if environment is None:
            environment = describe_environment(spec_dict.get("device"))
        content = (kind, variant, to_json(spec_dict), to_json(results), to_json(environment),
                   datetime.now(timezone.utc).isoformat(timespec="milliseconds"))
        row = (
            *content, str(label), to_json([str(tag) for tag in tags]),
            str(environment.get("device") or ""), str(environment.get("device_kind") or ""),
            mode_of(results), run_uid(*content),
        )
        blob = encode_maps(maps) if maps is not None else None

        def insert(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "INSERT INTO runs (kind, variant, spec, results, environment, created_at, label,"
                " tags, device, device_kind, mode, uid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            run_id = int(cursor.lastrowid)
            if blob is not None:
                db.execute(
                    "INSERT INTO run_maps (run_id, format, data) VALUES (?, ?, ?)",
                    (run_id, MAPS_FORMAT, blob),
                )
            return run_id

        return self._write(insert)

    def update(self, run_id: int, label: str | None = None,
               tags: Iterable[str] | None = None) -> None:
        """Change a run's label and/or tags; KeyError when there is no such run."""
        changes: dict[str, str] = {}
        if label is not None:
            changes["label"] = str(label)
        if tags is not None:
            changes["tags"] = to_json([str(tag) for tag in tags])
        if not changes:
            return
        if not _storable(run_id):
            raise KeyError(f"no run with id {run_id}")
        assignments = ", ".join(f"{name} = ?" for name in changes)

        def apply(db: sqlite3.Connection) -> int:
            cursor = db.execute(f"UPDATE runs SET {assignments} WHERE id = ?",
                                (*changes.values(), int(run_id)))
            return cursor.rowcount

        if self._write(apply) == 0:
            raise KeyError(f"no run with id {run_id}")

    def delete(self, ids: int | Iterable[int]) -> int:
        """Delete runs (and their maps); ids that do not exist are skipped. Returns how many went."""
        wanted = [run_id for run_id in _ids(ids) if _storable(run_id)]

        def remove(db: sqlite3.Connection) -> int:
            gone = 0
            for run_id in wanted:
                db.execute("DELETE FROM run_maps WHERE run_id = ?", (run_id,))
                gone += db.execute("DELETE FROM runs WHERE id = ?", (run_id,)).rowcount
            return gone

        return self._write(remove) if wanted else 0

    # -- reading ---------------------------------------------------------------------------------
    def get(self, run_id: int) -> Run:
        """The run with this id, maps included; KeyError("no run with id N") when there is none."""
        if not _storable(run_id):
            raise KeyError(f"no run with id {run_id}")

        def fetch(db: sqlite3.Connection) -> tuple[Any, Any]:
            row = db.execute(
                "SELECT id, kind, variant, spec, results, environment, created_at, label, tags, origin"
                " FROM runs WHERE id = ?", (int(run_id),),
            ).fetchone()
            maps = db.execute("SELECT format, data FROM run_maps WHERE run_id = ?",
                              (int(run_id),)).fetchone()
            return row, maps

        row, maps_row = self._read(fetch)
        if row is None:
            raise KeyError(f"no run with id {run_id}")
        return Run(
            id=row[0], kind=row[1], variant=row[2], spec=from_json(row[3], what=f"run {run_id}'s spec"),
            results=from_json(row[4], what=f"run {run_id}'s results"),
            environment=from_json(row[5], what=f"run {run_id}'s environment"), created_at=row[6],
            label=row[7], tags=from_json(row[8], list, f"run {run_id}'s tags"),
            maps=decode_maps(maps_row[1], maps_row[0], f"run {run_id}'s maps") if maps_row is not None else None,
            origin=from_json(row[9]),
        )

    def list(
        self,
        kind: str | None = None,
        variant: str | None = None,
        device: str | None = None,
        limit: int | None = None,
        search: str | None = None,
        mode: str | None = None,
    ) -> list[RunSummary]:
        """Summaries of the saved runs, newest first.

        `variant` also finds sweeps that include it; `device` is "cpu" or "cuda", or a part of
        the device's name ("H100"); `mode` is forward, train or decode (runs saved before the
        regimes are forward); `search` is a part of the label, tags, variant, kind, mode, device
        or spec text, or a run id. Matching ignores case.
        """
        where, params = [], []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if mode is not None:
            where.append("mode = ?")
            params.append(mode)
        if variant is not None:
            where.append("(variant = ? OR (',' || variant || ',') LIKE ? ESCAPE '\\')")
            params += [variant, f"%,{_like(variant)},%"]
        if device is not None:
            if device.lower() in ("cpu", "cuda"):
                where.append("device_kind = ?")
                params.append(device.lower())
            else:
                where.append("device LIKE ? ESCAPE '\\'")
                params.append(f"%{_like(device)}%")
        if search:
            pattern = f"%{_like(search)}%"
            columns = ("label", "tags", "variant", "kind", "mode", "device", "spec", "origin")
            where.append("(" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in columns)
                         + " OR CAST(id AS TEXT) = ?)")
            params += [pattern] * len(columns) + [search.strip().lstrip("#")]
        sql = ("SELECT id, kind, variant, created_at, device, label, tags, spec, results,"
               " EXISTS (SELECT 1 FROM run_maps WHERE run_id = runs.id), mode, origin FROM runs")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(min(int(limit), SQLITE_INT_MAX))
        rows = self._read(lambda db: db.execute(sql, params).fetchall())
        return [summary_from_row(row) for row in rows]

    def count(self, kind: str | None = None) -> int:
        """How many runs are saved (of one kind, when given)."""
        if kind is None:
            return self._read(lambda db: db.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
        return self._read(
            lambda db: db.execute("SELECT COUNT(*) FROM runs WHERE kind = ?", (kind,)).fetchone()[0]
        )

    def import_file(self, path: str | os.PathLike[str], source: str | None = None) -> Any:
        """Merge another machine's run store into this one (attn.runs.ledger.import_ledger): runs
        already here (by uid) are skipped; a file that is not a run store, or is from a newer
        attn, raises RunStoreError and changes nothing. Returns an ImportReport."""
        from attn.runs.ledger import import_ledger

        return import_ledger(self, path, source)

    def export(self, ids: int | Iterable[int], fmt: str = "json",
               include_maps: bool = True) -> str:
        """Runs as text to download.

        json: one run gives an object, several a list; each is `Run.to_dict()` (maps as nested
        lists unless include_maps is False); NaN and infinities become null.
        csv: one row per run, and one per point for sweeps; columns id, kind, variant, label,
        created_at, device, then `spec.<name>` for the spec and the results flattened with dots
        ("timing.median"). A sweep's row holds its point's numbers and the sweep's other results.
        """
        runs = [self.get(run_id) for run_id in _ids(ids)]
        return export_runs(runs[0] if isinstance(ids, int) else runs, fmt, include_maps)

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            self._local.db = None
            db.close()

    # -- connections and transactions ----------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        # a forked child must not use its parent's connection
        if db is not None and getattr(self._local, "pid", None) == os.getpid():
            return db
        try:
            # isolation_level=None: this code says BEGIN and COMMIT itself; timeout is SQLite's
            # busy timeout, how long a statement waits for another connection's lock
            db = sqlite3.connect(self.path, isolation_level=None, timeout=LOCK_WAIT_S)
            db.execute("PRAGMA foreign_keys = ON")
            # WAL: readers never wait for the writer; NORMAL: a commit survives a process
            # crash (a power cut may lose the last few, never corrupting the file)
            db.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as error:
            self._raise_explained(error)
        self._local.db, self._local.pid = db, os.getpid()
        return db

    def _retrying(self, call: Callable[[sqlite3.Connection], T]) -> T:
        """`call(connection)`, again while another connection holds a lock it needs.

        The busy timeout already waits inside SQLite; this loop covers the cases where SQLite
        gives up at once instead (a WAL being recovered, a lock met part way through).
        """
        deadline = time.monotonic() + LOCK_WAIT_S
        pause = 0.005
        while True:
            try:
                return call(self._connection())
            except sqlite3.OperationalError as error:
                if not _is_busy(error) or time.monotonic() > deadline:
                    self._raise_explained(error)
            except sqlite3.DatabaseError as error:
                self._raise_explained(error)
            time.sleep(pause)
            pause = min(pause * 2, 0.2)

    def _transact(self, work: Callable[[sqlite3.Connection], T], begin: str) -> T:
        """`work` in one transaction; on a lock it is rolled back and run again from the start."""

        def once(db: sqlite3.Connection) -> T:
            db.execute(begin)
            try:
                result = work(db)
                db.execute("COMMIT")
                return result
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

        return self._retrying(once)

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads and then
        # writes can fail with "locked" half way, where the busy timeout does not help
        return self._transact(work, "BEGIN IMMEDIATE")

    def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        # one snapshot, so a run and its maps are read from the same moment
        return self._transact(work, "BEGIN")

    def _migrate(self) -> None:
        found = self._read(lambda db: db.execute("PRAGMA user_version").fetchone()[0])
        if found > SCHEMA_VERSION:
            self.close()  # the file is left to the newer attn exactly as it was, -wal and -shm gone
            raise RunStoreError(
                f"the run store at {self.path} has schema version {found}, newer than this attn"
                f" ({SCHEMA_VERSION}) understands: upgrade attn, or set ATTN_HOME to another"
                " folder"
            )
        # the journal mode is kept in the file, and cannot change inside a transaction
        mode = self._retrying(lambda db: db.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        if str(mode).lower() != "wal":
            raise RunStoreError(f"the run store at {self.path} could not switch to WAL mode"
                                f" (it is in {mode} mode)")
        if found == SCHEMA_VERSION:
            return

        def upgrade(db: sqlite3.Connection) -> None:
            # read again under the write lock: another process may have migrated meanwhile
            current = db.execute("PRAGMA user_version").fetchone()[0]
            for step in MIGRATIONS[current:]:
                step(db)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

        self._write(upgrade)

    def _raise_explained(self, error: sqlite3.DatabaseError) -> NoReturn:
        """Raise a RunStoreError that says what to do for errors a user can fix, else `error`."""
        message = str(error)
        if sqlite_no_room(error):
            raise RunStoreError(str(disk_full(self.path, message))) from error
        if "not a database" in message or "malformed" in message:
            raise RunStoreError(
                f"the run store at {self.path} is not a SQLite database: move it aside (or set"
                f" ATTN_HOME to another folder) and attn will start a new store; the file was"
                f" left as it is ({message})"
            ) from error
        if "unable to open" in message:
            raise RunStoreError(f"cannot open the run store at {self.path}: {message}") from error
        raise error


# SQLite's integers are signed 64-bit: a larger id is no run's (and binding it raises OverflowError)
SQLITE_INT_MAX = 2**63 - 1


def _ids(ids: int | Iterable[int]) -> list[int]:
    return [int(ids)] if isinstance(ids, int) else [int(run_id) for run_id in ids]


def _storable(run_id: int) -> bool:
    return -SQLITE_INT_MAX - 1 <= int(run_id) <= SQLITE_INT_MAX


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _is_busy(error: sqlite3.OperationalError) -> bool:
    message = str(error).lower()
    return "locked" in message or "busy" in message
