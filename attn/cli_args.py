"""The command line's flags: the spec's shared sizes, each variant's declared parameters, the
regime (--mode, --context, --new-tokens) and the inputs (random or a model's layer), turned into
what the library takes. Bad input raises BadInput, which the CLI prints as one line (exit 2)."""
from __future__ import annotations

import argparse
from typing import Any, Callable

from attn import params as declared_params
from attn.params import Param
from attn.spec import SHARED_FIELDS, AttentionSpec

# the shared spec fields that are flags (causal is a switch); each variant's own parameters are
# flags too, from their declarations
SPEC_FLAGS = [name for name in SHARED_FIELDS if name != "causal"]


class BadInput(Exception):
    """Input a person must change; printed as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage and exits 2; keep it one line
        raise BadInput(message)


def int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def _param_flag(param: Param) -> Callable[[str], Any]:
    """argparse type of a variant parameter: its own parsing and validation, so a bad value
    gets the declaration's message ('window must be at least 1, got 0')."""
    def parse(text: str) -> Any:
        try:
            return param.parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    parse.__name__ = param.name
    return parse


def add_spec_flags(p: argparse.ArgumentParser, seq_list: bool = False) -> None:
    from attn import variants

    defaults = AttentionSpec()
    for name in SPEC_FLAGS:
        if name == "seq" and seq_list:
            p.add_argument("--seq", type=int_list, default=[256, 512, 1024, 2048],
                           help="comma-separated sequence lengths")
            continue
        default = getattr(defaults, name)
        kind = str if isinstance(default, str) else int
        if name in ("kv_seq", "kv_heads", "d_model"):
            default = None
        if name == "device":
            default = "auto"
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=default)
    p.add_argument("--causal", action="store_true", help="causal mask (aligned bottom-right)")
    g = p.add_argument_group("variant parameters", "each read only by the variants that declare it")
    users = {}
    for v in map(variants.get, variants.names()):
        for param in v.params:
            users.setdefault(param.name, (param, []))[1].append(v.name)
    for name, (param, owners) in users.items():
        g.add_argument("--" + name.replace("_", "-"), dest=name, type=_param_flag(param), default=None,
                       metavar=param.kind.__name__.upper() if not param.choices else "{" + ",".join(param.choices) + "}",
                       help=f"{', '.join(owners)}: {param.describe()}")


def spec_from_args(args: argparse.Namespace, **override: Any) -> AttentionSpec:
    values = {name: getattr(args, name) for name in SPEC_FLAGS if hasattr(args, name)}
    values["causal"] = args.causal
    variant = {name: getattr(args, name) for name in declared_params.declared()
               if getattr(args, name, None) is not None}
    values.update(override)
    return AttentionSpec(**values, params=variant)


def add_mode_flags(p: argparse.ArgumentParser, context_list: bool = False) -> None:
    g = p.add_argument_group("regime", "forward: one call over the sequence (a prefill); train: "
                             "forward + backward; decode: --new-tokens queries against a cache of "
                             "--context keys")
    g.add_argument("--mode", default="forward", type=_mode, help="forward (default), train or decode")
    if context_list:
        g.add_argument("--context", type=int_list,
                       help="decode: comma-separated cache lengths to sweep (instead of --seq)")
    else:
        g.add_argument("--context", type=int, help="decode: cached keys (default: --kv-seq, else --seq)")
    g.add_argument("--new-tokens", dest="new_tokens", type=int, default=1,
                   help="decode: new tokens per step (default 1)")


def _mode(text: str) -> str:
    from attn.regimes import check_mode

    try:
        return check_mode(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def regime_spec(args: argparse.Namespace, spec: AttentionSpec, context: int | None = None) -> AttentionSpec:
    """The spec of the regime: a decode step's spec from --context and --new-tokens."""
    from attn.regimes import decode_spec

    if args.mode != "decode":
        if args.context is not None or args.new_tokens != 1:
            raise BadInput("--context and --new-tokens are for --mode decode")
        return spec
    return decode_spec(spec, context or spec.kv_seq, args.new_tokens)


def add_input_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("inputs", "seeded random q, k, v by default; --text captures them "
                             "from a real model's layer instead (the shape then comes from the model)")
    g.add_argument("--temperature", type=float, default=1.0, help="random inputs: low is sharp, high is flat")
    g.add_argument("--text", help="run this text through --inputs-model and take q, k, v of --layer")
    g.add_argument("--layer", type=int, default=0)
    g.add_argument("--inputs-model", dest="inputs_model", default="minilm",
                   help="minilm, a preset or a local model directory")


def input_source(args: argparse.Namespace):
    from attn.sources import InputSource

    if args.text is None:
        return InputSource(temperature=args.temperature)
    return InputSource("model", model=args.inputs_model, text=args.text, layer=args.layer)
