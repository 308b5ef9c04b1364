"""python -m attn: the library from the command line. JSON on stdout with --json; bad input
exits 2 with one line on stderr saying what to fix."""
from __future__ import annotations

import argparse
import json
import sys

from attn.cli_args import (BadInput, int_list, OneLineParser, add_input_flags, add_mode_flags, add_spec_flags,
                           input_source, regime_spec, spec_from_args)
from attn.cli_models import cmd_model, cmd_plan
from attn.cli_output import emit, save_run
from attn.cli_runs import cmd_runs
from attn.cli_sweep import cmd_sweep
from attn.regimes import MODES
from attn.runs.records import KINDS

EXIT_BAD_INPUT = 2


# -- commands (sweep, runs, model and plan are in cli_sweep, cli_runs and cli_models) -----------
def cmd_variants(args: argparse.Namespace) -> None:
    from attn import variants

    data = [{"variant": v.name, "title": v.title, "exact": v.exact, "params": list(v.param_names),
             "summary": v.summary} for v in map(variants.get, variants.names())]
    emit(args, data, lambda d: "\n".join(
        f"{x['variant']:15} {'exact ' if x['exact'] else 'approx'}  {x['summary']}" for x in d))


def cmd_cost(args: argparse.Namespace) -> None:
    from attn import variants
    from attn.cost import attention_cost
    from attn.variants.registry import SizeLimit

    spec = spec_from_args(args)
    var = variants.get(args.variant)
    # a cost is device-free, so only reasons that hold on every device make the spec bad
    # (linformer cannot be causal; an unknown backend), not "needs a CUDA GPU", and not a size
    # past what a run draws (the cost model answers at any size)
    on_gpu = set(var.unsupported(spec, "cuda"))
    reasons = [r for r in var.unsupported(spec, "cpu") if r in on_gpu and not isinstance(r, SizeLimit)]
    if reasons:
        raise BadInput("; ".join(reasons))
    spec = regime_spec(args, spec, args.context)
    cost = attention_cost(spec, args.variant, args.mode)
    data = {"variant": args.variant, "mode": args.mode, "spec": spec.to_dict(), "device": spec.device,
            **cost.to_dict()}
    emit(args, data, lambda d: "\n".join(f"{k:26} {v}" for k, v in d.items() if k != "spec"))


def cmd_profile(args: argparse.Namespace) -> None:
    from attn import measure
    from attn.sources import make_inputs

    spec = spec_from_args(args)
    source = input_source(args)
    if source.kind == "random":
        spec = regime_spec(args, spec, args.context)
        prof = measure.profile(spec, args.variant, device=args.device, budget_s=args.budget,
                               temperature=source.temperature, mode=args.mode)
    else:
        q, k, v, spec = make_inputs(spec, source)
        if args.mode == "decode":  # the text's last tokens are the new ones, the whole text the cache
            spec = regime_spec(args, spec, args.context or spec.kv_seq)
            if spec.kv_seq != k.shape[2]:
                raise BadInput(f"--context must be the text's {k.shape[2]} tokens with --text")
            q = q[:, :, -spec.seq:].contiguous()
        prof = measure.profile(spec, args.variant, budget_s=args.budget, inputs=(q, k, v), mode=args.mode)
    data = {**prof.to_dict(), "inputs": source.describe()}
    save_run(args, "profile", spec, data, args.variant)
    emit(args, data, _human_profile)


def _human_profile(d: dict) -> str:
    mib = d["peak_bytes"] / 2**20
    line = (f"{d['variant']} {d.get('mode', 'forward')} on {d['device']} ({d['backend']}): "
            f"{d['latency_ms']:.3f} ms [p10 {d['p10_ms']:.3f}, p90 {d['p90_ms']:.3f}, n={d['repeats']}], "
            f"{d['flops'] / 1e9:.3f} GFLOP useful, {d['achieved_tflops']:.4f} TFLOP/s, "
            f"peak {mib:.1f} MiB, kernel_error {d['kernel_error']:.2e}, approx_error {d['approx_error']:.2e}")
    if d.get("mode") == "train":
        line += (f"\n  forward {d['forward_ms']:.3f} ms, backward {d['backward_ms']:.3f} ms, saved for the "
                 f"backward {d['saved_bytes'] / 2**20:.2f} MiB, grad_error {d['grad_error']:.2e}")
    elif d.get("mode") == "decode":
        floor = f"{d['floor_ms']:.4f} ms" if d.get("floor_ms") is not None else "not calibrated"
        line += (f"\n  {d['per_token_ms']:.4f} ms per token at context {d['context']}, read "
                 f"{d['bytes_read'] / 2**20:.2f} MiB at {d['achieved_gbps']:.2f} GB/s, bandwidth floor {floor}")
    return line


def cmd_calibrate(args: argparse.Namespace) -> None:
    from attn import calibrate

    cal = calibrate.calibrate(args.device, force=args.force)
    emit(args, cal.to_dict(), lambda d: json.dumps(d, indent=1))


def cmd_story(args: argparse.Namespace) -> None:
    from attn.story.report import measure_story, story_html

    numbers = [int(n) for n in args.chapters.split(",")] if args.chapters else None
    results = measure_story(numbers, say=lambda line: print(line, file=sys.stderr))
    with open(args.out, "w", encoding="utf-8") as out:
        out.write(story_html(results))
    print(f"wrote {args.out}: {sum('error' not in r for r in results.values())} of {len(results)} chapters measured")


def cmd_maps(args: argparse.Namespace) -> None:
    from attn.maps import maps_json

    from attn.sources import input_spec

    source = input_source(args)
    spec = input_spec(spec_from_args(args), source)
    if not 0 <= args.head < spec.heads:
        raise BadInput(f"--head must be in 0..{spec.heads - 1}, got {args.head}")
    data = maps_json(spec, args.variant, args.head, args.max_size, args.reduce, args.temperature, source)
    save_run(args, "maps", spec, data, args.variant)
    emit(args, data, lambda d: "\n".join(
        [f"{d['variant']} head {args.head}: {len(d['map']['values'])} x {len(d['map']['values'][0])} cells"
         f" ({'exact' if d['map']['exact'] else d['map']['reduce'] + '-pooled'})"]
        + [f"  head {s['head']:>3}: entropy {s['entropy_bits']:.2f} bits, distance {s['mean_distance']:.1f}, "
           f"sink {s['sink_mass']:.3f}, keys for 90% {s['keys_for_90']:.1f}" for s in d["head_stats"]]))


def cmd_monitor(args: argparse.Namespace) -> None:
    from attn.telemetry import monitor

    if args.seconds <= 0:
        raise BadInput("--seconds must be positive")
    data = monitor(args.seconds, interval_s=args.interval)
    emit(args, data, lambda d: f"{d['device']}: {d['count']} samples; {d['gpu_status']}\n" + "\n".join(
        f"  {k:22} mean {v['mean']}  max {v['max']}" for k, v in d["summary"].items()))


def cmd_selftest(args: argparse.Namespace) -> int:
    """Exit 0 when every check passed (rows not possible here included), 1 when one failed."""
    from attn import selftest

    result = selftest.run_selftest(args.device, quick=args.quick)
    result["run_id"] = selftest.save(result)
    emit(args, result, lambda d: "\n".join(selftest.table_lines(d) + [
        f"saved as run {d['run_id']}: `attn runs export {d['run_id']} --format json --out selftest.json`"]))
    return 0 if selftest.all_passed(result) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m attn", description="The cost of attention, measured.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    p = sub.add_parser("variants", help="list the attention variants")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_variants)

    p = sub.add_parser("cost", help="analytic cost of a spec under a variant")
    p.add_argument("--variant", required=True)
    add_spec_flags(p)
    add_mode_flags(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_cost)

    p = sub.add_parser("profile", help="run and measure one variant")
    p.add_argument("--variant", required=True)
    add_spec_flags(p)
    add_mode_flags(p)
    p.add_argument("--budget", type=float, default=1.0, help="seconds of repeats")
    add_input_flags(p)
    p.add_argument("--save", action="store_true", help="keep the run in the run store")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_profile)

    p = sub.add_parser("sweep", help="profile variants over sequence lengths (or batch, heads, head_dim)")
    p.add_argument("--variants", required=True, help="comma-separated variant names")
    add_spec_flags(p, seq_list=True)
    add_mode_flags(p, context_list=True)
    p.add_argument("--axis", choices=("seq", "batch", "heads", "head_dim", "context"), default="seq",
                   help="what to sweep; other than seq (and a decode sweep's context), the values come "
                        "from --values")
    p.add_argument("--values", type=int_list, help="comma-separated values of --axis")
    p.add_argument("--budget", type=float, default=0.5, help="seconds of repeats per point")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="one Ray task a point on the cluster at ADDRESS (host:port or ray://host:port); a bare "
                        "--ray joins the cluster Ray knows of, else starts a local instance")
    p.add_argument("--ray-cpus", dest="ray_cpus", type=int, default=1, metavar="N",
                   help="CPUs a Ray task asks for on a cluster without GPUs (default 1; a node's CPU count "
                        "times one point at a time a node, on all its cores)")
    p.add_argument("--save", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_sweep)

    p = sub.add_parser("maps", help="a head's attention map (pooled) and every head's statistics")
    p.add_argument("--variant", required=True)
    add_spec_flags(p)
    p.add_argument("--head", type=int, default=0)
    p.add_argument("--max-size", dest="max_size", type=int, default=512, help="cells per side at most")
    p.add_argument("--reduce", choices=("mean", "max"), default="mean")
    add_input_flags(p)
    p.add_argument("--save", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_maps)

    p = sub.add_parser("model", help="a real model on a text: tokens, attention maps, cost per layer")
    p.add_argument("--model", default="minilm", help="minilm, a preset name, or a local directory")
    p.add_argument("--text", required=True)
    p.add_argument("--max-tokens", dest="max_tokens", type=int, default=128)
    p.add_argument("--no-maps", dest="no_maps", action="store_true", help="leave out the attention maps")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_model)

    p = sub.add_parser("plan", help="a plan for a model's attention: what it saves and what it costs")
    p.add_argument("--model", default="minilm", help="minilm, a preset name, or a local directory")
    p.add_argument("--layers", required=True,
                   help="per layer: LAYERS:KIND[:PARAM][:ACTIVATION], e.g. 0-4:sliding_window:128,5:sdpa "
                        "(kinds full|sdpa, sliding_window:W, block_sparse:B; unnamed layers are full)")
    p.add_argument("--kv-heads", dest="kv_heads", type=int, help="key/value heads to keep (mean-pooled groups)")
    p.add_argument("--activation", help="softmax (default), sigmoid or relu, for layers that name none")
    p.add_argument("--text", help="the text to time (default: the shipped sentences, joined)")
    p.add_argument("--max-tokens", dest="max_tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5, help="timed forward passes of each model")
    p.add_argument("--no-timing", dest="no_timing", action="store_true", help="costs and quality only")
    p.add_argument("--save", action="store_true", help="keep the plan in the run store")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_plan)

    p = sub.add_parser("monitor", help="sample GPU and CPU counters for some seconds")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--interval", type=float, default=0.1)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_monitor)

    p = sub.add_parser("runs", help="the saved runs: list, show, export, delete, import another machine's")
    p.add_argument("action", choices=("list", "show", "export", "delete", "import"))
    p.add_argument("ids", nargs="*", help="run ids; for import, the other machine's runs.sqlite")
    p.add_argument("--source", help="import: the name the imported runs are kept under (default: the file's name)")
    p.add_argument("--kind", choices=KINDS)
    p.add_argument("--mode", choices=MODES, help="list only runs of this regime (runs saved before the "
                   "regimes are forward)")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--format", choices=("json", "csv", "html"), default="json")
    p.add_argument("--out", help="file to write (default: stdout)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_runs)

    p = sub.add_parser("selftest", help="check attn's numbers on this device: accuracy, FLOPs, timers, backends")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    p.add_argument("--quick", action="store_true", help="one shape per check and shorter timings")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_selftest)

    p = sub.add_parser("story", help="measure the six chapters of the story here and write them as one HTML file")
    p.add_argument("--out", required=True, help="the HTML file to write")
    p.add_argument("--chapters", help="which chapters, e.g. 1,6 (default: all six)")
    p.set_defaults(fn=cmd_story)

    p = sub.add_parser("calibrate", help="measure this device's matmul rates and bandwidth")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--force", action="store_true", help="measure again even when cached")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_calibrate)
    return parser


def one_line(message: str) -> str:
    """The message with its line breaks and control characters escaped: argparse echoes a
    user's words as given ("unrecognized arguments: a<newline>b"), and the error must stay one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def main(argv: list[str] | None = None) -> int:
    from attn.heap import return_freed_memory
    from attn.home import AttnHomeError
    from attn.cluster import ClusterError
    from attn.measure import DoesNotFit

    try:
        args = build_parser().parse_args(argv)
        code = args.fn(args)  # None, or a command's own exit code (selftest: 1 when a check failed)
    # AttnHomeError: ATTN_HOME (or --out) is full, unreadable or not a folder; the run store's
    # own RunStoreError is one of them
    except (BadInput, ValueError, KeyError, FileNotFoundError, DoesNotFit, AttnHomeError,
            ClusterError) as err:
        message = str(err.args[0] if err.args else err)
        print(f"attn: error: {one_line(message)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # `python -m attn ... | head`
        sys.stderr.close()
        return 0
    finally:
        # a process that calls main() again and again (a notebook, a script, a test) stays at
        # what it uses (attn.heap)
        return_freed_memory()
    return code or 0
