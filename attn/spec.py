"""AttentionSpec: every size of one attention call, validated with messages a person can act on.

Nothing here imports torch, so the UI and the cost model can build and check specs cheaply.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

# bytes per element; the names are torch's dtype names
DTYPE_BYTES = {"float64": 8, "float32": 4, "bfloat16": 2, "float16": 2}
CAUSAL_ALIGNS = ("bottom_right", "top_left")
DEVICES = ("cpu", "cuda", "auto")
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class AttentionSpec:
    """One attention call: sizes, dtype, mask, device, and the parameters of every variant.

    `kv_seq`, `kv_heads` and `d_model` default to `seq`, `heads` and `heads * head_dim`.
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
    # variant parameters; each variant reads only its own
    backend: str = "auto"  # sdpa: auto | flash | efficient | cudnn | math
    window: int = 256  # sliding_window
    block: int = 64  # block_sparse
    n_global: int = 1  # block_sparse: global blocks at the start of the sequence
    n_random: int = 1  # block_sparse: random key blocks per query block
    top_k: int = 32  # topk
    features: int = 256  # performer
    rank: int = 128  # linformer

    def __post_init__(self) -> None:
        if self.kv_seq is None:
            object.__setattr__(self, "kv_seq", self.seq)
        if self.kv_heads is None:
            object.__setattr__(self, "kv_heads", self.heads)
        if self.d_model is None:
            object.__setattr__(self, "d_model", self.heads * self.head_dim)
        _validate(self)

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
        """A copy with some fields changed, validated again."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AttentionSpec":
        """Build from a dict, ignoring keys this version does not know (old saved runs)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


INT_FIELDS = ("batch", "seq", "heads", "head_dim", "kv_seq", "kv_heads", "d_model", "window",
              "block", "top_k", "features", "rank")


def _validate(spec: AttentionSpec) -> None:
    for name in INT_FIELDS:
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be a whole number, got {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    for name in ("n_global", "n_random", "seed"):
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
    if spec.seed > MAX_SEED:  # torch's generators take a signed 64-bit seed
        raise ValueError(f"seed must be at most {MAX_SEED}, got {spec.seed}")
    if spec.heads % spec.kv_heads:
        raise ValueError(
            f"heads ({spec.heads}) must be a multiple of kv_heads ({spec.kv_heads}): "
            f"try kv_heads in {divisors(spec.heads)}")
    if spec.dtype not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {spec.dtype!r}: choose one of {', '.join(DTYPE_BYTES)}")
    if spec.causal_align not in CAUSAL_ALIGNS:
        raise ValueError(
            f"unknown causal_align {spec.causal_align!r}: choose {' or '.join(CAUSAL_ALIGNS)}")
    if spec.device not in DEVICES and not spec.device.startswith("cuda:"):
        raise ValueError(f"unknown device {spec.device!r}: choose cpu, cuda or auto")
    if not isinstance(spec.causal, bool):
        raise ValueError(f"causal must be true or false, got {spec.causal!r}")


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]
