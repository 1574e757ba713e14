"""The import graph of ``pipeline``: no cycles, no module importing a layer above its own, no stage importing another.

Every module under ``pipeline/`` is parsed with ``ast``; an import counts wherever it is written (at module level, in
a function, under ``if TYPE_CHECKING``), since a deferred import is still a dependency, only a hidden one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "pipeline"

# lowest first; a module may import its own layer or a lower one. ``x.*`` is the package ``x`` and all under it.
LAYERS = [
    ("core", ["pipeline", "pipeline.errors", "pipeline.gha", "pipeline.formatting", "pipeline.templating",
              "pipeline.records", "pipeline.progress", "pipeline.flags", "pipeline.config_reads",
              "pipeline.config_types", "pipeline.config_ops", "pipeline.config_data", "pipeline.config",
              "pipeline.schemas", "pipeline.manifest", "pipeline.prices", "pipeline.github", "pipeline.prompts",
              "pipeline.shutdown"]),
    ("store", ["pipeline.store.*"]),
    ("artifacts", ["pipeline.artifacts.*"]),
    ("llm, data, stats, model", ["pipeline.llm.*", "pipeline.data.*", "pipeline.stats.*", "pipeline.model.*"]),
    ("judging, report, dispatch, around the loop",
     ["pipeline.judging.*", "pipeline.report.*", "pipeline.dispatch",
      "pipeline.rollout.*", "pipeline.tracking.*", "pipeline.feedback.*"]),
    ("stages and entry points", ["pipeline.stages.*", "pipeline.cli", "pipeline.__main__", "pipeline.task_id"]),
]
STAGES = "pipeline.stages"
STAGES_SHARED = {"pipeline.stages.common"}  # what every stage may import
STAGES_CHAIN = "pipeline.stages.run"  # chains the stages: may import every one


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def discover() -> dict[str, Path]:
    """Module name -> file, for every module under ``pipeline/``."""
    return {module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py")) if "__pycache__" not in p.parts}


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The pipeline modules that module ``name`` imports: ``from pkg import sub`` counts as ``pkg.sub`` when that
    is a module, else as ``pkg``; importing ``a.b.c`` counts as ``a.b.c`` only (its parents are run, not used)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - (node.level - 1)])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.add(sub if sub in modules else source)
    return {m for m in found if m in modules and m != name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = discover()
    return {name: imported(name, path, modules) for name, path in modules.items()}


def layer_of(module: str) -> int | None:
    for rank, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            if pattern.endswith(".*"):
                if module == pattern[:-2] or module.startswith(pattern[:-1]):
                    return rank
            elif module == pattern:
                return rank
    return None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (its modules in import order, the first repeated at the end) per strongly connected component."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; the graph is small enough for recursion
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
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(graph, component) for component in components]


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first back to it)."""
    start = min(component)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & component):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if nxt not in came_from:
                    came_from[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle in the component {sorted(component)}")


def test_every_module_has_a_layer(graph):
    unplaced = sorted(m for m in graph if layer_of(m) is None)
    assert not unplaced, (f"modules in no layer: {', '.join(unplaced)}; put each in a layer of LAYERS in "
                          f"{Path(__file__).name} (the lowest one whose modules it needs)")


def test_no_import_cycles(graph):
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_no_module_imports_a_higher_layer(graph):
    upward = []
    for module, targets in sorted(graph.items()):
        own = layer_of(module)
        for target in sorted(targets):
            theirs = layer_of(target)
            if own is not None and theirs is not None and theirs > own:
                upward.append(f"{module} ({LAYERS[own][0]}) imports {target} ({LAYERS[theirs][0]})")
    assert not upward, "imports of a higher layer:\n" + "\n".join(upward)


def test_stages_import_only_the_shared_stage_module(graph):
    crossed = []
    for module, targets in sorted(graph.items()):
        if not module.startswith(f"{STAGES}.") or module == STAGES_CHAIN:
            continue
        for target in sorted(targets):
            if target.startswith(f"{STAGES}.") and target not in STAGES_SHARED:
                crossed.append(f"{module} imports {target}")
    assert not crossed, ("stages import other stages (only pipeline.stages.common is shared; only "
                         f"{STAGES_CHAIN} chains them):\n" + "\n".join(crossed))


def test_the_graph_sees_relative_and_deferred_imports():
    """The parser itself: a relative import inside a function resolves to the module it names."""
    modules = discover()
    assert "pipeline.store.base" in imported("pipeline.store", modules["pipeline.store"], modules)
    found = imported("pipeline.stages.run", modules["pipeline.stages.run"], modules)
    assert {"pipeline.stages.synthesize", "pipeline.stages.evaluate"} <= found
