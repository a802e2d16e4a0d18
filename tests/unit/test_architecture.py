"""The package reads as the pipeline: shared vocabulary at the top, then detect, report, respond, operate.

Every import counts, whether at module level, inside a function (lazy, for the cold start) or under
TYPE_CHECKING: an import circle hidden in a function is still a circle for the reader. ARCHITECTURE.md says
the same in prose.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "layers" / "guardrail" / "guardrail"
# A part may import its own modules and those of every part before it, never one after it.
ORDER = ("core", "detect", "report", "respond", "operate")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    """The part a module belongs to: a stage's folder, or the shared vocabulary (core) at the top."""
    segments = module.split(".")
    if len(segments) > 2 or (len(segments) == 2 and (PACKAGE / segments[1]).is_dir()):
        return segments[1]
    return "core"


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Every guardrail module `path` imports, wherever the import statement stands."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("guardrail."))
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module
            and (node.module == "guardrail" or node.module.startswith("guardrail."))
        ):
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in modules else node.module)
    return {m for m in found if m in modules and m != "guardrail"}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {name: imports_of(path, modules) - {name} for name, path in paths.items()}


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports against the order of the parts."""
    rank = {part: i for i, part in enumerate(ORDER)}
    problems = []
    for importer, imported in sorted(graph.items()):
        for target in sorted(imported):
            if target.rsplit(".", 1)[0] == importer:
                continue  # a package may name its own modules
            if rank[part_of(target)] > rank[part_of(importer)]:
                problems.append(f"{importer} ({part_of(importer)}) imports {target} ({part_of(target)})")
    return problems


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each a circle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
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
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_part_imports_only_itself_and_the_parts_before_it() -> None:
    assert violations(import_graph()) == []


def test_no_import_circles() -> None:
    assert circles(import_graph()) == []


def test_every_module_belongs_to_a_known_part() -> None:
    parts = {part_of(m) for m in import_graph()}
    assert parts <= set(ORDER), parts - set(ORDER)
    assert set(ORDER) <= parts  # every part the document names exists


def test_architecture_document_names_every_part_and_module() -> None:
    text = (PACKAGE.parents[2] / "ARCHITECTURE.md").read_text()
    for part in ORDER[1:]:
        assert f"`{part}/`" in text, f"ARCHITECTURE.md does not describe {part}/"
    for path in PACKAGE.rglob("*.py"):
        if path.name != "__init__.py":
            assert f"`{path.name}`" in text, f"ARCHITECTURE.md does not mention {path.relative_to(PACKAGE)}"


# The checks themselves must be able to fail: a graph with the faults they look for.
def test_the_checks_catch_an_upward_import_and_a_circle() -> None:
    graph = {
        "guardrail.model": {"guardrail.detect.verdict"},  # vocabulary reaching into a stage
        "guardrail.detect.verdict": {"guardrail.model"},
        "guardrail.respond.handler": {"guardrail.respond.act"},
        "guardrail.respond.act": {"guardrail.respond.handler"},
    }
    assert violations(graph) == ["guardrail.model (core) imports guardrail.detect.verdict (detect)"]
    assert circles(graph) == [
        ["guardrail.detect.verdict", "guardrail.model"],
        ["guardrail.respond.act", "guardrail.respond.handler"],
    ]


@pytest.mark.parametrize(
    ("module", "part"),
    [
        ("guardrail.model", "core"),
        ("guardrail.detect.classifier", "detect"),
        ("guardrail.respond", "respond"),
    ],
)
def test_part_of(module: str, part: str) -> None:
    assert part_of(module) == part
