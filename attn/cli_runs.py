"""`attn runs`: the saved runs listed, shown, exported, deleted, or another machine's imported."""
from __future__ import annotations

import argparse
import json
import sys

from attn.cli_args import BadInput
from attn.cli_output import emit


def cmd_runs(args: argparse.Namespace) -> None:
    from attn.runs import RunStore

    store = RunStore()
    if args.action == "list":
        data = [s.__dict__ for s in store.list(kind=args.kind, mode=args.mode, limit=args.limit)]
        emit(args, data, lambda d: "\n".join(
            f"#{r['id']:<5} {r['kind']:8} {r['mode']:8} {str(r['variant']):24} {r['spec_short']:36}"
            f" {r['created_at'][:19]}" for r in d) or "no runs saved yet")
    elif args.action == "show":
        run = store.get(one_id(args.ids))
        emit(args, run.to_dict(include_maps=False), lambda d: json.dumps(d, indent=1, default=str))
    elif args.action == "export":
        ids = [int(x) for x in args.ids] if args.ids else []
        if not ids:
            raise BadInput("runs export needs one or more run ids")
        if args.format == "html":
            from attn.report import html_report

            text = html_report([store.get(i) for i in ids])
        else:
            text = store.export(ids[0] if len(ids) == 1 else ids, fmt=args.format)
        if args.out:
            from attn.home import write_text_atomic

            write_text_atomic(args.out, text)  # whole or not at all: a full disk keeps the old file
            print(f"wrote {args.out}", file=sys.stderr)
        else:
            sys.stdout.write(text)
    elif args.action == "delete":
        removed = store.delete([int(x) for x in args.ids])
        print(f"deleted {removed} run(s)", file=sys.stderr)
    elif args.action == "import":
        if len(args.ids) != 1:
            raise BadInput("runs import needs one file: attn runs import OTHER-MACHINE.sqlite")
        report = store.import_file(args.ids[0], source=args.source)
        emit(args, report.__dict__, lambda d: report.summary())


def one_id(ids: list[str]) -> int:
    if len(ids) != 1 or not ids[0].isdigit():
        raise BadInput("give exactly one run id")
    return int(ids[0])

