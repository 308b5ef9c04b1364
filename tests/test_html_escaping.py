"""User text never reaches the page or a report as HTML (issue 16): the app's only raw HTML is a
constant style sheet, and a report escapes a saved run's every text, the ones that plotly carries
inside a <script> block (a map's title, a plan's text) included."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

from attn.report import html_report
from attn.runs import RunStore
from attn.spec import AttentionSpec

ROOT = Path(__file__).resolve().parent.parent
EVIL = "</script><script>alert(1)</script>"
CPU = {"device": "Test CPU", "device_kind": "cpu"}


def _raw_html_calls() -> list[tuple[str, ast.Call]]:
    found = []
    for path in [ROOT / "app.py", *(ROOT / "ui").glob("*.py"), *(ROOT / "views").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            raw = any(k.arg == "unsafe_allow_html" and not (isinstance(k.value, ast.Constant) and not k.value.value)
                      for k in node.keywords)
            if raw or name == "html":  # st.html and components.html draw raw HTML too
                found.append((f"{path.relative_to(ROOT)}:{node.lineno}", node))
    return found


def _string_constants() -> set[str]:
    """Module-level names of the app's modules bound to a string literal (a style sheet kept as
    a named constant, e.g. ui.story.PRESENTER_CSS), and bound nowhere else."""
    bound: dict[str, list[bool]] = {}
    for path in [ROOT / "app.py", *(ROOT / "ui").glob("*.py"), *(ROOT / "views").glob("*.py")]:
        for node in ast.parse(path.read_text(), str(path)).body:
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        literal = isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
                        bound.setdefault(target.id, []).append(literal)
    return {name for name, literals in bound.items() if all(literals)}


def test_raw_html_in_the_app_is_a_constant_never_user_text():
    calls = _raw_html_calls()
    constants = _string_constants()
    assert calls, "the app's style sheet is found: the search works"
    assert "PRESENTER_CSS" in constants and "SPEC_KEY" in constants, "named literals are found"
    for where, call in calls:
        arg = call.args[0] if call.args else None
        named = arg.id if isinstance(arg, ast.Name) else arg.attr if isinstance(arg, ast.Attribute) else None
        assert isinstance(arg, ast.Constant) or named in constants, \
            f"{where}: raw HTML built from a value; escape it (html.escape) or drop unsafe_allow_html"


def test_a_report_escapes_a_runs_text_inside_plotly_and_tables():
    store = RunStore()
    spec = AttentionSpec(seq=16, heads=1, head_dim=8, device="cpu")
    maps = {"map": {"values": np.full((2, 2), 0.5, np.float32), "q_edges": [0, 8, 16], "k_edges": [0, 8, 16]}}
    ids = [store.save("maps", spec, {"max_size": 2, "note": EVIL}, variant=EVIL, environment=CPU, maps=maps,
                      label=EVIL, tags=[EVIL]),
           store.save("plan", spec, {"plan": EVIL, "source": EVIL, "kv_heads": 1}, variant=None,
                      environment={**CPU, "model": EVIL}, label=EVIL)]
    text = html_report([store.get(i) for i in ids], title=EVIL)
    assert "<script>alert(1)" not in text and "</script><script>" not in text
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in text, "shown, as text"
