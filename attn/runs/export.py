"""Runs as text to download: JSON (one object per run, maps as nested lists) or CSV (one row per
run, one per point for sweeps and one per check for self-tests). Both name each run's mode (forward, train or decode; forward for
runs saved before the regimes), so a file read later says what regime its numbers are of."""
from __future__ import annotations

import csv
import io
import json
from typing import Any

from attn.runs.records import Run, finite, json_default


def export_runs(runs: Run | list[Run], fmt: str = "json", include_maps: bool = True) -> str:
    """One run, or a list of runs, as JSON or CSV text (see `RunStore.export`)."""
    single = isinstance(runs, Run)
    if fmt == "json":
        data = runs.to_dict(include_maps) if single else [run.to_dict(include_maps) for run in runs]
        return json.dumps(finite(data), indent=2)
    if fmt == "csv":
        return runs_csv([runs] if single else runs)
    raise ValueError(f"fmt must be 'json' or 'csv', not {fmt!r}")


def _flatten(value: Any, prefix: str, into: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), into)
    elif isinstance(value, list):
        # lists stay whole in one cell; a spreadsheet can still read them
        into[prefix] = json.dumps(value, default=json_default)
    else:
        into[prefix] = "" if value is None else value


def runs_csv(runs: list[Run]) -> str:
    rows: list[dict[str, Any]] = []
    for run in runs:
        base = {"id": run.id, "kind": run.kind, "mode": run.mode, "variant": run.variant or "",
                "label": run.label,
                "created_at": run.created_at, "device": run.device}
        _flatten(run.spec, "spec", base)
        results = dict(run.results)
        # a sweep's points and a self-test's checks are a row each
        points = results.pop({"sweep": "points", "selftest": "checks"}.get(run.kind, "points"), None) \
            if run.kind in ("sweep", "selftest") else None
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
