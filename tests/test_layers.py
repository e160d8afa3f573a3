"""The layout holds: no import cycle between the package's modules (function-level imports
included), the core layers name no engine, the sandbox and the evidence know no run pipeline,
and nothing outside tests/ imports from it."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO_ROOT

SRC = REPO_ROOT / "src"
PACKAGE = SRC / "cto_harness"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """Every cto_harness module `path` imports, anywhere in it (a name imported from a package
    counts as its submodule when there is one)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("cto_harness")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.startswith("cto_harness"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return {name for name in found if name in MODULES}


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _cycle() -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(GRAPH):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_package_has_no_import_cycle() -> None:
    assert _cycle() is None, " -> ".join(_cycle() or [])


def _modules_under(prefix: str) -> list[str]:
    return [m for m in MODULES if m == prefix or m.startswith(prefix + ".")]


def test_the_core_layers_name_no_engine() -> None:
    for layer in ("cto_harness.core", "cto_harness.sandbox", "cto_harness.evidence"):
        for module in _modules_under(layer):
            engine_modules = {m for m in GRAPH[module]
                              if m.startswith("cto_harness.engines.")
                              and m != "cto_harness.engines.base"}
            assert not engine_modules, f"{module} imports {engine_modules}"
            text = MODULES[module].read_text()
            assert '".case"' not in text and "CaseEngine" not in text, module


def test_the_sandbox_and_the_evidence_know_no_run_pipeline() -> None:
    for layer in ("cto_harness.sandbox", "cto_harness.evidence"):
        for module in _modules_under(layer):
            above = {m for m in GRAPH[module]
                     if m.startswith(("cto_harness.core", "cto_harness.engines",
                                      "cto_harness.cli", "cto_harness.providers"))}
            assert not above, f"{module} imports {above}"


def test_nothing_outside_tests_imports_from_tests() -> None:
    test_modules = {p.stem for p in (REPO_ROOT / "tests").rglob("*.py")}
    for folder in ("src", "tools", "benchmarks", "harness"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name.split(".")[0] for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module.split(".")[0]]
                bad = [n for n in names if n in test_modules or n == "tests"]
                assert not bad, f"{path.relative_to(REPO_ROOT)} imports {bad} from tests/"
