"""No pickle, no remote code, no eval in attn's own source (attn/, ui/, views/, app.py, bench/).

Loading a pickle calls whatever callable it names, eval and exec run text as code, and a model
loaded with remote code runs the model authors' Python. A server that others reach must do none
of it, so the source is read here, code and names alike: the syntax tree for calls and imports,
the code without its strings and comments for the spellings, and the raw text for the keyword
that would let transformers run a model's code.
"""
from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([ROOT / "app.py", *(p for d in ("attn", "ui", "views", "bench") for p in (ROOT / d).rglob("*.py"))])
PICKLERS = {"pickle", "cPickle", "_pickle", "cloudpickle", "dill", "shelve", "marshal", "joblib"}
RUNS_TEXT = {"eval", "exec", "__import__"}
REMOTE_CODE = "trust_remote_" + "code"  # spelt in two so that this file may hold it
SPELLINGS = [  # in code, strings and comments removed
    (re.compile(r"\bimport\s+(c|_)?pickle\b|\bfrom\s+(c|_)?pickle\b"), "imports pickle"),
    (re.compile(r"\bpickle\s*\."), "uses pickle"),
    (re.compile(r"cPickle"), "names cPickle"),
    (re.compile(r"(?<![.\w])(eval|exec)\s*\("), "calls eval or exec"),
    (re.compile(r"__import__"), "uses __import__"),
]


def code_only(text: str) -> str:
    """The source with every string and comment blanked (f-strings' text too, not their fields)."""
    strings = {tokenize.STRING, tokenize.COMMENT}
    strings |= {getattr(tokenize, n) for n in ("FSTRING_MIDDLE", "TSTRING_MIDDLE") if hasattr(tokenize, n)}
    lines = text.splitlines(keepends=True)
    blank = [list(line) for line in lines]
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type not in strings:
            continue
        (r0, c0), (r1, c1) = tok.start, tok.end
        for r in range(r0, r1 + 1):
            row = blank[r - 1]
            for c in range(c0 if r == r0 else 0, c1 if r == r1 else len(row)):
                if row[c] != "\n":
                    row[c] = " "
    return "".join("".join(row) for row in blank)


def _call_name(node: ast.Call) -> str:
    f = node.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
        return f"{f.value.id}.{f.attr}"
    return ""


def findings(text: str) -> list[str]:
    """What `text` (a module's source) does that attn forbids, one line each."""
    found = []
    tree = ast.parse(text)
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            found += [f"{line}: imports {a.name}" for a in node.names if a.name.split(".")[0] in PICKLERS]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLERS:
            found.append(f"{line}: imports from {node.module}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in PICKLERS:
            found.append(f"{line}: uses {node.value.id}.{node.attr}")
        elif isinstance(node, ast.Name) and node.id in RUNS_TEXT | {"__import__"} and not isinstance(node.ctx, ast.Store):
            found.append(f"{line}: names {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr in RUNS_TEXT and isinstance(node.value, ast.Name) \
                and node.value.id == "builtins":
            found.append(f"{line}: uses builtins.{node.attr}")
        if isinstance(node, ast.Call):
            name, keywords = _call_name(node), {k.arg: k.value for k in node.keywords}
            if name in ("torch.load", "serialization.load"):
                weights_only = keywords.get("weights_only")
                if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                    found.append(f"{line}: torch.load without weights_only=True")
            allow = keywords.get("allow_pickle")
            if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
                found.append(f"{line}: allow_pickle")
    code = code_only(text)
    for number, line_text in enumerate(code.splitlines(), 1):
        found += [f"{number}: {why}" for pattern, why in SPELLINGS if pattern.search(line_text)]
    found += [f"{n}: names {REMOTE_CODE}" for n, t in enumerate(text.splitlines(), 1) if REMOTE_CODE in t]
    return sorted(set(found), key=lambda s: int(s.split(":")[0]))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_source_runs_no_pickle_no_eval_and_no_remote_code(path):
    assert findings(path.read_text()) == []


def test_the_sources_are_found():
    names = {str(p.relative_to(ROOT)) for p in SOURCES}
    assert {"app.py", "attn/jobs/codec.py", "attn/models/sources.py", "views/models.py"} <= names
    assert any(n.startswith("bench/") for n in names) and any(n.startswith("ui/") for n in names)


def test_the_job_channel_sends_bytes_only():
    """Connection.send and .recv pickle what they carry; the jobs' pipes use send_bytes/recv_bytes."""
    for path in (ROOT / "attn" / "jobs").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert node.func.attr not in ("send", "recv"), f"{path.name}:{node.lineno} .{node.func.attr}()"


@pytest.mark.parametrize("snippet", [
    "import pickle", "import cPickle as p", "from pickle import loads", "import dill", "x = pickle.loads(b)",
    "eval('1')", "exec(code)", "f = eval", "m = __import__('os')", "getattr(builtins, 'x'); builtins.exec('')",
    "torch.load(path)", "torch.load(path, weights_only=False)", "np.load(p, allow_pickle=True)",
    f"AutoModel.from_pretrained(d, {REMOTE_CODE}=False)", f"# {REMOTE_CODE} is off",
])
def test_the_check_finds_each_forbidden_thing(snippet):
    assert findings(snippet + "\n")


@pytest.mark.parametrize("snippet", [
    "model.eval()", "torch.no_grad(); module.eval()", '"""a pickle can run code; never pickle."""',
    "# eval(x) in a comment", "torch.load(path, weights_only=True)", "np.load(p)", "x = f'{a} exec(b)'",
    "loaded.model.eval()", "evaluate(x)", "re.compile('x')",
])
def test_the_check_passes_what_is_safe(snippet):
    assert findings(snippet + "\n") == []
