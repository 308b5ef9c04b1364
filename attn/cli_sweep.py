"""`attn sweep`: several variants over sequence lengths (or batch, heads, head_dim, a decode
step's context), here or one Ray task a point."""
from __future__ import annotations

import argparse

from attn.cli_args import BadInput, spec_from_args
from attn.cli_output import emit, save_run


def cmd_sweep(args: argparse.Namespace) -> None:
    from attn import sweep

    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    axis = args.axis
    if args.mode == "decode":
        if not args.context:
            raise BadInput("a decode sweep needs --context, e.g. --context 1024,4096,16384")
        if axis in ("seq", "context"):  # a decode sweep grows the cache
            axis, xs = "context", args.context
        elif len(args.context) != 1:
            raise BadInput(f"--axis {axis} sweeps {axis}: give one --context")
        else:
            xs = args.values or []
        from attn.regimes import decode_spec

        spec = decode_spec(spec_from_args(args, seq=args.seq[0]), min(args.context), args.new_tokens)
        if not xs:
            raise BadInput(f"--axis {axis} needs --values, e.g. --values 1,2,4,8")
    else:
        if args.context is not None or args.new_tokens != 1:
            raise BadInput("--context and --new-tokens are for --mode decode")
        if axis == "context":
            raise BadInput("--axis context is for --mode decode")
        if axis == "seq":
            spec, xs = spec_from_args(args, seq=args.seq[0]), args.seq
        else:
            if not args.values:
                raise BadInput(f"--axis {axis} needs --values, e.g. --values 1,2,4,8")
            if len(args.seq) != 1:
                raise BadInput(f"--axis {axis} sweeps {axis}: give one --seq")
            spec, xs = spec_from_args(args, seq=args.seq[0]), args.values
    if args.ray is not None:  # one Ray task a point; "" is ray.init()'s default (see attn.cluster)
        from attn import cluster

        if args.ray_cpus < 1:
            raise BadInput(f"--ray-cpus must be at least 1, got {args.ray_cpus}")
        data = cluster.run_sweep_on_ray(spec, names, xs, axis=axis, device=args.device, budget_s=args.budget,
                                        mode=args.mode, address=args.ray or None, cpus_per_task=args.ray_cpus)
    else:
        data = sweep.run_sweep(spec, names, xs, axis=axis, device=args.device, budget_s=args.budget,
                               mode=args.mode).to_dict()
    save_run(args, "sweep", spec, data, ",".join(names))
    emit(args, data, sweep.human_summary)
