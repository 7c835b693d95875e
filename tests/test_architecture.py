"""The shape the code keeps: no import circles, and lower layers never import upper ones."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
LOWER = ("data", "graph", "features", "nets", "structure", "losses", "options", "utils")
UPPER = ("labelfree.methods", "labelfree.pipeline", "labelfree.cli", "labelfree.report")


def _modules() -> dict[str, Path]:
    mods = {}
    for p in SRC.rglob("*.py"):
        parts = p.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = p
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """Modules of the package imported anywhere in ``path`` (lazy imports included)."""
    out = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            # a package's own submodules are not a dependency of the package on itself
            if t in mods and t != name and not name.startswith(t + "."):
                if not (is_pkg and t.startswith(name + ".")):
                    out.add(t)
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, mods) for m, p in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def test_no_import_circles():
    cycles = _cycles(_graph())
    assert not cycles, f"import circles: {cycles}"


def test_lower_layers_do_not_import_upper_ones():
    bad = []
    for mod, deps in _graph().items():
        if mod.split(".")[1] in LOWER if mod.count(".") else False:
            bad += [(mod, d) for d in deps if d.startswith(UPPER)]
    assert not bad, f"lower layer imports an upper one: {bad}"


def test_the_check_finds_a_circle(tmp_path, monkeypatch):
    """The circle check itself can fail: two modules importing each other are found."""
    pkg = tmp_path / "labelfree"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from labelfree.b import g\n")
    (pkg / "b.py").write_text("from labelfree import a\n")
    monkeypatch.setattr(__import__(__name__), "SRC", tmp_path)
    assert _cycles(_graph()) == [["labelfree.a", "labelfree.b"]]


def test_no_source_file_over_400_lines():
    long = {
        str(p.relative_to(SRC)): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert not long, f"split these modules (one concern each): {long}"
