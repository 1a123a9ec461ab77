"""Import arrows point down: a lower room never reaches up into a room built on it, not even lazily
inside a function (that is how import loops hide until a refactor makes one fire).

The whole graph is walked from the source (every ``import`` and ``from ... import``, module level
or inside functions, resolved to the audit module it names): it must have no cycle, and no arrow
may run from a layer of :data:`LAYERS` to a higher one. Run ``pytest tests/test_layers.py -q`` to
measure it; the failure message lists each offending arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "audit"

# Low to high. A module belongs to the layer of the longest prefix that names it.
LAYERS = [
    # Leaves: errors, the version, input/output helpers, the registry mechanism.
    ["audit.errors", "audit.version", "audit.io", "audit.registry"],
    # Plain settings and data, pure metrics and the model-file rules.
    ["audit.config", "audit.stats", "audit.results", "audit.metrics", "audit.perturb",
     "audit.models.chat", "audit.models.template_sandbox", "audit.models.files", "audit.models.fingerprint"],
    # The model wing (interface, both backends, builders), data loading, generation caching, scorers, gates;
    # tracking (MLflow/TensorBoard logging of plain results and records: the runner, finetune and harden call it).
    ["audit.models", "audit.data", "audit.hf_data", "audit.generation", "audit.scorers", "audit.probes", "audit.baseline", "audit.gates",
     "audit.tracking"],
    # The areas that use a model: attacks, explanations, suite sections, training.
    ["audit.attacks", "audit.explain", "audit.evaluators", "audit.finetune", "audit.scoring", "audit.refusal_train",
     "audit.safety_training"],
    ["audit.report", "audit.preflight"],
    ["audit.suite"],
    ["audit.runner"],
    ["audit.harden"],
    # Top: entry points, and the scripts beside the bundled data that rebuild or check it.
    ["audit.cli", "audit.launch", "audit.pytest_plugin", "audit.__main__", "audit.suites", "audit"],
]


def modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = list(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


MODULES = modules()


def _resolve(name: str) -> str:
    """The audit module an import names (``audit.x.y`` may name attribute ``y`` of module ``audit.x``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def imports_of(mod: str) -> set[str]:
    """Every audit module ``mod`` imports anywhere (top level or inside functions)."""
    path = MODULES[mod]
    pkg = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = pkg[:len(pkg) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            out.update(_resolve(f"{target}.{a.name}") or _resolve(target) for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(_resolve(a.name) for a in node.names)
    return {m for m in out if m.startswith("audit") and m != mod}


GRAPH = {m: imports_of(m) for m in MODULES}


def audit_imports(rel: str) -> set[str]:
    """The audit modules ``audit/<rel>`` imports."""
    parts = list(Path(rel).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return GRAPH[".".join(["audit", *parts])]


def reaches(rel: str, room: str) -> bool:
    return any(m == room or m.startswith(room + ".") for m in audit_imports(rel))


def layer(mod: str) -> int | None:
    best = None
    for i, names in enumerate(LAYERS):
        for p in names:
            if mod == p or (p != "audit" and mod.startswith(p + ".")):
                if best is None or len(p) > best[1]:
                    best = (i, len(p))
    return None if best is None else best[0]


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
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
                found.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    assert cycles() == []


def test_every_module_has_a_layer():
    assert [m for m in MODULES if layer(m) is None] == []


def test_no_arrow_runs_up_a_layer():
    up = [f"{a} -> {b}" for a in sorted(GRAPH) for b in sorted(GRAPH[a]) if layer(b) > layer(a)]
    assert up == [], "imports that run up a layer:\n" + "\n".join(up)


@pytest.mark.parametrize("rel, above", [
    # Plain settings sit below the evaluators and the suite that assembles them.
    ("config.py", ["audit.evaluators", "audit.suite", "audit.runner", "audit.gates"]),
    # The suite sits above both config and evaluators; the runner above the suite.
    ("suite.py", ["audit.runner", "audit.cli"]),
    # Generation caching is shared by the runner, the sections and the attack wrapper, below all three;
    # the wrapper is used by an evaluator, so it must not import evaluators back.
    ("generation.py", ["audit.evaluators", "audit.runner", "audit.attacks", "audit.suite"]),
    ("attacks/wrapper.py", ["audit.evaluators", "audit.runner"]),
    # The two backends implement one interface and never import each other, nor anything above them.
    ("models/local.py", ["audit.preflight", "audit.runner", "audit.models.served", "audit.suite"]),
    ("models/served/model.py", ["audit.models.local", "audit.preflight", "audit.runner"]),
    ("models/served/spec.py", ["audit.models.local"]),
    ("models/interface.py", ["audit.models.local", "audit.models.served"]),
    # Preflight checks a loaded suite; it never loads one.
    ("preflight.py", ["audit.suite", "audit.runner"]),
    # The GGUF converter and the builtin builders share models/files, not each other's privates.
    ("models/gguf.py", ["audit.models.builtin", "audit.models.local"]),
    ("models/files.py", ["audit.models.builtin", "audit.models.gguf", "audit.models.local"]),
    # Scorers take fingerprints from the fingerprint module, never the local model.
    ("scorers/base.py", ["audit.models.local"]),
    ("scorers/hf.py", ["audit.models.local"]),
    # fine-tuning is a training library: harden (which runs audits) sits above it.
    ("finetune/__init__.py", ["audit.harden", "audit.runner", "audit.suite", "audit.report"]),
    ("finetune/commands.py", ["audit.harden", "audit.runner"]),
    ("finetune/run.py", ["audit.harden", "audit.runner", "audit.suite"]),
    # Tracking logs what others produce: it never imports the code that calls it.
    ("tracking/__init__.py", ["audit.runner", "audit.harden", "audit.finetune", "audit.suite", "audit.cli"]),
    ("tracking/store.py", ["audit.models.local", "audit.runner", "audit.finetune"]),
    ("tracking/training.py", ["audit.finetune", "audit.harden"]),
])
def test_no_arrow_points_up(rel, above):
    assert (PACKAGE / rel).is_file(), rel
    up = [room for room in above if reaches(rel, room)]
    assert not up, f"audit/{rel} imports {up}, which are built on it"


def test_the_checker_sees_lazy_imports():
    # A function-level import counts: the model loader imports the local backend inside load_model.
    assert reaches("models/load.py", "audit.models.local")
    assert reaches("runner.py", "audit.suite")


def test_the_checker_finds_a_planted_cycle(monkeypatch):
    monkeypatch.setitem(GRAPH, "audit.config", GRAPH["audit.config"] | {"audit.suite"})
    assert any("audit.config" in c and "audit.suite" in c for c in cycles())


def test_no_private_name_crosses_a_module():
    """``from .x import _name`` couples a module to another's internals: make the name public or keep it home."""
    crossing = []
    for mod, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("audit")):
                crossing += [f"{mod}: {a.name}" for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert crossing == []
