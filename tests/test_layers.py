"""The layers of DESIGN.md, read from the source: attn's import graph has no circle (imports
inside functions count too), the library never imports streamlit, and the pages never import
torch."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "attn"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def library_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(LIBRARY.rglob("*.py"))}


def imported_names(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names taken from it) for every import in the file, at any depth: module level,
    inside functions, inside if/try blocks."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the file's package, `level` folders up
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.append((base, [alias.name for alias in node.names]))
    return found


def import_graph() -> dict[str, set[str]]:
    """Edges from each attn module to the attn modules it imports. `from attn.pkg import sub`
    is an edge to the submodule when there is one; importing `attn.pkg.sub` from outside
    `attn.pkg` runs `attn/pkg/__init__.py` first, so it is an edge to the package too."""
    modules = library_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for base, names in imported_names(path):
            if base != "attn" and not base.startswith("attn."):
                continue
            targets = {f"{base}.{n}" for n in names if f"{base}.{n}" in modules}
            if len(targets) < len(names) or not names:
                targets.add(base)  # names defined in the module (or package) itself
            for target in list(targets):
                parts = target.split(".")
                for depth in range(2, len(parts)):
                    package = ".".join(parts[:depth])
                    if not (name == package or name.startswith(package + ".")):
                        targets.add(package)
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def circular_groups(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or not (Tarjan's strongly
    connected components of more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def cycle_in(graph: dict[str, set[str]], group: list[str]) -> list[str]:
    """A shortest path from the group's first module back to itself, inside the group."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & members):
                if nxt == start:
                    return paths[node] + [start]
                if nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    following.append(nxt)
        frontier = following
    return group


def imports_of(path: Path) -> set[str]:
    return {base for base, _ in imported_names(path)} | {
        f"{base}.{name}" for base, names in imported_names(path) for name in names}


def test_the_library_has_no_import_circle():
    graph = import_graph()
    circles = [f"{' -> '.join(cycle_in(graph, group))} (the circle runs through {len(group)} "
               f"modules: {', '.join(group)})" for group in circular_groups(graph)]
    assert not circles, "import circles in attn/: " + "; ".join(circles)


def test_the_circle_finder_finds_a_circle_and_names_it():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert circular_groups(graph) == [["a", "b", "c"]]
    assert cycle_in(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    assert circular_groups({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_imports_inside_functions_and_packages():
    graph = import_graph()
    assert "attn.models" in graph["attn.sources"]  # its model branch
    assert "attn.inputs" in graph["attn.sources"]
    assert not {"attn.models", "attn.sources"} & graph["attn.inputs"]  # the low level stays low
    assert "attn.measure" in graph["attn.tasks"]  # imported inside a function


def test_the_library_never_imports_streamlit():
    offenders = [f"{name} imports {module}" for name, path in library_modules().items()
                 for module in imports_of(path) if module.split(".")[0] == "streamlit"]
    assert not offenders, offenders


def test_the_pages_never_import_torch():
    # views/ per DESIGN.md; ui/ promises the same in its docstring
    pages = sorted((ROOT / "views").glob("*.py")) + sorted((ROOT / "ui").glob("*.py"))
    offenders = [f"{path.relative_to(ROOT)} imports {module}" for path in pages
                 for module in imports_of(path) if module.split(".")[0] == "torch"]
    assert pages and not offenders, offenders
