"""Figures measured on an NVIDIA H100 by attn's anchor run, copied here so the story can put an
H100 beside this device. Not measured by this installation: the page and the report say so.

Source: the anchor run "h100-sdpa-baseline" on one NVIDIA H100 80GB HBM3 (SXM), torch 2.11.0+cu130,
2026-11-24: a bf16 8192³ matmul rate, the device's copy bandwidth (bytes read plus written per
second), and attention forward at batch 4, 16 heads of 128, bf16, timed with triton's do_bench
(median), FLOPs = 4·B·H·S²·D, halved for causal.
"""
from __future__ import annotations

SOURCE = ("attn's anchor run on one NVIDIA H100 80GB HBM3, torch 2.11.0+cu130, 2026-11-24 "
          "(triton do_bench medians); not measured here")
DEVICE = "NVIDIA H100 80GB HBM3"
SHAPE = dict(batch=4, heads=16, head_dim=128, dtype="bfloat16", causal=True)
BF16_MATMUL_TFLOPS = 760.9624782049744
COPY_GBPS = 3004.1123459602236
# causal forward, milliseconds, FlashAttention-2 through torch SDPA's flash backend, by length
FLASH_CAUSAL_MS = {512: 0.04022400081157684, 1024: 0.09891200065612793, 2048: 0.2715519964694977,
                   4096: 0.8926239907741547, 8192: 3.322767972946167, 16384: 12.319583892822266}
# the power limit of the H100 SXM (NVIDIA's datasheet): an upper bound on its draw, not a reading
POWER_LIMIT_W = 700.0
POWER_SOURCE = "NVIDIA H100 SXM datasheet: 700 W maximum thermal design power"
