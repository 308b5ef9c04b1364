"""bench.gpu's report: its results as markdown, section by section (the train and decode tables
are bench/gpu_regimes.py's)."""
from __future__ import annotations

from bench import gpu_regimes
from bench.tables import f, markdown


def report(results: dict) -> str:
    out = [f"## {results['environment'].get('device')} ({results['config']['dtype']}), torch "
           f"{results['environment'].get('torch')}, CUDA {results['environment'].get('cuda')}"]
    if "selftest" in results:
        from attn.selftest import table_lines

        st = results["selftest"]
        out += ["", "### Self-test (`attn selftest`)", "```", *table_lines(st), "```",
                f"saved as run {st['run_id']}: `attn runs export {st['run_id']} --format json "
                f"--out selftest.json`" + (" — send it with this report" if st["failed"] else "")]
    if "timing" in results:
        rows = results["timing"]
        cols = [("case", "case", str), ("causal", "causal", str), ("seq", "seq", str),
                ("status", "status", str), ("latency_ms", "median ms", f(".3f")),
                ("p10_ms", "p10", f(".3f")), ("p90_ms", "p90", f(".3f")),
                ("tflops", "TFLOP/s", f(".1f")), ("roofline_pct", "% roof", f(".0f")),
                ("peak_mib", "peak MiB", f(".0f")), ("kernel_error", "kernel err", f(".1e")),
                ("backend", "backend", str)]
        if any("ms_vs_anchor" in r for r in rows):
            cols += [("anchor_ms", "anchor ms", f(".3f")), ("ms_vs_anchor", "ms / anchor", f(".2f")),
                     ("anchor_peak_mib", "anchor peak MiB", f(".0f"))]
        out += ["", "### Timing", markdown(rows, cols)]
        bad = [r for r in rows if r.get("status") == "ok" and not r.get("error_ok")]
        out.append(f"\nkernel error within {results['config']['error_tolerance']:g}: "
                   + ("every case" if not bad else "NOT " + ", ".join(
                       f"{r['case']} seq {r['seq']} causal={r['causal']} ({r['kernel_error']:.1e})" for r in bad)))
        refused = [r for r in rows if r.get("status") in ("oom", "unsupported", "error")]
        for r in refused:
            out.append(f"- {r['case']} causal={r['causal']} seq {r['seq']}: {r['status']}: {r['message']}")
    if "auto" in results:
        out += ["", "### sdpa auto", markdown(
            [{**r, "found": "; ".join(r.get("reasons", {}).values())}
             for r in results["auto"]],
            [("causal", "causal", str), ("seq", "seq", str), ("chosen", "chosen", str),
             ("found", "what each backend did", str), ("error", "error", str)])]
    if "calibration" in results:
        cal = results["calibration"]
        out += ["", "### Calibration",
                "matmul TFLOP/s: " + ", ".join(f"{k} {v:.1f}" for k, v in cal["matmul_tflops"].items())
                + f"; copy bandwidth {cal['bandwidth_gbps']:.0f} GB/s"]
        if "bf16_vs_anchor" in cal or "bandwidth_vs_anchor" in cal:
            out.append(f"against the anchors: bf16 matmul x{cal.get('bf16_vs_anchor', float('nan')):.2f}, "
                       f"bandwidth x{cal.get('bandwidth_vs_anchor', float('nan')):.2f}")
    anchors = results.get("anchors_device")  # the anchors' device, when some were given
    if "train" in results:
        out += gpu_regimes.train_report(results["train"], results["config"]["error_tolerance"], anchors)
    if "decode" in results:
        out += gpu_regimes.decode_report(results["decode"], results.get("decode_bandwidth_gbps"),
                                         anchors)
    if "oom" in results:
        o = results["oom"]
        out += ["", "### Out-of-memory sweep", markdown(
            o["points"], [("variant", "variant", str), ("seq", "seq", str), ("status", "status", str),
                          ("latency_ms", "median ms", f(".3f")), ("message", "message", str)])]
        for w in o["walls"]:
            out.append(f"- memory wall {w['variant']}: {w['x']} ({w['note']})")
        out.append(f"- allocated before {o['allocated_before']}, after {o['allocated_after']}: "
                   f"at baseline: {o['at_baseline']}; reserved {o['reserved_before']} -> "
                   f"{o['reserved_after']}; an out-of-memory was met: {o['oom_seen']}")
    return "\n".join(out)
