"""The committed chapter notebooks: no outputs, the project's kernel, a parameters cell that declares every
profile key and repeats no value (papermill lists, injects and types them without a warning), only library
calls in short cells, and captions that name their data.

These tests read the notebooks as files; running them is the job of tests/browser/ (and `make book`).
"""

from __future__ import annotations

import ast
import copy
import logging
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from thesis_lib.book.chapters import chapters_from_toc
from thesis_lib.book.execute import PROJECT_KERNEL, declared_parameters
from thesis_lib.experiments.profile import (
    CHAPTER_PARAMETERS,
    DEFAULT_PROFILE,
    PROFILE_KEYS,
    chapter_parameters_cell,
    load_profile,
    profile_from_parameters,
)

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = chapters_from_toc(ROOT)
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SMOKE = ROOT / "notebooks" / "params" / "smoke.yaml"
FULL = ROOT / "notebooks" / "params" / "full.yaml"
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
    assert figures or path.stem.startswith("05_"), f"{path.name} has no glued figure"  # the conclusion: words only
    for block in figures:
        # A chapter with sections on different data glues one caption per data (`ds_data_caption`, ...).
        assert re.search(r"\{glue:text\}`(\w+_)?data_caption`", block) or "Data: not used" in block, (
            f"{path.name}: caption does not name its data:\n{block}")
    assert not any("display=True" in cell.source for cell in code_cells(notebook))


def _chapter_namespace(notebook: nbformat.NotebookNode, parameters: dict | None = None, *,
                       injected: bool = False) -> dict:
    """The chapter's globals after its parameters cell and papermill's injected cell (as papermill writes
    it for `-f`/`-y`/`-p` values; `injected`: the notebook already has it), before any other cell runs."""
    from papermill.parameterize import parameterize_notebook

    if parameters:
        notebook = parameterize_notebook(copy.deepcopy(notebook), parameters, kernel_name="python3",
                                         language="python")
    namespace: dict = {}
    for cell in code_cells(notebook)[:2 if parameters or injected else 1]:
        exec(cell.source, namespace)  # noqa: S102 - the committed parameters cell and papermill's literals
    return namespace


LOADERS = [path for path in NOTEBOOKS if "profile_from_parameters(globals())" in path.read_text(encoding="utf-8")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_chapter_declares_every_profile_key_and_repeats_no_value(path):
    """The parameters cell is the profile interface, generated from `Profile`: `profile` names the profile,
    every other key is None ("the profile's"), so a chapter never repeats smoke.yaml's values."""
    cell = parameters_cell(read(path))
    meaning = cell.source.splitlines()[0].split("#", 1)[1].strip()
    assert cell.source == chapter_parameters_cell(meaning), (
        f"{path.name}: the parameters cell is not the profile's; replace it with "
        f"thesis_lib.experiments.profile.chapter_parameters_cell({meaning!r})")
    declared = declared_parameters(path)
    assert tuple(declared) == CHAPTER_PARAMETERS == PROFILE_KEYS
    assert declared["profile"].default == DEFAULT_PROFILE
    assert all(parameter.default is None for name, parameter in declared.items() if name != "profile")
    assert path in LOADERS  # it loads (and so checks) the parameters it is given


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_with_the_project_kernel(path):
    """A plain `papermill notebooks/X.ipynb out.ipynb` runs the kernel `make venv` registers, as the build does."""
    assert read(path).metadata.kernelspec.name == PROJECT_KERNEL


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_help_notebook_lists_every_parameter_without_a_warning(path, caplog):
    from click.testing import CliRunner
    from papermill.cli import papermill

    with caplog.at_level(logging.WARNING, logger="papermill"):
        result = CliRunner().invoke(papermill, ["--help-notebook", str(path)])
    assert result.exit_code == 0, result.output
    assert not [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    listed = re.findall(r"^  (\w+): (.+?) \(default (.*?)\)$", result.output, flags=re.M)
    assert [name for name, _, _ in listed] == list(PROFILE_KEYS)
    types = {name: annotation for name, annotation, _ in listed}
    assert (types["data_root"], types["splits"], types["epochs"]) == ("Optional[str]", "Optional[list[str]]",
                                                                      "Optional[int]")
    assert "Unknown type" not in result.output
    assert "the synthetic twin at `twin_root`" in result.output  # each key's meaning, from Profile


PAPERMILL_CASES = {  # what papermill's CLI hands execute_notebook for -f / -y / -p, and the profile it means
    "-f smoke.yaml": (lambda: yaml.safe_load(SMOKE.read_text(encoding="utf-8")), lambda: load_profile("smoke")),
    "-f full.yaml -p data_root R": (
        lambda: yaml.safe_load(FULL.read_text(encoding="utf-8")) | {"data_root": "/data/mmimdb"},
        lambda: load_profile("full", {"data_root": "/data/mmimdb"})),
    "-p splits official": (lambda: {"splits": "official"}, lambda: load_profile("smoke", {"splits": ["official"]})),
    "-p splits thesis,official -p seeds 0,1 -p epochs 2": (
        lambda: {"splits": "thesis,official", "seeds": "0,1", "epochs": 2},
        lambda: load_profile("smoke", {"splits": ["thesis", "official"], "seeds": [0, 1], "epochs": 2})),
    "-y 'splits: [official]' -p patience null -p lr_scales 1": (
        lambda: {"splits": ["official"], "patience": "null", "lr_scales": 1},
        lambda: load_profile("smoke", {"splits": ["official"], "patience": None, "lr_scales": [1.0]})),
    "-p profile full -p mixed_precision no": (lambda: {"profile": "full", "mixed_precision": "no"},
                                              lambda: load_profile("full", {"mixed_precision": "no"})),
}


@pytest.mark.parametrize("case", list(PAPERMILL_CASES))
def test_papermill_parameters_reach_every_chapter_typed_without_a_warning(case, tmp_path, caplog):
    """papermill itself parameterizes each chapter (`prepare_only`: no kernel); its log has no warning and
    the chapter's parameters and injected cells load the profile the options mean (`-p splits official` is
    the list ["official"], not a string a chapter would index letter by letter)."""
    import papermill

    given, expected = PAPERMILL_CASES[case]
    for path in NOTEBOOKS:
        with caplog.at_level(logging.INFO, logger="papermill"):
            papermill.execute_notebook(str(path), str(tmp_path / path.name), parameters=given(),
                                       prepare_only=True, progress_bar=False)
        warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
        assert not warnings, f"{path.name}, {case}: {warnings}"
        namespace = _chapter_namespace(nbformat.read(tmp_path / path.name, as_version=4), injected=True)
        assert profile_from_parameters(namespace) == expected(), f"{path.name}, {case}"


@pytest.mark.parametrize("path", LOADERS, ids=lambda p: p.stem)
def test_a_chapter_and_thesis_run_read_the_same_typed_profile(path):
    from papermill.iorw import load_notebook_node

    notebook = load_notebook_node(str(path))  # as papermill reads it (every cell gets its tags list)
    assert profile_from_parameters(_chapter_namespace(notebook)) == load_profile(DEFAULT_PROFILE)
    # papermill -f notebooks/params/full.yaml -p data_root ROOT
    full = yaml.safe_load((ROOT / "notebooks" / "params" / "full.yaml").read_text(encoding="utf-8"))
    namespace = _chapter_namespace(notebook, full | {"data_root": "/data/mmimdb"})
    assert profile_from_parameters(namespace) == load_profile("full", {"data_root": "/data/mmimdb"})
    # papermill -p profile full -p epochs 2 -p seeds 0,1 -p mixed_precision no (papermill types 2 as int)
    namespace = _chapter_namespace(notebook, {"profile": "full", "epochs": 2, "seeds": "0,1",
                                              "mixed_precision": "no"})
    assert profile_from_parameters(namespace) == load_profile("full", {"epochs": "2", "seeds": "0,1",
                                                                       "mixed_precision": "no"})


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_glued_figure_or_table_is_labelled_by_its_glue_key(path):
    """`thesis export` finds a numbered item's files by its label (fig-/tbl- + the glue key, _ as -): a
    directive labelled otherwise renders but cannot be exported. Checked here without building the book."""
    from thesis_lib.book.export import LABEL_PREFIXES

    directive = re.compile(r"```\{glue:figure\} (?P<key>\S+)\n:name: (?P<label>\S+)\n(?::figclass: (?P<cls>\S+)\n)?")
    for cell in read(path).cells:
        if cell.cell_type != "markdown":
            continue
        for found in directive.finditer(cell.source):
            prefix = LABEL_PREFIXES["table" if found["cls"] == "table" else "figure"]
            assert found["label"] == prefix + found["key"].replace("_", "-"), (
                f"{path.name}: {{glue:figure}} {found['key']} is labelled {found['label']}, "
                f"not {prefix}{found['key'].replace('_', '-')}")
