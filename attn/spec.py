"""AttentionSpec: every size of one attention call, validated with messages a person can act on.

Nothing here imports torch, so the UI and the cost model can build and check specs cheaply.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Iterable, Mapping

from attn import params as declared_params

# bytes per element; the names are torch's dtype names
DTYPE_BYTES = {"float64": 8, "float32": 4, "bfloat16": 2, "float16": 2}
CAUSAL_ALIGNS = ("bottom_right", "top_left")
DEVICES = ("cpu", "cuda", "auto")
MAX_SEED = 2**63 - 1


@dataclass(frozen=True, init=False)
class AttentionSpec:
    """One attention call: the sizes every variant shares, dtype, mask, device and seed, and the
    variants' own parameters, which each variant declares in its module (attn/params.py) and
    reads as an attribute (`spec.window`).

    `kv_seq`, `kv_heads` and `d_model` default to `seq`, `heads` and `heads * head_dim`.
    Variant parameters are given as keywords (`AttentionSpec(seq=4096, window=128)`); `params`
    keeps those that differ from their declared defaults, so equal specs compare and hash alike.
    Frozen and hashable, so a spec can key a cache.
    """

    batch: int = 1
    seq: int = 512
    heads: int = 8
    head_dim: int = 64
    kv_seq: int | None = None
    kv_heads: int | None = None
    d_model: int | None = None
    dtype: str = "float32"
    causal: bool = False
    # bottom_right: the last query sees every key (decoding with a KV cache);
    # top_left: query i sees keys 0..i (what torch's is_causal does)
    causal_align: str = "bottom_right"
    device: str = "cpu"
    seed: int = 0
    # (name, value) of the variant parameters that differ from their defaults, sorted by name
    params: tuple[tuple[str, Any], ...] = ()

    def __init__(self, batch: int = 1, seq: int = 512, heads: int = 8, head_dim: int = 64,
                 kv_seq: int | None = None, kv_heads: int | None = None, d_model: int | None = None,
                 dtype: str = "float32", causal: bool = False, causal_align: str = "bottom_right",
                 device: str = "cpu", seed: int = 0,
                 params: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
                 **variant_params: Any) -> None:
        put = object.__setattr__  # frozen
        put(self, "batch", batch)
        put(self, "seq", seq)
        put(self, "heads", heads)
        put(self, "head_dim", head_dim)
        put(self, "kv_seq", seq if kv_seq is None else kv_seq)
        put(self, "kv_heads", heads if kv_heads is None else kv_heads)
        if d_model is None and _whole(heads) and _whole(head_dim):
            d_model = heads * head_dim
        put(self, "d_model", d_model)
        put(self, "dtype", dtype)
        put(self, "causal", causal)
        put(self, "causal_align", causal_align)
        put(self, "device", device)
        put(self, "seed", seed)
        _validate(self)
        put(self, "params", _normalised({**dict(params), **variant_params}))

    def __getattr__(self, name: str) -> Any:
        """A variant parameter: its value in this spec, else its declared default."""
        if name.startswith("__"):
            raise AttributeError(name)
        param = declared_params.get(name)
        for key, value in object.__getattribute__(self, "params"):
            if key == name:
                # a spec made before its variant was imported could not check this value then
                return value if param is None else param.check(value)
        if param is None:
            raise AttributeError(f"AttentionSpec has no field or declared variant parameter {name!r}")
        return param.default

    # -- derived sizes -------------------------------------------------------------------------
    @property
    def groups(self) -> int:
        """Query heads that share one key/value head (1 without GQA; `heads` for MQA)."""
        return self.heads // self.kv_heads

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def position_offset(self) -> int:
        """Position of query 0 on the key axis: what the causal and local masks compare against."""
        return self.kv_seq - self.seq if self.causal_align == "bottom_right" else 0

    def with_(self, **changes: Any) -> "AttentionSpec":
        """A copy with some fields or variant parameters changed, validated again."""
        shared = {name: getattr(self, name) for name in SHARED_FIELDS}
        variant = dict(self.params)
        for name, value in changes.items():
            (shared if name in SHARED_FIELDS else variant)[name] = value
        return AttentionSpec(**shared, params=variant)

    def param_values(self) -> dict[str, Any]:
        """Every declared variant parameter's value in this spec (defaults included), and any
        given parameter that no imported variant declares."""
        defaults = {name: p.default for name, p in declared_params.declared().items()}
        return {**defaults, **dict(self.params)}

    def to_dict(self) -> dict[str, Any]:
        """Flat: the shared fields and every variant parameter, as saved runs and links keep them."""
        return {**{name: getattr(self, name) for name in SHARED_FIELDS}, **self.param_values()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AttentionSpec":
        """Build from a flat dict (or one with a nested "params"). Keys this version does not know
        are ignored: old saved runs, a variant that is no longer installed."""
        shared = {k: v for k, v in data.items() if k in SHARED_FIELDS}
        rest = {k: v for k, v in data.items() if k not in SHARED_FIELDS and k != "params"}
        rest.update(dict(data.get("params") or {}))
        known = declared_params.declared()
        if known:
            variant = {k: v for k, v in rest.items() if k in known}
        else:  # nothing imported declares parameters yet: keep the plain values as given
            variant = {k: v for k, v in rest.items() if isinstance(v, (bool, int, float, str))}
        return cls(**shared, params=variant)


SHARED_FIELDS = tuple(f.name for f in fields(AttentionSpec) if f.name != "params")
INT_FIELDS = ("batch", "seq", "heads", "head_dim", "kv_seq", "kv_heads", "d_model")


def _normalised(given: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Variant parameters validated against their declarations, defaults dropped, sorted by name.
    Before any variant is imported nothing is declared; the values are then kept as given, and
    checked when a spec is made again once they are."""
    known = declared_params.declared()
    kept = {}
    for name, value in given.items():
        param = known.get(name)
        if param is not None:
            param.check(value)
            if value == param.default and type(value) is type(param.default):
                continue
        elif known:
            raise ValueError(f"unknown spec parameter {name!r}: the variants take "
                             f"{', '.join(known)}")
        kept[name] = value
    return tuple(sorted(kept.items()))


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate(spec: AttentionSpec) -> None:
    for name in INT_FIELDS:
        value = getattr(spec, name)
        if not _whole(value):
            raise ValueError(f"{name} must be a whole number, got {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if isinstance(spec.seed, bool) or not isinstance(spec.seed, int) or spec.seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {spec.seed!r}")
    if spec.seed > MAX_SEED:  # torch's generators take a signed 64-bit seed
        raise ValueError(f"seed must be at most {MAX_SEED}, got {spec.seed}")
    if spec.heads % spec.kv_heads:
        hint = f"try kv_heads in {divisors(spec.heads)}" if divisors(spec.heads) else "choose a divisor"
        raise ValueError(f"heads ({spec.heads}) must be a multiple of kv_heads ({spec.kv_heads}): {hint}")
    if spec.dtype not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {spec.dtype!r}: choose one of {', '.join(DTYPE_BYTES)}")
    if spec.causal_align not in CAUSAL_ALIGNS:
        raise ValueError(
            f"unknown causal_align {spec.causal_align!r}: choose {' or '.join(CAUSAL_ALIGNS)}")
    if not isinstance(spec.device, str) or (spec.device not in DEVICES and not spec.device.startswith("cuda:")):
        raise ValueError(f"unknown device {spec.device!r}: choose cpu, cuda or auto")
    if not isinstance(spec.causal, bool):
        raise ValueError(f"causal must be true or false, got {spec.causal!r}")


# divisors are listed up to here: trial division of 10^30 heads would not finish
MAX_LISTED_DIVISORS_OF = 1 << 16


def divisors(n: int) -> list[int]:
    """The divisors of n; an empty list past MAX_LISTED_DIVISORS_OF (no model has that many heads)."""
    if n > MAX_LISTED_DIVISORS_OF:
        return []
    return [d for d in range(1, n + 1) if n % d == 0]
