"""The package's layers, read from its own imports: arrows only point down, no import cycle, and an import
inside a function says why it is there (to keep a heavy dependency off an import path, never to dodge a
cycle). `python -m pytest tests/test_layers.py -q` reprints the offending lines."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "thesis_lib"

# Bottom to top: a module may import from its own layer or one below it, never from above.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("", "genres", "paths", "errors", "storage", "logs", "offline", "machine", "versions",
     "tables"),  # "" is the package's own __init__
    ("data",),
    ("models",),
    ("metrics", "train"),
    ("detection",),
    ("experiments",),
    ("xai", "analysis"),
    ("plots", "bench", "book"),
    ("cli",),
)
# Arrows that the layer order would allow but the design rules out.
FORBIDDEN = {
    ("xai", "analysis"),  # explanations take a model and a batch; the analyses above them find the runs
    ("xai", "experiments"),
    ("xai", "detection"),
    ("metrics", "train"),  # metrics depend on the genres only
    ("metrics", "data"),
    ("metrics", "models"),
}
LAYER_OF = {top: rank for rank, tops in enumerate(LAYERS) for top in tops}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top(module: str) -> str:
    """thesis_lib.data.twin.plot -> data; thesis_lib -> "" (the package's __init__)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path) -> list[tuple[str, str, int, bool, str]]:
    """(importer, imported thesis_lib module, line, inside a function, the import's reason comment) of every
    thesis_lib import in one file."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = resolve(child, module, path.name == "__init__.py")
                targets = [f"{base}.{alias.name}" for alias in child.names] + [base]
            for target in targets:
                while target and target not in MODULES:  # "pkg.mod.name" -> the module that defines it
                    target = target.rpartition(".")[0]
                if target.startswith("thesis_lib") and target != module:
                    found.append((module, target, child.lineno, in_function, reason(lines, child.lineno)))
                    break
            visit(child, nested)

    visit(ast.parse(source), False)
    return found


def reason(lines: list[str], line: int) -> str:
    """The comment on an import's line, or the comment right above it or above the block of imports it
    belongs to ("" when there is none)."""
    comment = lines[line - 1].partition("#")[2].strip()
    above = line - 2
    while not comment and above >= 0 and lines[above].strip().startswith(("#", "from ", "import ")):
        if lines[above].strip().startswith("#"):
            comment = lines[above].strip().lstrip("# ")
        above -= 1
    return comment


# Entry points (`__main__` modules) are programs, not layers: they are left out.
IMPORTS = [row for module, path in MODULES.items() if not module.endswith(".__main__")
           for row in imports_of(module, path)]


def test_every_module_sits_in_a_layer():
    assert not {top(module) for module in MODULES} - set(LAYER_OF)


def test_imports_only_point_down():
    upward = [f"{importer}:{line} imports {imported} ({top(importer) or 'thesis_lib'} -> {top(imported)})"
              for importer, imported, line, _, _ in IMPORTS
              if LAYER_OF[top(imported)] > LAYER_OF[top(importer)] or (top(importer), top(imported)) in FORBIDDEN]
    assert not upward, "\n".join(upward)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in edges.get(node, ()):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
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

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return found


def test_no_import_cycle_between_modules_or_packages():
    """Counting imports inside functions too: moving them to the top must not make a cycle."""
    modules: dict[str, set[str]] = defaultdict(set)
    packages: dict[str, set[str]] = defaultdict(set)
    for importer, imported, _, _, _ in IMPORTS:
        if not imported.startswith(importer + "."):  # a package's __init__ may gather its own modules
            modules[importer].add(imported)
        if top(importer) != top(imported):
            packages[top(importer)].add(top(imported))
    assert cycles(modules) == [] and cycles(packages) == []


def test_an_import_inside_a_function_says_why():
    """Only the command line imports lazily by design (so `thesis --help` stays instant); anywhere else an
    import inside a function carries its reason as a comment on it or right above it (a heavy dependency
    kept off an import path), never to dodge a cycle (see the cycle test)."""
    silent = [f"{importer}:{line} imports {imported}" for importer, imported, line, inside, why in IMPORTS
              if inside and top(importer) != "cli" and not why]
    assert not silent, "\n".join(silent)
