"""The README stays true: every config key is documented, the two commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from flask_popaccounts.config import DEFAULTS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_config_key_is_in_the_readme():
    missing = [key for key in DEFAULTS if f"`{key}`" not in README]
    assert not missing, f"undocumented config keys: {missing}"


def test_the_two_setup_commands_are_make_targets_and_ci_runs_the_test_one():
    assert "make demo" in README and "make test" in README
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def _architecture_tree() -> str:
    section = README.split("## Architecture", 1)[1]
    return section.split("```text", 1)[1].split("```", 1)[0]


def test_the_architecture_tree_lists_every_module_and_no_other():
    tree = _architecture_tree()
    package = ROOT / "flask_popaccounts"
    modules = {p.name for p in package.rglob("*.py")
               if p.name != "__init__.py" and "migrations" not in p.parts}
    drawn = set(re.findall(r"\b(\w+\.py)\b", tree)) - {"__init__.py"}
    assert modules - drawn == set(), "modules the README's tree does not show"
    assert drawn - modules == set(), "modules the README's tree shows that do not exist"
    for folder in ("engine", "storage", "services", "web", "jobs"):
        assert f"{folder}/" in tree
