"""Import arrows point down: a lower room never reaches up into a room built on it, not even lazily
inside a function (that is how import loops hide until a refactor makes one fire)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "audit"


def audit_imports(rel: str) -> set[str]:
    """Every ``audit.*`` module imported anywhere in ``audit/<rel>`` (top level or inside functions)."""
    path = PACKAGE / rel
    here = ["audit", *Path(rel).with_suffix("").parts[:-1]]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            names = [f"{mod}.{a.name}" for a in node.names] if not node.module else [mod]
            out.update(n for n in names if n.startswith("audit"))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("audit"))
    return out


def reaches(rel: str, room: str) -> bool:
    return any(m == room or m.startswith(room + ".") for m in audit_imports(rel))


@pytest.mark.parametrize("rel, above", [
    # Plain settings sit below the evaluators and the suite that assembles them.
    ("config.py", ["audit.evaluators", "audit.suite", "audit.runner", "audit.gates"]),
    # The suite sits above both config and evaluators; the runner above the suite.
    ("suite.py", ["audit.runner", "audit.cli"]),
    # Generation caching is shared by the runner, the sections and the attack wrapper, below all three;
    # the wrapper is used by an evaluator, so it must not import evaluators back.
    ("generation.py", ["audit.evaluators", "audit.runner", "audit.attacks", "audit.suite"]),
    ("attacks/wrapper.py", ["audit.evaluators", "audit.runner"]),
])
def test_no_arrow_points_up(rel, above):
    assert (PACKAGE / rel).is_file(), rel
    up = [room for room in above if reaches(rel, room)]
    assert not up, f"audit/{rel} imports {up}, which are built on it"


def test_the_checker_sees_lazy_imports():
    # A function-level import counts: evaluators/base.py resolves paths through config lazily.
    assert reaches("evaluators/base.py", "audit.config")
    assert reaches("runner.py", "audit.suite")
