"""The train and decode regimes on this CPU against issue 14's targets, at B=1, H=8, D=64, float32.

Targets:
- train, causal, seq 2048 and 4096, dense and sdpa: what the forward keeps for the backward
  (autograd's saved tensors beyond q, k, v) over the cost model's `saved_bytes`, and the step's
  measured peak (the profile's peak_bytes of forward + backward) over its `step_bytes`, each
  within 15%; dense's saved bytes over sdpa's at 4096 at least 10x.
- decode, one new token, contexts 1k..32k: sdpa's step over its bandwidth floor (bytes read over
  the calibrated copy bandwidth) within 2x from 8k up; linear at 32k at least 20x faster than
  sdpa at 32k; linear at 32k within 1.5x of linear at 1k; sdpa with 2 KV heads at least 3x
  faster than with 8 KV heads at 32k.

Every ratio comes from this one run: the calibration is measured again first (so the floor and
the steps share the machine's state), and the profiles a ratio compares run one after another.
Memory is counted, not timed, so the load does not move it; latencies are medians of
torch.utils.benchmark blocks over the budget (generous, for stable medians). The machine's load
(load average, and CPU busy % over one second) is printed before and after.

    python -m bench.regimes_cpu [--json OUT] [--threads N] [--train-budget 2] [--decode-budget 2]
                                [--quick]                                  (from the repo root)

--quick is a smoke run at tiny sizes and budgets (a minute or less): its verdicts say the
script works, not whether the targets are met.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace

import psutil
import torch

from attn import calibrate
from attn.device import cpu_name
from attn.measure import profile
from attn.regimes import decode_spec
from attn.spec import AttentionSpec

from bench.tables import f, markdown, mib, ratio

WITHIN = 0.15  # measured memory within 15% of the cost model's
DENSE_OVER_SDPA_SAVED = 10.0
FLOOR_MULTIPLE = 2.0
LINEAR_OVER_SDPA = 20.0
LINEAR_FLAT = 1.5
GQA_SPEEDUP = 3.0


@dataclass(frozen=True)
class Sizes:
    train_seqs: tuple[int, ...]  # the last is where dense's saved bytes are set against sdpa's
    contexts: tuple[int, ...]  # the first and the last are linear's two ends
    floor_from: int  # sdpa's floor target holds from this context up
    heads: int
    kv_heads_gqa: int
    train_budget_s: float
    decode_budget_s: float


FULL = Sizes(train_seqs=(2048, 4096), contexts=(1024, 2048, 4096, 8192, 16384, 32768),
             floor_from=8192, heads=8, kv_heads_gqa=2, train_budget_s=2.0, decode_budget_s=2.0)
QUICK = Sizes(train_seqs=(128, 256), contexts=(256, 512, 1024, 2048), floor_from=1024,
              heads=8, kv_heads_gqa=2, train_budget_s=0.02, decode_budget_s=0.02)


def base_spec(sizes: Sizes, seq: int) -> AttentionSpec:
    return AttentionSpec(batch=1, heads=sizes.heads, head_dim=64, seq=seq, dtype="float32",
                         causal=True, device="cpu")


def machine_load() -> dict:
    """The 1, 5 and 15 minute load averages and the CPUs' busy % over the next second."""
    return {"load_average": [round(x, 2) for x in os.getloadavg()],
            "cpu_percent": psutil.cpu_percent(interval=1.0)}


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the measurements ---------------------------------------------------------------------------
def train_rows(sizes: Sizes) -> list[dict]:
    rows = []
    for seq in sizes.train_seqs:
        for name in ("dense", "sdpa"):
            prof = profile(base_spec(sizes, seq), name, device="cpu", budget_s=sizes.train_budget_s,
                           mode="train")
            cost = prof.cost  # attention_cost(spec, name, "train")
            rows.append({
                "variant": name, "seq": seq, "backend": prof.backend,
                "saved_bytes": prof.saved_bytes, "saved_predicted": cost["saved_bytes"],
                "saved_ratio": ratio(prof.saved_bytes, cost["saved_bytes"]),
                "peak_bytes": prof.peak_bytes, "step_predicted": cost["step_bytes"],
                "peak_ratio": ratio(prof.peak_bytes, cost["step_bytes"]),
                "forward_ms": prof.forward_ms, "backward_ms": prof.backward_ms,
                "grad_error": prof.grad_error})
            progress(f"train {name} seq {seq}: saved x{rows[-1]['saved_ratio']:.2f}, peak "
                     f"x{rows[-1]['peak_ratio']:.2f} of predicted")
    return rows


def decode_row(sizes: Sizes, name: str, context: int, kv_heads: int) -> dict:
    spec = decode_spec(base_spec(sizes, context).with_(kv_heads=kv_heads), context)
    prof = profile(spec, name, device="cpu", budget_s=sizes.decode_budget_s, mode="decode")
    row = {"variant": name, "kv_heads": kv_heads, "context": context, "backend": prof.backend,
           "per_token_ms": prof.per_token_ms, "p10_ms": prof.p10_ms, "p90_ms": prof.p90_ms,
           "bytes_read": prof.bytes_read, "achieved_gbps": prof.achieved_gbps,
           "floor_ms": prof.floor_ms, "vs_floor": ratio(prof.latency_ms, prof.floor_ms),
           "kernel_error": prof.kernel_error}
    progress(f"decode {name} kv_heads {kv_heads} context {context}: {prof.per_token_ms:.4f} ms/token")
    return row


def decode_rows(sizes: Sizes) -> list[dict]:
    """sdpa and linear at every context, one after the other; at the longest, sdpa with fewer
    KV heads right after sdpa with all of them."""
    rows = []
    for context in sizes.contexts:
        rows.append(decode_row(sizes, "sdpa", context, sizes.heads))
        if context == sizes.contexts[-1]:
            rows.append(decode_row(sizes, "sdpa", context, sizes.kv_heads_gqa))
        rows.append(decode_row(sizes, "linear", context, sizes.heads))
    return rows


# -- the targets ----------------------------------------------------------------------------------
def verdict(target: str, measured: float | None, met: bool | None) -> dict:
    return {"target": target, "measured": measured, "met": met}


def targets(sizes: Sizes, train: list[dict], decode: list[dict]) -> list[dict]:
    out = []
    for r in train:
        for key, what, predicted in (("saved_ratio", "saved", "saved_bytes"),
                                     ("peak_ratio", "step peak", "step_bytes")):
            value = r[key]
            out.append(verdict(f"train {r['variant']} seq {r['seq']}: measured {what} / {predicted} "
                               f"within {WITHIN:.0%}", value,
                               None if value is None else abs(value - 1) <= WITHIN))
    longest = sizes.train_seqs[-1]
    saved = {r["variant"]: r["saved_bytes"] for r in train if r["seq"] == longest}
    value = ratio(saved["dense"], saved["sdpa"])
    out.append(verdict(f"train seq {longest}: dense saved / sdpa saved >= {DENSE_OVER_SDPA_SAVED:g}x",
                       value, None if value is None else value >= DENSE_OVER_SDPA_SAVED))

    def ms(name: str, context: int, kv_heads: int) -> float:
        return next(r["per_token_ms"] for r in decode
                    if (r["variant"], r["context"], r["kv_heads"]) == (name, context, kv_heads))
    for r in decode:
        if r["variant"] == "sdpa" and r["kv_heads"] == sizes.heads and r["context"] >= sizes.floor_from:
            value = r["vs_floor"]
            out.append(verdict(f"decode sdpa context {r['context']}: step / bandwidth floor <= "
                               f"{FLOOR_MULTIPLE:g}x", value,
                               None if value is None else value <= FLOOR_MULTIPLE))
    first, last = sizes.contexts[0], sizes.contexts[-1]
    value = ms("sdpa", last, sizes.heads) / ms("linear", last, sizes.heads)
    out.append(verdict(f"decode context {last}: sdpa / linear >= {LINEAR_OVER_SDPA:g}x", value,
                       value >= LINEAR_OVER_SDPA))
    value = ms("linear", last, sizes.heads) / ms("linear", first, sizes.heads)
    out.append(verdict(f"decode linear: context {last} / context {first} within {LINEAR_FLAT:g}x",
                       value, max(value, 1 / value) <= LINEAR_FLAT))
    value = ms("sdpa", last, sizes.heads) / ms("sdpa", last, sizes.kv_heads_gqa)
    out.append(verdict(f"decode sdpa context {last}: {sizes.heads} KV heads / {sizes.kv_heads_gqa} "
                       f"KV heads >= {GQA_SPEEDUP:g}x", value, value >= GQA_SPEEDUP))
    return out


# -- the report ---------------------------------------------------------------------------------
def report(result: dict) -> str:
    info = result["info"]
    before, after = info["load_before"], info["load_after"]
    load = (f"load average {before['load_average'][0]} before, {after['load_average'][0]} after; "
            f"CPUs busy {before['cpu_percent']:.0f}% before, {after['cpu_percent']:.0f}% after")
    out = [f"torch {info['torch']}, {info['threads']} threads, {info['cpus']} CPUs ({info['cpu']}), "
           f"python {info['python']}; B=1 H={result['sizes']['heads']} D=64 float32; budgets "
           f"{result['sizes']['train_budget_s']} s (train) and {result['sizes']['decode_budget_s']} s "
           f"(decode) a profile; calibrated copy bandwidth {info['bandwidth_gbps']:.1f} GB/s; {load}; "
           f"{info['seconds']:.0f} s"]
    if result["quick"]:
        out.append("\nquick smoke run at tiny sizes: the verdicts say the script works, not whether "
                   "the targets are met")
    out += ["", "### Train (forward + backward, causal)", markdown(result["train"], [
        ("variant", "variant", str), ("seq", "seq", str), ("backend", "backend", str),
        ("saved_bytes", "saved MiB", mib), ("saved_predicted", "predicted", mib),
        ("saved_ratio", "saved / predicted", f(".3f")), ("peak_bytes", "step peak MiB", mib),
        ("step_predicted", "predicted", mib), ("peak_ratio", "peak / predicted", f(".3f")),
        ("forward_ms", "forward ms", f(".1f")), ("backward_ms", "backward ms", f(".1f")),
        ("grad_error", "grad err", f(".1e"))])]
    out += ["", "### Decode (one new token, batch 1)", markdown(result["decode"], [
        ("variant", "variant", str), ("kv_heads", "KV heads", str), ("context", "context", str),
        ("backend", "backend", str), ("per_token_ms", "ms / token", f(".4f")),
        ("p10_ms", "p10", f(".4f")), ("p90_ms", "p90", f(".4f")), ("bytes_read", "MiB read", mib),
        ("achieved_gbps", "GB/s", f(".1f")), ("floor_ms", "floor ms", f(".4f")),
        ("vs_floor", "ms / floor", f(".2f")), ("kernel_error", "kernel err", f(".1e"))])]
    out += ["", "### Targets", markdown(result["targets"], [
        ("target", "target", str), ("measured", "measured", f(".3g")),
        ("met", "met", lambda v: "yes" if v else "NO")])]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run at tiny sizes")
    parser.add_argument("--train-budget", type=float, help="seconds of repeats a train profile")
    parser.add_argument("--decode-budget", type=float, help="seconds of repeats a decode profile")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = QUICK if args.quick else FULL
    if args.train_budget:
        sizes = replace(sizes, train_budget_s=args.train_budget)
    if args.decode_budget:
        sizes = replace(sizes, decode_budget_s=args.decode_budget)

    started = time.perf_counter()
    load_before = machine_load()
    cal = calibrate.calibrate("cpu", force=True)  # the floor measured in the same state as the steps
    train = train_rows(sizes)
    decode = decode_rows(sizes)
    info = {"torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "cpu": cpu_name(),
            "bandwidth_gbps": cal.bandwidth_gbps, "load_before": load_before,
            "load_after": machine_load(), "seconds": time.perf_counter() - started,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    result = {"quick": args.quick, "sizes": asdict(sizes), "info": info, "train": train,
              "decode": decode, "targets": targets(sizes, train, decode)}
    print(report(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1)
    return result


if __name__ == "__main__":
    main()
