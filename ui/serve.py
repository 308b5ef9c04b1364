"""`make run`: `streamlit run app.py`, with the heavy imports (torch, the variants, the maps)
started on a thread while the server boots and the browser loads the page, so the first page is
drawn a couple of seconds sooner. `streamlit run app.py` works the same, just slower to start."""
from __future__ import annotations

import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _warm_imports() -> None:
    import importlib

    for name in ("torch", "attn.variants", "attn.measure", "attn.maps", "attn.runs", "ui.results"):
        importlib.import_module(name)


def main(argv: list[str] | None = None) -> None:
    threading.Thread(target=_warm_imports, name="attn-warm-imports", daemon=True).start()
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(ROOT / "app.py"), *(argv if argv is not None else sys.argv[1:])]
    cli.main()


if __name__ == "__main__":
    main()
