"""The layers a newcomer sees in the listing are the layers the imports keep.

Every ``import`` in the package is read with ``ast``, those inside functions included
(a lazy import is still a dependency; only ``if TYPE_CHECKING:`` blocks, which never
run, are left out), and checked against the README's architecture:

- ``engine/`` imports only itself (and the standard library: ``tests/engine``);
- the leaves ``config``, ``signals``, ``runtime``, ``i18n`` and ``hooks`` import only the
  engine;
- ``storage/`` imports the engine and itself;
- ``services/`` import storage, the engine and the leaves, never ``web/`` or ``jobs/``;
- ``web/`` and ``jobs/`` import services and below, never each other;
- ``extension`` (the top) registers web and jobs; only ``__init__`` imports it;
- no cycle anywhere among the package's modules.

Also the size rule that keeps modules readable: no function over 80 lines, no module
over 400 (the migrations aside: a revision is one long list of tables).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PKG_DIR = Path(__file__).resolve().parents[1] / "flask_popaccounts"
PKG = "flask_popaccounts"

#: layer of a module (by its first component under the package) -> layers it may import
ALLOWED: dict[str, set[str]] = {
    "engine": {"engine"},
    "config": {"engine"},
    "signals": {"engine"},
    "runtime": {"engine"},
    "i18n": {"engine"},
    "hooks": {"engine"},
    "storage": {"engine", "storage"},
    "services": {"engine", "storage", "services", "config", "signals", "runtime", "i18n",
                 "hooks"},
    "web": {"engine", "storage", "services", "web", "config", "signals", "runtime", "i18n",
            "hooks"},
    "jobs": {"engine", "storage", "services", "jobs", "config", "signals", "runtime", "i18n",
             "hooks"},
    "extension": {"engine", "storage", "services", "web", "jobs", "config", "signals",
                  "runtime", "i18n", "hooks"},
    "__init__": {"extension", "runtime", "hooks"},
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG_DIR.rglob("*.py")):
        parts = list(path.relative_to(PKG_DIR).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([PKG, *parts])] = path
    return out


MODULES = _modules()


def _layer(module: str) -> str:
    rest = module.split(".")[1:]
    return rest[0] if rest else "__init__"


def _imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(imported package module, line) for every import of ``module``, lazy ones too."""
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
                   for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue  # annotations only: never executed, no dependency at run time
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # "from pkg import name": the submodule when name is one, else pkg itself
            targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES and target.startswith(PKG):
                target = target.rpartition(".")[0]  # import a.b.c where c is a name
            if target in MODULES and target != module:
                yield target, node.lineno


GRAPH = {m: sorted({t for t, _ in _imports(m, p)}) for m, p in MODULES.items()}


def test_every_import_points_down_the_layers() -> None:
    bad: set[str] = set()
    for module, path in MODULES.items():
        layer = _layer(module)
        for target, line in _imports(module, path):
            if _layer(target) not in ALLOWED[layer]:
                bad.add(f"{path.relative_to(PKG_DIR.parent)}:{line}: {layer} -> {target}")
    assert not bad, "imports against the layers:\n" + "\n".join(sorted(bad))


def test_there_is_no_import_cycle_lazy_imports_included() -> None:
    # Tarjan's strongly connected components: any component of two or more is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert cycles == []


def test_the_checker_sees_lazy_and_relative_imports() -> None:
    """The walk is not vacuous: it finds the edges the layout is made of."""
    assert "flask_popaccounts.web.blueprint" in GRAPH["flask_popaccounts.extension"]
    assert "flask_popaccounts.runtime" in GRAPH["flask_popaccounts.services.fetching"]
    assert sum(len(v) for v in GRAPH.values()) > 100


def _long_functions(path: Path, limit: int) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > limit:
                yield f"{path.relative_to(PKG_DIR.parent)}:{node.lineno} {node.name}: {length}"


def test_no_function_over_80_lines_and_no_module_over_400() -> None:
    sources = [p for p in MODULES.values() if "migrations" not in p.parts]
    long_functions = [f for p in sources for f in _long_functions(p, 80)]
    long_modules = [f"{p.relative_to(PKG_DIR.parent)}: {n}" for p in sources
                    if (n := len(p.read_text().splitlines())) > 400]
    assert long_functions == [] and long_modules == []
