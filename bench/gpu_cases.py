"""What bench.gpu's timing section runs (its cases, and the cases any section is asked for with
--cases), and how a timing row meets the anchors: the independent measurement of the same shape
and implementation. No CUDA here: importable and testable anywhere."""
from __future__ import annotations

from dataclasses import dataclass

from bench import gpu_regimes


@dataclass(frozen=True)
class Case:
    label: str
    variant: str
    changes: tuple[tuple[str, object], ...] = ()
    causal_only: bool = False
    anchor: str | None = None  # the anchors' name for the same implementation


CASES = (
    Case("dense", "dense", anchor="eager"),
    Case("sdpa", "sdpa"),  # auto: compared with the anchor of the backend it chose
    Case("sdpa:flash", "sdpa", (("backend", "flash"),), anchor="flash"),
    Case("sdpa:efficient", "sdpa", (("backend", "efficient"),), anchor="efficient"),
    Case("sdpa:cudnn", "sdpa", (("backend", "cudnn"),), anchor="cudnn"),
    Case("sdpa:math", "sdpa", (("backend", "math"),), anchor="math"),
    Case("sliding_window", "sliding_window", (("window", 256),), anchor="flex_sw256"),
    Case("sliding_window:1024", "sliding_window", (("window", 1024),), causal_only=True,
         anchor="flex_sw1024"),
    Case("block_sparse", "block_sparse"),
    Case("topk", "topk"),
    Case("linear", "linear"),
    Case("performer", "performer"),
    Case("linformer", "linformer"),
)


def case_labels() -> list[str]:
    """Every section's case labels, each once, timing's first."""
    every = CASES + gpu_regimes.TRAIN_CASES + gpu_regimes.DECODE_CASES
    return list(dict.fromkeys(c.label for c in every))


def select_cases(labels: str | None, cases: tuple = CASES) -> tuple:
    """The cases of one section named in `labels` (all of them when none are named); a label
    that no section has is refused."""
    if not labels:
        return cases
    wanted = labels.split(",")
    unknown = [x for x in wanted if x not in case_labels()]
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}: choose from {', '.join(case_labels())}")
    known = {c.label: c for c in cases}
    return tuple(known[x] for x in wanted if x in known)


def anchor_index(anchors: dict) -> dict[tuple[int, bool, str], dict]:
    return {(int(r["S"]), bool(r["causal"]), str(r["impl"])): r for r in anchors.get("rows", [])}


def anchor_for(row: dict, index: dict) -> dict | None:
    """The anchor row measured for the same shape and implementation, if any."""
    impl = row.get("anchor")
    if row.get("case") == "sdpa" and row.get("backend"):  # auto: whatever it chose
        impl = row["backend"]
    if impl is None or row.get("status") != "ok":
        return None
    if impl.startswith("flex_sw") and not row["causal"]:
        return None  # the anchors' sliding windows are causal
    return index.get((row["seq"], row["causal"], impl))


def with_anchor_ratios(rows: list[dict], anchors: dict | None) -> list[dict]:
    if not anchors:
        return rows
    index = anchor_index(anchors)
    for row in rows:
        a = anchor_for(row, index)
        if a is not None:
            row["anchor_ms"] = a["ms"]
            row["ms_vs_anchor"] = row["latency_ms"] / a["ms"]
            row["tflops_vs_anchor"] = row["tflops"] / a["tflops"] if a.get("tflops") else None
            row["anchor_peak_mib"] = a.get("peak_MiB")
    return rows
