"""The house's rules, read from the source: no import circle (lazy and TYPE_CHECKING imports
count), the service's wings import only the wings below them, the client nothing of the service,
the contract only the standard library, and no module over 400 lines."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("contract", "model_repository", "service", "client", "model_export", "training", "gan_cli")
MAX_LINES = 400

# The service's wings, bottom first: a wing imports only from wings of a lower rank (and itself).
WING_RANK = {"images": 0, "schemas": 1, "served": 2, "lifecycle": 3, "transport": 3, "api": 4, "cli": 5}
EVERY_WING_READS = {"config", "metrics", "request_ids"}  # they import nothing of the service
ENTRY_POINTS = {"__main__", "healthcheck"}  # on top, like cli


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = modules()


def imported(name: str, path: Path) -> Iterator[str]:
    """Every module of the project `name` imports, wherever the import statement is."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: -node.level] if path.name != "__init__.py" else name.split(".")
                if path.name == "__init__.py" and node.level > 1:
                    base = base[: -(node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            # `from pkg import mod` imports pkg.mod; `from mod import name`, mod
            targets = [
                f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module for a in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


GRAPH = {name: set(imported(name, path)) for name, path in MODULES.items()}


def circles() -> list[list[str]]:
    """The graph's strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

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
                found.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    return found


def test_no_import_circle() -> None:
    assert circles() == []


def wing(name: str) -> str:
    """service.served.batcher -> served; service.config -> config."""
    return name.split(".")[1] if name.count(".") else ""


def test_the_service_wings_import_only_downwards() -> None:
    wrong = []
    for name, targets in GRAPH.items():
        if not name.startswith("service."):
            continue
        own = wing(name)
        for target in (t for t in targets if t.startswith("service.")):
            other = wing(target)
            if own in EVERY_WING_READS:
                wrong.append(f"{name} -> {target} (it is read by every wing)")
            elif other in EVERY_WING_READS or own in ENTRY_POINTS or other == own:
                continue
            elif other in ENTRY_POINTS or WING_RANK[other] >= WING_RANK[own]:
                wrong.append(f"{name} -> {target}")
    assert wrong == []


@pytest.mark.parametrize("package", ["client", "contract", "model_repository"])
def test_what_each_package_may_import(package: str) -> None:
    allowed = {"client": {"client", "contract"}, "contract": {"contract"}}.get(
        package, {"model_repository", "contract"}
    )
    wrong = [
        f"{name} -> {target}"
        for name, targets in GRAPH.items()
        if name.split(".")[0] == package
        for target in targets
        if target.split(".")[0] not in allowed
    ]
    assert wrong == []


def test_the_contract_imports_the_standard_library_alone() -> None:
    """Third-party imports too, which the project's graph does not hold."""
    outside = set()
    for name, path in MODULES.items():
        if name.split(".")[0] != "contract":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                outside |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                outside.add(node.module.split(".")[0])
    assert outside - set(sys.stdlib_module_names) - {"contract"} == set()


def test_no_module_over_the_limit() -> None:
    long = {
        name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_the_rules_see_what_they_check() -> None:
    """The graph holds lazy and TYPE_CHECKING imports, and the rules know every wing."""
    assert "service.served.batcher" in GRAPH["service.served.model"]
    assert {wing(n) for n in MODULES if n.startswith("service.") and n.count(".") > 1} <= set(WING_RANK)
    assert "contract.provenance" in GRAPH["contract.provenance_reader"]
