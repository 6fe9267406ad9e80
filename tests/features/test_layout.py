"""The package's shape (docs/internals/layout.rst): few top-level modules, and no wide import circle.

The layer order itself is import-linter's contract in ``setup.cfg`` (``make lint``); these are the two limits a
contract cannot state. Every import counts, function-local and type-only ones included.
"""

from pathlib import Path

import grimp
import pytest

import critical_path

#: The front doors at the top: Django's, Celery's and pytest's conventional names and the documented modules.
MAX_TOP_LEVEL_MODULES = 20
#: A circle of two or three modules in one part is allowed where commented; anything wider is a layering mistake.
MAX_CIRCLE = 3


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("critical_path", cache_dir=None)


def strongly_connected(graph: grimp.ImportGraph) -> list[set[str]]:
    """The import circles: Tarjan's strongly connected components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == module:
                    break
            if len(component) > 1:
                components.append(component)

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return components


def test_no_import_circle_is_wider_than_three_modules(graph):
    wide = [sorted(component) for component in strongly_connected(graph) if len(component) > MAX_CIRCLE]
    assert not wide, f"import circles wider than {MAX_CIRCLE} modules (cut an edge as docs/internals/layout.rst says)"


def test_the_top_level_holds_only_the_front_doors():
    package = Path(critical_path.__file__).parent
    modules = sorted(path.stem for path in package.glob("*.py") if path.stem != "__init__")
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, modules


def test_the_circle_finder_finds_a_circle():
    graph = grimp.ImportGraph()
    for name in ("a", "a.b", "a.c", "a.d"):
        graph.add_module(name)
    graph.add_import(importer="a.b", imported="a.c")
    graph.add_import(importer="a.c", imported="a.d")
    graph.add_import(importer="a.d", imported="a.b")
    assert strongly_connected(graph) == [{"a.b", "a.c", "a.d"}]
