"""What every command of the command line does with its answer: JSON on stdout with --json (or a
line for a person), and the run store with --save."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

from attn.spec import AttentionSpec


def emit(args: argparse.Namespace, data: Any, human: Callable[[Any], str]) -> None:
    if getattr(args, "json", False):
        json.dump(data, sys.stdout, indent=1, default=_json_default)
        sys.stdout.write("\n")
    else:
        print(human(data))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return str(obj)


def save_run(args: argparse.Namespace, kind: str, spec: AttentionSpec, data: dict, variant: str) -> None:
    if not getattr(args, "save", False):
        return
    from attn.runs import RunStore

    run_id = RunStore().save(kind, spec.to_dict(), data, variant=variant, environment=data.get("environment"))
    data["run_id"] = run_id

