"""No first-party modules import each other in a circle (services/ and libs/).

Walks the packages named in pyproject's [tool.setuptools] package-dir, follows
every `import x` / `from x import y` (absolute and relative, at any depth in a
file, TYPE_CHECKING blocks included: a circle of type-only imports is still a
circle of modules) and fails naming each circle found.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def first_party_modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every package in package-dir."""
    config = tomllib.loads((root / "pyproject.toml").read_text())
    modules: dict[str, Path] = {}
    for package, folder in config["tool"]["setuptools"]["package-dir"].items():
        base = root / folder
        for path in base.rglob("*.py"):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the first-party modules it imports (a package's __init__ via `from`
    counts only when the name imported is itself a module)."""

    def resolve(module: str, level: int, name: str | None, current: str) -> str | None:
        if level:
            parts = current.split(".")
            keep = len(parts) - level + (1 if modules[current].name == "__init__.py" else 0)
            module = ".".join(parts[:keep] + ([module] if module else []))
        candidates = [f"{module}.{name}", module] if name else [module]
        return next((c for c in candidates if c in modules), None)

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for current, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [resolve(a.name, 0, None, current) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                targets = [
                    resolve(node.module or "", node.level, a.name, current) for a in node.names
                ]
                targets = [t for t in targets if t and modules[t].name != "__init__.py"]
            else:
                continue
            graph[current] |= {t for t in targets if t and t != current}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_walk_sees_the_first_party_packages() -> None:
    modules = first_party_modules(ROOT)
    graph = import_graph(modules)
    # guards against a walk that silently finds nothing (and so no circle)
    assert "callmeter_worker" in modules
    assert "callmeter_events" in modules
    assert "callmeter_common.bus" in graph["callmeter_worker.supervisor.main"]


def test_circle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    found = circles(import_graph(first_party_modules(ROOT)))
    assert not found, "modules importing each other in a circle:\n" + "\n".join(
        " <-> ".join(component) for component in found
    )
