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

import csv
import io
import json
import math
import os
import sqlite3
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, NoReturn, TypeVar

from attn.device import attn_home

KINDS = ("profile", "sweep", "model", "maps")
# the key numbers a run list shows, looked up in a run's results (see `_key_number`)
KEY_NUMBERS = ("latency_ms", "flops", "peak_bytes", "achieved_tflops")
MAPS_FORMAT = "attn-maps-1"
# how long a writer waits for another writer before giving up, in seconds
LOCK_WAIT_S = 30.0

T = TypeVar("T")


class RunStoreError(RuntimeError):
    """The store's file cannot be used as it is (not a database, or from a newer attn)."""


@dataclass
class Run:
    """One saved run, as `RunStore.get` returns it."""

    id: int
    kind: str  # profile | sweep | model | maps
    variant: str | None  # for sweeps: the variants as a comma list
    spec: dict[str, Any]
    results: dict[str, Any]
    environment: dict[str, Any]
    created_at: str  # UTC, ISO 8601
    label: str = ""
    tags: list[str] = field(default_factory=list)
    maps: dict[str, Any] | None = None  # pooled maps, arrays as numpy arrays

    @property
    def device(self) -> str:
        return str(self.environment.get("device", ""))

    def to_dict(self, include_maps: bool = True) -> dict[str, Any]:
        """Plain JSON-ready data: maps' arrays become nested lists."""
        data: dict[str, Any] = {
            "id": self.id, "kind": self.kind, "variant": self.variant, "label": self.label,
            "tags": list(self.tags), "created_at": self.created_at, "spec": self.spec,
            "results": self.results, "environment": self.environment,
        }
        if include_maps:
            data["maps"] = _plain(self.maps)
        return data


@dataclass
class RunSummary:
    """One line of a run list: enough to choose a run without loading its results or maps."""

    id: int
    kind: str
    variant: str | None
    created_at: str
    device: str
    label: str
    tags: list[str]
    spec_short: str  # "B1 S1024 H8/2 D64 float16 causal"
    latency_ms: float | None = None
    flops: float | None = None
    peak_bytes: float | None = None
    achieved_tflops: float | None = None
    points: int | None = None  # sweeps: how many points
    has_maps: bool = False


def default_path() -> Path:
    """`$ATTN_HOME/runs.sqlite`, or `~/.attn/runs.sqlite` without ATTN_HOME."""
    return attn_home() / "runs.sqlite"


# -- schema ----------------------------------------------------------------------------------

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
        env = _loads(env_text)
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


# MIGRATIONS[i] takes the schema from version i to i + 1; append, never edit a released one
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1, _v2)
SCHEMA_VERSION = len(MIGRATIONS)


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
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
            from attn.environment import environment as describe

            environment = describe(spec_dict.get("device"))
        row = (
            kind, variant, _dumps(spec_dict), _dumps(results), _dumps(environment),
            datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            str(label), _dumps([str(tag) for tag in tags]),
            str(environment.get("device") or ""), str(environment.get("device_kind") or ""),
        )
        blob = encode_maps(maps) if maps is not None else None

        def insert(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "INSERT INTO runs (kind, variant, spec, results, environment, created_at, label,"
                " tags, device, device_kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            changes["tags"] = _dumps([str(tag) for tag in tags])
        if not changes:
            return
        assignments = ", ".join(f"{name} = ?" for name in changes)

        def apply(db: sqlite3.Connection) -> int:
            cursor = db.execute(f"UPDATE runs SET {assignments} WHERE id = ?",
                                (*changes.values(), int(run_id)))
            return cursor.rowcount

        if self._write(apply) == 0:
            raise KeyError(f"no run with id {run_id}")

    def delete(self, ids: int | Iterable[int]) -> int:
        """Delete runs (and their maps); ids that do not exist are skipped. Returns how many went."""
        wanted = _ids(ids)

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

        def fetch(db: sqlite3.Connection) -> tuple[Any, Any]:
            row = db.execute(
                "SELECT id, kind, variant, spec, results, environment, created_at, label, tags"
                " FROM runs WHERE id = ?", (int(run_id),),
            ).fetchone()
            maps = db.execute("SELECT format, data FROM run_maps WHERE run_id = ?",
                              (int(run_id),)).fetchone()
            return row, maps

        row, maps_row = self._read(fetch)
        if row is None:
            raise KeyError(f"no run with id {run_id}")
        return Run(
            id=row[0], kind=row[1], variant=row[2], spec=_loads(row[3]), results=_loads(row[4]),
            environment=_loads(row[5]), created_at=row[6], label=row[7], tags=_loads(row[8]),
            maps=decode_maps(maps_row[1], maps_row[0]) if maps_row is not None else None,
        )

    def list(
        self,
        kind: str | None = None,
        variant: str | None = None,
        device: str | None = None,
        limit: int | None = None,
        search: str | None = None,
    ) -> list[RunSummary]:
        """Summaries of the saved runs, newest first.

        `variant` also finds sweeps that include it; `device` is "cpu" or "cuda", or a part of
        the device's name ("H100"); `search` is a part of the label, tags, variant, kind, device
        or spec text, or a run id. Matching ignores case.
        """
        where, params = [], []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
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
            columns = ("label", "tags", "variant", "kind", "device", "spec")
            where.append("(" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in columns)
                         + " OR CAST(id AS TEXT) = ?)")
            params += [pattern] * len(columns) + [search.strip().lstrip("#")]
        sql = ("SELECT id, kind, variant, created_at, device, label, tags, spec, results,"
               " EXISTS (SELECT 1 FROM run_maps WHERE run_id = runs.id) FROM runs")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        rows = self._read(lambda db: db.execute(sql, params).fetchall())
        return [_summary(row) for row in rows]

    def count(self, kind: str | None = None) -> int:
        """How many runs are saved (of one kind, when given)."""
        if kind is None:
            return self._read(lambda db: db.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
        return self._read(
            lambda db: db.execute("SELECT COUNT(*) FROM runs WHERE kind = ?", (kind,)).fetchone()[0]
        )

    def export(self, ids: int | Iterable[int], fmt: str = "json",
               include_maps: bool = True) -> str:
        """Runs as text to download.

        json: one run gives an object, several a list; each is `Run.to_dict()` (maps as nested
        lists unless include_maps is False); NaN and infinities become null.
        csv: one row per run, and one per point for sweeps; columns id, kind, variant, label,
        created_at, device, then `spec.<name>` for the spec and the results flattened with dots
        ("timing.median"). A sweep's row holds its point's numbers and the sweep's other results.
        """
        single = isinstance(ids, int)
        runs = [self.get(run_id) for run_id in _ids(ids)]
        if fmt == "json":
            data = [run.to_dict(include_maps) for run in runs]
            return json.dumps(_finite(data[0] if single else data), indent=2)
        if fmt == "csv":
            return _csv(runs)
        raise ValueError(f"fmt must be 'json' or 'csv', not {fmt!r}")

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
        if "not a database" in message or "malformed" in message:
            raise RunStoreError(
                f"the run store at {self.path} is not a SQLite database: move it aside (or set"
                f" ATTN_HOME to another folder) and attn will start a new store; the file was"
                f" left as it is ({message})"
            ) from error
        if "unable to open" in message:
            raise RunStoreError(f"cannot open the run store at {self.path}: {message}") from error
        raise error


# -- maps: arrays in a compressed blob ------------------------------------------------------

def encode_maps(maps: dict[str, Any]) -> bytes:
    """Maps to bytes: zlib of (header length, JSON header, raw array bytes).

    The header is the maps' structure with each array replaced by {"$array": i}, and the dtype
    and shape of array i. Dataclasses (a PooledMap) are saved as dicts of their fields. Float arrays are stored as float32 (float16 ones as float16): maps
    feed pictures, and float32 keeps the tiny weights a log colour scale shows.
    """
    arrays: list[Any] = []
    tree = _tree(maps, arrays)
    chunks, described = [], []
    for array in arrays:
        described.append({"dtype": array.dtype.str, "shape": list(array.shape)})
        chunks.append(array.tobytes(order="C"))
    header = json.dumps({"tree": tree, "arrays": described}).encode()
    # level 1: float mantissas hardly compress at any level, and level 6 is half as fast again
    return zlib.compress(struct.pack("<I", len(header)) + header + b"".join(chunks), 1)


def decode_maps(data: bytes, fmt: str = MAPS_FORMAT) -> dict[str, Any]:
    """The inverse of `encode_maps`: arrays come back as writable numpy arrays."""
    import numpy as np

    if fmt != MAPS_FORMAT:
        raise RunStoreError(f"maps saved as {fmt!r}, which this attn cannot read: upgrade attn")
    raw = zlib.decompress(data)
    (size,) = struct.unpack_from("<I", raw)
    header = json.loads(raw[4:4 + size])
    arrays, offset = [], 4 + size
    for described in header["arrays"]:
        dtype = np.dtype(described["dtype"])
        count = math.prod(described["shape"])
        array = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
        arrays.append(array.reshape(described["shape"]).astype(dtype.newbyteorder("="), copy=True))
        offset += count * dtype.itemsize
    return _untree(header["tree"], arrays)


def _tree(value: Any, arrays: list[Any]) -> Any:
    if isinstance(value, dict):
        return {str(key): _tree(item, arrays) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_tree(item, arrays) for item in value]
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if is_dataclass(value) and not isinstance(value, type):
        # a PooledMap and the like: walked field by field, so its arrays stay binary
        return _tree({f.name: getattr(value, f.name) for f in fields(value)}, arrays)
    if hasattr(value, "detach"):  # a torch tensor, without importing torch here
        value = value.detach().cpu().numpy()
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"maps can hold numeric arrays only, not {array.dtype} ones")
    if array.dtype.kind == "f" and array.dtype != np.float16:
        array = array.astype(np.float32)
    arrays.append(np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"))))
    return {"$array": len(arrays) - 1}


def _untree(value: Any, arrays: list[Any]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$array"}:
            return arrays[value["$array"]]
        return {key: _untree(item, arrays) for key, item in value.items()}
    if isinstance(value, list):
        return [_untree(item, arrays) for item in value]
    return value


# -- helpers for rows, JSON and CSV ---------------------------------------------------------

def _dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default)


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else {}


def _json_default(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot save a {type(value).__name__} in a run: {value!r}")


def _plain(value: Any) -> Any:
    """Maps as JSON-ready data: arrays to nested lists."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _finite(value: Any) -> Any:
    """NaN and infinities to None: strict JSON readers refuse them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _ids(ids: int | Iterable[int]) -> list[int]:
    return [int(ids)] if isinstance(ids, int) else [int(run_id) for run_id in ids]


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _is_busy(error: sqlite3.OperationalError) -> bool:
    message = str(error).lower()
    return "locked" in message or "busy" in message


def _key_number(results: dict[str, Any], name: str) -> float | None:
    """A key number from results: at the top level or one level down (results["timing"]).

    A dict in its place ({"median": ..., "p10": ...}) gives its median.
    """
    places = [results] + [value for value in results.values() if isinstance(value, dict)]
    for place in places:
        value = place.get(name)
        if isinstance(value, dict):
            value = value.get("median")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def _summary(row: tuple[Any, ...]) -> RunSummary:
    run_id, kind, variant, created_at, device, label, tags, spec, results, has_maps = row
    results_dict = _loads(results)
    points = results_dict.get("points")
    return RunSummary(
        id=run_id, kind=kind, variant=variant, created_at=created_at, device=device,
        label=label, tags=_loads(tags), spec_short=spec_short(_loads(spec)),
        **{name: _key_number(results_dict, name) for name in KEY_NUMBERS},
        points=len(points) if isinstance(points, list) else None, has_maps=bool(has_maps),
    )


# spec fields in the order a short description names them, with their prefixes
_SHORT = (("model", ""), ("batch", "B"), ("seq", "S"), ("kv_seq", "KV"), ("heads", "H"),
          ("head_dim", "D"))


def spec_short(spec: dict[str, Any]) -> str:
    """A spec in a few characters: "B1 S1024 KV2048 H8/2 D64 float16 causal"."""
    parts = []
    for name, prefix in _SHORT:
        value = spec.get(name)
        if value is None or (name == "kv_seq" and value == spec.get("seq")):
            continue
        text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        if name == "heads" and spec.get("kv_heads") not in (None, value):
            text += f"/{spec['kv_heads']}"
        parts.append(prefix + text)
    if spec.get("dtype"):
        parts.append(str(spec["dtype"]))
    if spec.get("causal"):
        parts.append("causal")
    if not parts:  # a spec of some other shape: its first few fields
        parts = [f"{key}={value}" for key, value in list(spec.items())[:4]]
    return " ".join(parts)


def _flatten(value: Any, prefix: str, into: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), into)
    elif isinstance(value, list):
        # lists stay whole in one cell; a spreadsheet can still read them
        into[prefix] = json.dumps(value, default=_json_default)
    else:
        into[prefix] = "" if value is None else value


def _csv(runs: list[Run]) -> str:
    rows: list[dict[str, Any]] = []
    for run in runs:
        base = {"id": run.id, "kind": run.kind, "variant": run.variant or "", "label": run.label,
                "created_at": run.created_at, "device": run.device}
        _flatten(run.spec, "spec", base)
        results = dict(run.results)
        points = results.pop("points", None) if run.kind == "sweep" else None
        _flatten(results, "", base)
        if isinstance(points, list) and points:
            for index, point in enumerate(points):
                row = dict(base, point=index)
                _flatten(point, "", row)
                rows.append(row)
        else:
            rows.append(base)
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
