"""The engine is pure: standard library only (design.md, "Layers")."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "flask_popaccounts" / "engine"


def test_importing_the_engine_loads_only_the_standard_library() -> None:
    code = (
        "import sys, json; before = set(sys.modules);"
        "import flask_popaccounts.engine, flask_popaccounts.engine.sync;"
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ENGINE.parents[1], check=True)
    loaded = json.loads(out.stdout)
    foreign = sorted(
        m for m in loaded
        if m.split(".")[0] not in sys.stdlib_module_names and m.split(".")[0] != "flask_popaccounts"
    )
    assert foreign == []
    assert not any(m.startswith(("flask.", "sqlalchemy")) or m == "flask" for m in loaded)
    ours = [m for m in loaded if m.startswith("flask_popaccounts.")]
    assert all(m.startswith("flask_popaccounts.engine") for m in ours), ours


def test_engine_sources_import_only_stdlib_or_engine() -> None:
    bad: list[str] = []
    for path in sorted(ENGINE.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: must stay inside the engine package
                    if node.level > 1:
                        bad.append(f"{path.name}: from {'.' * node.level}{node.module}")
                    continue
                names = [node.module or ""]
            else:
                continue
            for name in names:
                if name.split(".")[0] not in sys.stdlib_module_names:
                    bad.append(f"{path.name}: {name}")
    assert bad == []
