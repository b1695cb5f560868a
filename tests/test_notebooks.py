"""The committed chapter notebooks: no outputs, a typed parameters cell that agrees with the smoke
profile, only library calls in short cells, and captions that name their data.

These tests read the notebooks as files; running them is the job of tests/browser/ (and `make book`).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from thesis_lib.book.chapters import chapters_from_toc
from thesis_lib.book.execute import declared_parameters

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = chapters_from_toc(ROOT)
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SMOKE = ROOT / "notebooks" / "params" / "smoke.yaml"
# Besides thesis_lib, a chapter may import only these (data handling and display, no modelling code).
ALLOWED_IMPORTS = {"numpy", "pandas", "torch", "IPython"}
MAX_CELL_LINES = 18  # "short cells": a cell does one thing
MAX_LINE_LENGTH = 88  # wider lines scroll sideways in the book's code blocks
TITLE = re.compile(r"^# (\d+|[A-Z])(\.\d+)* [^\n]*[\uac00-\ud7a3][^\n]* · [A-Za-z][^\n]*$")  # "# 3.1 데이터 · Data"


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def parameters_cell(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    return code_cells(notebook)[0]


def test_every_notebook_is_a_chapter_of_the_toc():
    assert NOTEBOOKS, "no notebooks found"
    assert {path.stem for path in NOTEBOOKS} == {chapter.name for chapter in CHAPTERS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    notebook = read(path)
    for index, cell in enumerate(code_cells(notebook)):
        assert cell.outputs == [], f"{path.name}: code cell {index} has outputs (clear them before committing)"
        assert cell.execution_count is None, f"{path.name}: code cell {index} has an execution count"
    assert "papermill" not in notebook.metadata, f"{path.name} is an executed copy (papermill metadata)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_opens_with_a_bilingual_title_then_a_typed_commented_parameters_cell(path):
    notebook = read(path)
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and TITLE.match(first.source.splitlines()[0]), (
        f"{path.name}: the first cell must be a title '# <number> <Korean> · <English>'")
    assert len(first.source.split()) > 30, f"{path.name}: the title needs a short prose introduction"
    cell = parameters_cell(notebook)
    assert "parameters" in cell.metadata.get("tags", []), f"{path.name}: first code cell is not tagged 'parameters'"
    statements = ast.parse(cell.source).body
    assert statements, f"{path.name}: empty parameters cell"
    lines = cell.source.splitlines()
    for statement in statements:
        assert isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name), (
            f"{path.name}: parameters must be typed assignments 'name: type = value  # meaning'")
        assert "#" in lines[statement.lineno - 1], f"{path.name}: parameter {statement.target.id} has no comment"
        ast.literal_eval(statement.value)  # a plain value, as a profile file could give it
    assert declared_parameters(path), f"{path.name}: no parameters"
    assert list(declared_parameters(path)) == [statement.target.id for statement in statements]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_cells_are_short_library_calls(path):
    for index, cell in enumerate(code_cells(read(path))[1:], start=1):
        lines = cell.source.splitlines()
        where = f"{path.name}, code cell {index}"
        assert len(lines) <= MAX_CELL_LINES, f"{where}: {len(lines)} lines; split it or move logic to thesis_lib"
        assert max(map(len, lines)) <= MAX_LINE_LENGTH, f"{where}: a line is longer than {MAX_LINE_LENGTH}"
        tree = ast.parse(cell.source)
        for node in ast.walk(tree):
            assert not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda), (
                f"{where}: defines a function or class; such logic belongs in thesis_lib")
            if isinstance(node, ast.Import | ast.ImportFrom):
                modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module]
                for module in modules:
                    top = module.split(".")[0]
                    assert top == "thesis_lib" or top in ALLOWED_IMPORTS, f"{where}: imports {module}"
                    assert not module.startswith("torch.") and module != "torch.nn", f"{where}: imports {module}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_figure_caption_names_its_data(path):
    notebook = read(path)
    figures = [block for cell in notebook.cells if cell.cell_type == "markdown"
               for block in re.findall(r"```\{glue:figure\}.*?```", cell.source, flags=re.S)]
    assert figures, f"{path.name} has no glued figure"
    for block in figures:
        assert "{glue:text}`data_caption`" in block or "Data: not used" in block, (
            f"{path.name}: caption does not name its data:\n{block}")
    assert not any("display=True" in cell.source for cell in code_cells(notebook))


def _profile() -> dict:
    if not SMOKE.is_file():
        pytest.skip(f"{SMOKE.relative_to(ROOT)} does not exist yet (written with the experiment grid)")
    return yaml.safe_load(SMOKE.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameter_defaults_are_the_smoke_profile(path):
    profile = _profile()
    for name, parameter in declared_parameters(path).items():
        assert name in profile, f"{path.name} declares {name!r}, which {SMOKE.name} lacks"
        assert parameter.default == profile[name] and type(parameter.default) is type(profile[name]), (
            f"{path.name}: {name} defaults to {parameter.default!r}, {SMOKE.name} says {profile[name]!r}")


def test_every_smoke_parameter_is_declared_by_a_chapter():
    profile = _profile()
    if not any(chapter.name.startswith("04_") for chapter in CHAPTERS):
        pytest.skip("the training keys of the profile belong to the chapter-4 notebooks, which do not exist yet")
    declared = set().union(*(declared_parameters(path) for path in NOTEBOOKS))
    unused = sorted(set(profile) - declared)
    assert not unused, f"{SMOKE.name} sets {unused}, which no chapter notebook declares"
