"""The layout holds: the three rooms import one way, and inside the machinery each subpackage imports only
what its docstring's `May import:` line names, with no circle between modules. An AST walk, so imports
inside functions count too."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("work", "timing", "measure", "views")  # the data's path; `cli` sits above them all
ROOMS = {"wantrace": ROOT / "wantrace", "wantrace.rules": ROOT / "rules", "wan_reference": ROOT / "wan_reference"}


def module_name(path: Path) -> str:
    for name, folder in sorted(ROOMS.items(), key=lambda kv: -len(str(kv[1]))):
        if path.is_relative_to(folder):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            return ".".join([name, *parts])
    raise AssertionError(path)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, absolute, wherever in the file the import is."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # `from . import rules` imports a module, not a name
            found.update(f"{target}.{alias.name}" for alias in node.names if _is_module(f"{target}.{alias.name}"))
    return found


def _is_module(name: str) -> bool:
    return name in ALL_MODULES


def _sources(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


ALL_FILES = [p for folder in ROOMS.values() for p in _sources(folder)]
ALL_MODULES = {module_name(p) for p in ALL_FILES}
OURS = ("wantrace", "wan_reference")


def ours(imported: set[str]) -> set[str]:
    return {m for m in imported if m.split(".")[0] in OURS}


def stage_of(module: str) -> str:
    """`wantrace.work.trace` -> `wantrace.work`; the rule book and the model are rooms of their own."""
    if module.startswith("wantrace.rules"):
        return "wantrace.rules"
    if module.startswith("wan_reference"):
        return "wan_reference"
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and parts[1] in STAGES else module


def allowed(stage: str) -> set[str]:
    """What a stage's docstring says it may import (its own modules always)."""
    doc = importlib.import_module(stage).__doc__ or ""
    lines = [line for line in doc.splitlines() if line.startswith("May import:")]
    assert len(lines) == 1, f"{stage}: its docstring needs one 'May import:' line"
    return {name.strip() for name in lines[0].removeprefix("May import:").split(",")} | {stage}


def test_rooms_import_one_way():
    for path in _sources(ROOMS["wantrace.rules"]):
        bad = {m for m in ours(imports_of(path)) if not m.startswith("wantrace.rules")}
        assert not bad, f"the rule book imports {bad} in {path.name}"
    for path in _sources(ROOMS["wan_reference"]):
        bad = {m for m in ours(imports_of(path)) if not m.startswith("wan_reference")}
        assert not bad, f"the model imports {bad} in {path.name}"


@pytest.mark.parametrize("stage", STAGES)
def test_stage_imports_only_what_its_docstring_allows(stage):
    may = allowed(f"wantrace.{stage}")
    for path in _sources(ROOMS["wantrace"] / stage):
        for m in ours(imports_of(path)):
            if m == "wantrace":  # the package itself: __version__
                continue
            assert stage_of(m) in may, f"{module_name(path)} imports {m}, outside {sorted(may)}"


def test_stages_follow_the_data_path():
    """Each stage may import only stages before it on the path: no stage lists a later one."""
    for i, stage in enumerate(STAGES):
        later = {f"wantrace.{s}" for s in STAGES[i + 1:]}
        assert not allowed(f"wantrace.{stage}") & later, stage


def test_no_module_outside_a_stage_but_the_cli():
    top = {p.stem for p in (ROOT / "wantrace").glob("*.py")}
    assert top == {"__init__", "cli"}, f"modules outside the stages: {top - {'__init__', 'cli'}}"


def test_no_import_circle():
    graph = {module_name(p): {m for m in ours(imports_of(p)) if m in ALL_MODULES and m != module_name(p)}
             for p in ALL_FILES}
    # a package's __init__ importing its own submodules (the rule book registering its rules) is not a circle
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not (t.startswith(name + ".") and name in ROOMS)}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_the_walk_sees_imports():
    """The checker is not vacuous: it resolves relative imports, including ones inside functions."""
    counters = ROOMS["wantrace"] / "measure" / "counters.py"
    found = imports_of(counters)
    assert "wantrace.timing.tiles" in found and "wantrace.measure.device" in found
    assert "wantrace.measure.probe" in found  # imported inside _child()
    assert stage_of("wantrace.views.render") == "wantrace.views"
    assert "wantrace.measure" not in allowed("wantrace.timing")
