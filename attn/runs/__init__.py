"""Saved runs: every profile, sweep, model run and map, in one SQLite file under ATTN_HOME.

    store = RunStore()                                   # ~/.attn/runs.sqlite
    run_id = store.save("profile", spec, prof.to_dict(), variant="sdpa")
    store.list(kind="sweep"); store.get(run_id); store.export([1, 2], fmt="csv")

The store and its transactions are in `store.py`, the schema's versions in `schema.py`, what a
run is (and its JSON) in `records.py`, maps' arrays in `maps_blob.py`, downloads in `export.py`.
"""
from attn.runs.records import KINDS, Run, RunStoreError, RunSummary, spec_short
from attn.runs.schema import SCHEMA_VERSION
from attn.runs.store import RunStore, default_path

__all__ = ["KINDS", "SCHEMA_VERSION", "Run", "RunStore", "RunStoreError", "RunSummary", "default_path",
           "spec_short"]
