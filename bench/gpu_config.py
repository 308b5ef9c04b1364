"""What bench.gpu runs: the sizes of every section on a CUDA GPU, and the tiny ones of its dry
run on the CPU. No CUDA here: importable and testable anywhere."""
from __future__ import annotations

from dataclasses import dataclass

from attn.cost import attention_cost
from attn.spec import AttentionSpec


@dataclass(frozen=True)
class Config:
    device: str
    dtype: str
    batch: int
    heads: int
    head_dim: int
    seqs: tuple[int, ...]
    budget_s: float
    error_tolerance: float
    # train: forward + backward, causal, at these lengths; the sliding window's width
    train_seqs: tuple[int, ...]
    train_window: int
    # decode: one new token against these cache lengths, at these batch sizes; the sliding
    # window's width; the key/value heads of the grouped-query case
    decode_contexts: tuple[int, ...]
    decode_batches: tuple[int, ...]
    decode_window: int
    gqa_kv_heads: int
    oom_seqs: tuple[int, ...]
    oom_fraction: float | None  # CUDA: cap the allocator to this share of the device
    oom_budget_bytes: int | None = None  # CPU (dry run): the sweep's memory budget instead

    def spec(self, seq: int, causal: bool, **changes) -> AttentionSpec:
        return AttentionSpec(batch=self.batch, heads=self.heads, head_dim=self.head_dim, seq=seq,
                             dtype=self.dtype, causal=causal, device=self.device).with_(**changes)


def gpu_config(budget_s: float = 0.2) -> Config:
    # train at 8192: dense keeps two B*H*S*S bf16 matrices (17 GB) and its backward two more,
    # within an H100's 80 GB. Decode at 128k, batch 8, 16 KV heads: an 8.6 GB cache, and its
    # float64 copy for the error check 34 GB more.
    return Config(device="cuda", dtype="bfloat16", batch=4, heads=16, head_dim=128,
                  seqs=(1024, 2048, 4096, 8192, 16384), budget_s=budget_s, error_tolerance=1e-2,
                  train_seqs=(1024, 2048, 4096, 8192), train_window=256,
                  decode_contexts=(4096, 8192, 16384, 32768, 65536, 131072), decode_batches=(1, 8),
                  decode_window=4096, gqa_kv_heads=4,
                  oom_seqs=(2048, 4096, 8192, 16384, 32768), oom_fraction=0.25)


def dry_run_config(budget_s: float = 0.02) -> Config:
    # four heads, so that grouped-query (2 KV heads) differs from multi-query (1)
    heads = 4
    # the sweep's budget lets both variants run at 64 and 128 and refuses 256
    at_128 = AttentionSpec(batch=1, heads=heads, head_dim=16, seq=128, dtype="bfloat16")
    budget = max(attention_cost(at_128, name).peak_bytes for name in ("dense", "topk"))
    return Config(device="cpu", dtype="bfloat16", batch=1, heads=heads, head_dim=16,
                  seqs=(64, 128), budget_s=budget_s, error_tolerance=1e-2,
                  train_seqs=(64, 128), train_window=32,
                  decode_contexts=(128, 256), decode_batches=(1, 2), decode_window=64,
                  gqa_kv_heads=2,
                  oom_seqs=(64, 128, 256, 512), oom_fraction=None, oom_budget_bytes=budget)
