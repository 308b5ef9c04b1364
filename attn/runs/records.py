"""What a saved run is: `Run` (everything) and `RunSummary` (one line of a list), the short form
of a spec, and the JSON conversions every column of the store goes through."""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from attn.home import AttnHomeError

# a kind is a label, not a constraint of the schema: a new one needs no migration
KINDS = ("profile", "sweep", "model", "maps", "plan", "selftest")
# a run saved before the regimes (issue #14) has no mode: it measured one forward call
MODE_ABSENT = "forward"
# the key numbers a run list shows, looked up in a run's results (see `_key_number`)
KEY_NUMBERS = ("latency_ms", "flops", "peak_bytes", "achieved_tflops")


class RunStoreError(AttnHomeError):
    """The store's file cannot be used as it is (not a database, from a newer attn, or where
    there is no room or no access)."""


@dataclass
class Run:
    """One saved run, as `RunStore.get` returns it."""

    id: int
    kind: str  # profile | sweep | model | maps | plan
    variant: str | None  # for sweeps: the variants as a comma list
    spec: dict[str, Any]
    results: dict[str, Any]
    environment: dict[str, Any]
    created_at: str  # UTC, ISO 8601
    label: str = ""
    tags: list[str] = field(default_factory=list)
    maps: dict[str, Any] | None = None  # pooled maps, arrays as numpy arrays
    # where an imported run came from (attn runs import): source, file, its id there, when;
    # empty for a run measured here
    origin: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> str:
        return str(self.environment.get("device", ""))

    @property
    def mode(self) -> str:
        """forward, train or decode, read from the results (forward when they name none)."""
        return mode_of(self.results)

    def to_dict(self, include_maps: bool = True) -> dict[str, Any]:
        """Plain JSON-ready data: maps' arrays become nested lists."""
        data: dict[str, Any] = {
            "id": self.id, "kind": self.kind, "mode": self.mode, "variant": self.variant,
            "label": self.label,
            "tags": list(self.tags), "created_at": self.created_at, "spec": self.spec,
            "results": self.results, "environment": self.environment,
        }
        if self.origin:
            data["origin"] = self.origin
        if include_maps:
            data["maps"] = plain(self.maps)
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
    mode: str = MODE_ABSENT  # forward | train | decode
    source: str = ""  # an imported run's source (a machine's name or a file's); empty when measured here


def mode_of(results: dict[str, Any]) -> str:
    """The regime a run's results were measured in; runs saved before regimes existed name none
    and were forward calls. Any text is kept as it is, so a newer attn's mode is still shown."""
    mode = results.get("mode") if isinstance(results, dict) else None
    return str(mode) if mode else MODE_ABSENT


# -- JSON ------------------------------------------------------------------------------------

def to_json(value: Any) -> str:
    return json.dumps(value, default=json_default)


def from_json(text: str | None, kind: type = dict, what: str = "a saved run's column") -> Any:
    """A column's JSON, which must be a `kind` (a dict; tags a list); empty reads as an empty one.
    A column edited by hand or by another program that is not: RunStoreError in one line."""
    if not text:
        return kind()
    try:
        value = json.loads(text)
    except (ValueError, TypeError) as error:
        raise RunStoreError(f"{what} is not JSON ({error}): delete the run or restore the file") from None
    if not isinstance(value, kind):
        raise RunStoreError(f"{what} is a JSON {type(value).__name__}, not {'a list' if kind is list else 'an object'}:"
                            " delete the run or restore the file")
    return value


def lenient_json(text: str | None, kind: type = dict) -> Any:
    """from_json, with an unreadable column read as an empty one: a list of runs or a migration
    goes on past one damaged run (opening that run says what is wrong with it)."""
    try:
        return from_json(text, kind)
    except RunStoreError:
        return kind()


def json_default(value: Any) -> Any:
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


def plain(value: Any) -> Any:
    """Maps as JSON-ready data: arrays to nested lists."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def finite(value: Any) -> Any:
    """NaN and infinities to None: strict JSON readers refuse them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite(item) for item in value]
    return value


# -- summaries ------------------------------------------------------------------------------

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


def summary_from_row(row: tuple[Any, ...]) -> RunSummary:
    run_id, kind, variant, created_at, device, label, tags, spec, results, has_maps, mode, *rest = row
    origin = lenient_json(rest[0]) if rest and rest[0] else {}
    results_dict = lenient_json(results)
    points = results_dict.get("points")
    return RunSummary(
        id=run_id, kind=kind, variant=variant, created_at=created_at, device=device,
        label=label, tags=lenient_json(tags, list), spec_short=spec_short(lenient_json(spec)),
        **{name: _key_number(results_dict, name) for name in KEY_NUMBERS},
        points=len(points) if isinstance(points, list) else None, has_maps=bool(has_maps),
        mode=mode or MODE_ABSENT, source=str(origin.get("source") or "") if isinstance(origin, dict) else "",
    )


def run_uid(kind: str, variant: str | None, spec: str, results: str, environment: str, created_at: str) -> str:
    """A run's identity on every machine: a digest of what it is, as stored (kind, variant, spec,
    results, environment and the moment it was saved; not the label or tags, which a user edits).
    The same run merged twice, or through two ledgers, has one uid, and no machine hands them out."""
    text = json.dumps([kind, variant, spec, results, environment, created_at])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


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
