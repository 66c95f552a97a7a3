"""The package's shape: each layer imports only the ones below it (the import-linter contract in pyproject.toml says
which), there is no import circle even counting imports inside functions, and the bottom layers load light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "minillama"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> list[tuple[str, int, bool]]:
    """(imported minillama module, line, inside a function?) for every import statement in `path`; `from a import b`
    counts as an import of `a.b` when that is a module, else of `a`."""
    name, is_pkg = module_name(path), path.name == "__init__.py"
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, inside) for a in child.names if a.name.startswith("minillama"))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = ".".join(anchor[: len(anchor) - child.level + 1] + ([base] if base else []))
                if base.startswith("minillama"):
                    for alias in child.names:
                        sub = f"{base}.{alias.name}"
                        found.append((sub if sub in modules else base, child.lineno, inside))
            visit(child, inside)

    visit(ast.parse(path.read_text()), False)
    return found


def import_graph() -> tuple[dict[str, set[str]], int, int]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph, n_function, n_module = {}, 0, 0
    for name, path in files.items():
        edges = imported_modules(path, set(files))
        graph[name] = {target for target, _, _ in edges if target in files and target != name}
        n_function += sum(inside for _, _, inside in edges)
        n_module += sum(not inside for _, _, inside in edges)
    return graph, n_function, n_module


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def dfs(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def test_no_import_cycle_counting_imports_inside_functions():
    """An import moved into a function to dodge a circle still makes a circle; there is none, either way."""
    graph, _, _ = import_graph()
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


HIGHER = (
    "minillama.train",
    "minillama.posttrain",
    "minillama.tooluse",
    "minillama.cli",
    "minillama.parallel",
    "minillama.data",
    "minillama.grading",
    "minillama.bench",
)


@pytest.mark.parametrize(
    "module, allowed",
    [
        ("minillama.model", ()),
        (
            "minillama.tooluse.tools.sandbox",
            (
                "minillama.tooluse",
                "minillama.tooluse.tools",
                "minillama.tooluse.tools.sandbox",
                "minillama.tooluse.format",
            ),
        ),
    ],
)
def test_bottom_layers_load_nothing_above_them(module, allowed):
    """`import minillama.model` and `import minillama.tooluse.tools.sandbox` (the code interpreter, which runs in its
    own process) load none of training, post-training, the rest of tool use, parallelism, data or the commands."""
    code = (
        f"import sys, {module}; print('\\n'.join(m for m in sys.modules if m.startswith({HIGHER!r}) "
        f"and m not in {tuple(allowed)!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [], f"importing {module} loaded {out}"


def run_python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_the_sandbox_imports_without_torch():
    """The package loads its public names on use, so the code interpreter's module needs only the standard library."""
    assert run_python("import sys, minillama.tooluse.tools.sandbox; print('torch' in sys.modules)") == "False"


def test_minillama_generate_is_the_function_even_after_the_module_was_imported():
    code = (
        "import inspect; from minillama.generate import sample_top_p; from minillama import generate, Transformer; "
        "print(inspect.isfunction(generate), Transformer.__name__)"
    )
    assert run_python(code) == "True Transformer"
