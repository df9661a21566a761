"""The package layout: no import cycle among gbench's modules (module-level imports, read from the source),
and every file written through the one atomic writer."""
from __future__ import annotations

import ast
from pathlib import Path

import gbench

ROOT = Path(gbench.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module -> the gbench modules it imports at module level (not inside functions)."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gbench"):
                for alias in node.names:  # `from gbench.x import y`: y may be a module itself
                    sub = f"{node.module}.{alias.name}"
                    deps.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("gbench")}
        graph[name] = {d for d in deps if d in modules and d != name and not name.startswith(d + ".")
                       and d != "gbench"}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_finds_a_planted_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_between_gbench_modules() -> None:
    graph = _imports()
    assert "gbench.metrics.classifier_jsd" in graph and "gbench.metrics.fidelity" in graph
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_files_are_written_through_the_one_atomic_writer() -> None:
    offenders = []
    for path in ROOT.rglob("*.py"):
        if path.name == "atomic.py":
            continue
        text = path.read_text()
        if "os.replace(" in text or "tempfile.mkstemp(" in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"write through gbench.atomic.write_atomic instead: {offenders}"
