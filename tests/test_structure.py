"""The package's shape, read from the source with ``ast``: no import circle, imports that
point down (library -> nothing above it; commands -> library; the demo wing -> library),
no private name imported from another module, modules of a readable size.

Every ``import`` counts, also one inside a function (a lazy import is still a dependency),
except those under ``if TYPE_CHECKING:``. Importing ``a.b.c`` runs ``a/__init__.py`` and
``a/b/__init__.py`` first, so it depends on those packages too (except a module's own
packages, which Python is already importing when the module runs).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ccl

SRC = Path(ccl.__file__).resolve().parent  # src/ccl of the checkout under test
TESTS = Path(__file__).resolve().parent
MAX_LINES = 700


def module_name(path: Path, root: Path = SRC) -> str:
    parts = ("ccl", *path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path = SRC) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path, name: str) -> list[tuple[str, list[str], int]]:
    """(imported module, imported names, line) of every import in ``path`` outside
    ``if TYPE_CHECKING:`` blocks; relative imports resolved against ``name``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, list[str], int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, [], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            found.append((module, [alias.name for alias in node.names], node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def dependencies(known: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the ``ccl`` modules importing it runs (packages' ``__init__`` included)."""
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        deps: set[str] = set()
        for module, names, _ in imports(path, name):
            if not module.startswith("ccl"):
                continue
            targets = [module] + [f"{module}.{n}" for n in names if f"{module}.{n}" in known]
            for target in targets:
                parts = target.split(".")
                deps.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
        # a module's own packages are already being imported when it runs: no edge to them
        graph[name] = {d for d in deps if d in known and not (name + ".").startswith(d + ".")}
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
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
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return circles


def test_circle_finder_finds_a_circle_through_a_package_init(tmp_path):
    # a.py imports pkg.b; pkg/__init__.py imports pkg.c; pkg/c.py imports a
    (tmp_path / "pkg").mkdir()
    (tmp_path / "a.py").write_text("from ccl.pkg.b import x\n")
    (tmp_path / "pkg" / "__init__.py").write_text("from ccl.pkg import c\n")
    (tmp_path / "pkg" / "b.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import ccl.pkg.b\n"
        "def f():\n    import ccl.a\n"
    )
    graph = dependencies(modules(tmp_path))
    assert graph["ccl.a"] == {"ccl.pkg", "ccl.pkg.b"}
    assert graph["ccl.pkg.c"] == {"ccl.a"}  # the TYPE_CHECKING import does not count
    assert import_circles(graph) == [["ccl.a", "ccl.pkg", "ccl.pkg.c"]]
    (tmp_path / "pkg" / "c.py").write_text("y = 2\n")
    assert import_circles(dependencies(modules(tmp_path))) == []


def test_no_import_circle():
    circles = import_circles(dependencies(modules()))
    assert circles == [], f"import circles: {circles}"


def _layer(name: str) -> str:
    if name in ("ccl.cli",) or name.startswith("ccl.commands"):
        return "commands"
    if name.startswith("ccl.demo"):
        return "demo"
    return "library"


def test_imports_point_down():
    """The library imports neither the commands nor the demo wing; the demo wing imports no
    command (the commands sit on top of both)."""
    allowed = {"library": {"library"}, "demo": {"library", "demo"}}
    wrong = [
        f"{name} imports {dep}"
        for name, deps in dependencies(modules()).items()
        for dep in deps
        if _layer(name) in allowed and _layer(dep) not in allowed[_layer(name)]
    ]
    assert wrong == []


def _private_imports(paths: dict[str, Path]) -> list[str]:
    found = []
    for name, path in paths.items():
        for module, names, line in imports(path, name):
            if not module.startswith("ccl") or module == name:
                continue
            found += [
                f"{path.name}:{line}: {module}.{n}"
                for n in names
                if n.startswith("_") and not n.startswith("__")
            ]
        # ``ccl.x._y`` attribute chains reach a private name just as well
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
                chain = node
                while isinstance(chain, ast.Attribute):
                    chain = chain.value
                if isinstance(chain, ast.Name) and chain.id == "ccl" and not node.attr.startswith(
                    "__"
                ):
                    found.append(f"{path.name}:{node.lineno}: ...{node.attr}")
    return found


def test_no_private_name_is_imported_from_another_module():
    tests = {f"tests.{p.stem}": p for p in sorted(TESTS.rglob("*.py"))}
    assert _private_imports({**modules(), **tests}) == []


def test_modules_are_of_a_readable_size():
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    long = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"


@pytest.mark.parametrize("layer", ["library", "demo", "commands"])
def test_every_layer_has_modules(layer):
    # the checks above would pass vacuously if the layout moved away from these names
    assert any(_layer(name) == layer for name in modules())
