"""Run one chapter notebook with papermill and prepare the executed copy for the book.

- Figures: notebooks draw with matplotlib's inline backend. `MPLBACKEND=Agg` in the environment (common in
  test and CI shells) would silently drop every figure, so the kernel is started with the inline backend
  named explicitly.
- Parameters: a notebook gets only the parameters it accepts: those its `parameters` cell declares and,
  when it declares `profile` (it then loads the typed profile with
  `thesis_lib.experiments.profile.profile_from_parameters`), every profile key given with `-p`/`-y`. So its
  hidden injected cell lists exactly what was set. The committed chapters declare every profile key
  (`profile.chapter_parameters_cell`), so the papermill CLI works on them as on any notebook:
  `papermill --help-notebook` lists every key, `-f notebooks/params/full.yaml` injects the whole file, and
  papermill warns about no parameter.
- Progress: each kernel starts with `thesis_lib.logs.configure_logging()` run before the first cell, so the
  library's log lines (detectors, training, the XAI check) land in the chapter's stderr outputs: kept in
  the executed copy, left out of the pages (`stderr_output: remove`), and echoed live to the build's own
  stderr so a long chapter shows what it is doing.
- Failure: papermill writes the notebook cell by cell, so a failing chapter leaves its partial copy with
  the traceback; `ChapterFailedError` names the chapter, the cell and that file.
- Artefacts: each kernel is told its chapter's artefact folder (`thesis_lib.book.artefacts`), emptied
  first, where every glued figure and table is also written as files for `thesis export`.
- Presentation: every code cell's input is folded (`hide-input`: advisors read the page, the code is one
  click away); the parameters cell and papermill's injected cell are hidden (`remove-cell`) and replaced
  by one collapsed note listing the values this run used, with the comments of the parameters cell.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thesis_lib.book.artefacts import ARTEFACTS_ENV
from thesis_lib.book.chapters import Chapter
from thesis_lib.errors import ThesisError
from thesis_lib.experiments.profile import PROFILE_HINTS

INLINE_BACKEND = "module://matplotlib_inline.backend_inline"  # what ipykernel uses; Agg would drop figures
PROJECT_KERNEL = "thesis-lib"  # registered by `make venv` (ipykernel install --sys-prefix --name thesis-lib)
FALLBACK_KERNEL = "python3"  # ipykernel's own spec: the interpreter running papermill
REMOVE_CELL = "remove-cell"
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
RUN_PARAMETERS_TAG = "run-parameters"  # the note the build inserts in place of the hidden cells
HIDE_INPUT = "hide-input"  # Jupyter Book folds the cell's code above its output
# IPython runs these lines in the kernel before the first cell (an `exec_lines` option of the kernel app).
KERNEL_SETUP = "--IPKernelApp.exec_lines=from thesis_lib.logs import configure_logging; configure_logging()"


class ChapterFailedError(ThesisError, RuntimeError):
    """A cell of a chapter raised; the partial executed notebook is kept at `partial`."""

    def __init__(self, chapter: str, cell: int | None, detail: str, partial: Path):
        self.chapter, self.cell, self.partial = chapter, cell, partial
        where = f"cell {cell}" if cell is not None else "before any cell ran"
        super().__init__(f"chapter {chapter} failed in {where}: {detail}; partial notebook: {partial}")


@dataclass(frozen=True)
class ChapterRun:
    """What running one chapter produced."""

    chapter: str
    executed: Path
    seconds: float
    parameters: dict[str, Any]  # the values the notebook ran with: injected, else its own default
    injected: tuple[str, ...]  # which of them came from the profile or the command line
    reused: bool = False  # the executed copy of an earlier build stood for this run (see `book.reuse`)


@dataclass(frozen=True)
class Parameter:
    """One line of a notebook's parameters cell: `name: type = default  # meaning`."""

    name: str
    annotation: str  # as written ("str | None"), "" when untyped
    default: Any  # the literal's value
    default_source: str  # as written ("'data/twin'", "1e-3")
    meaning: str  # the trailing comment


def declared_parameters(notebook: Path) -> dict[str, Parameter]:
    """The parameters cell of `notebook` (the code cell tagged `parameters`), name -> Parameter.

    Read with `ast` (papermill's inspector keeps values and comments as text); an annotation may be quoted
    (`"Optional[int]"`, the form the chapters use) and is given unquoted. A parameter must be a plain
    literal, as a profile file could give it.
    """
    import ast

    import nbformat

    cells = [cell for cell in nbformat.read(notebook, as_version=4).cells
             if cell.cell_type == "code" and PARAMETERS_TAG in cell.metadata.get("tags", [])]
    if not cells:
        return {}
    source = cells[0].source
    lines = source.splitlines()
    parameters = {}
    for statement in ast.parse(source).body:
        if isinstance(statement, ast.AnnAssign) and statement.value is not None:
            target, annotation = statement.target, _annotation(statement.annotation)
        elif isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, annotation = statement.targets[0], ""
        else:
            raise ValueError(f"{notebook}: line {statement.lineno} of the parameters cell is not `name = value`")
        if not isinstance(target, ast.Name):
            raise ValueError(f"{notebook}: line {statement.lineno} of the parameters cell assigns to no plain name")
        try:
            default = ast.literal_eval(statement.value)
        except ValueError:
            raise ValueError(f"{notebook}: parameter {target.id} has no literal default") from None
        after = lines[statement.end_lineno - 1][statement.end_col_offset:]  # what follows the value
        meaning = after.split("#", 1)[1].strip() if "#" in after else ""
        written = ast.get_source_segment(source, statement.value)
        parameters[target.id] = Parameter(target.id, annotation, default, written, meaning)
    return parameters


def accepted_parameters(declared: Mapping[str, Parameter]) -> set[str]:
    """The names a chapter takes: those it declares, plus every profile key when it declares `profile`."""
    return set(declared) | (set(PROFILE_HINTS) if "profile" in declared else set())


def project_kernel() -> str:
    """The kernel to run chapters with: the project's `thesis-lib` kernel when registered, else `python3`."""
    from jupyter_client.kernelspec import KernelSpecManager

    return PROJECT_KERNEL if PROJECT_KERNEL in KernelSpecManager().find_kernel_specs() else FALLBACK_KERNEL


@contextmanager
def environment(name: str, value: str) -> Iterator[None]:
    """`name=value` in the environment the kernels start with, restored afterwards."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def inline_figures() -> contextlib.AbstractContextManager[None]:
    """Start kernels with the inline matplotlib backend, whatever MPLBACKEND the caller's shell sets."""
    return environment("MPLBACKEND", INLINE_BACKEND)


def execute_chapter(
    chapter: Chapter, parameters: Mapping[str, Any], *, kernel: str, cwd: Path
) -> ChapterRun:
    """Run `chapter` with the `parameters` it declares into its executed copy (cwd: the book's root)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    declared = declared_parameters(chapter.source)
    injected = chapter_parameters(declared, parameters)
    chapter.executed.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    artefacts = chapter.artefacts
    if artefacts.exists():
        shutil.rmtree(artefacts)  # what an earlier run of the chapter wrote
    try:
        with inline_figures(), environment(ARTEFACTS_ENV, str(artefacts)):
            papermill.execute_notebook(
                str(chapter.source),
                str(chapter.executed),
                parameters=injected,
                kernel_name=kernel,
                cwd=str(cwd),
                progress_bar=False,
                log_output=False,
                stderr_file=sys.stderr,  # the kernel's stderr, its log lines included, as it arrives
                extra_arguments=[KERNEL_SETUP],  # passed on to nbclient, which starts the kernel with them
            )
    except PapermillExecutionError as error:
        first_line = next((line for line in error.source.splitlines() if line.strip()), "")
        detail = f"{error.ename}: {error.evalue} (cell starting {first_line.strip()!r})"
        raise ChapterFailedError(chapter.name, _source_cell_number(chapter), detail, chapter.executed) from None
    seconds = time.perf_counter() - started
    present_parameters(chapter.executed, declared, injected)
    return chapter_run(chapter, declared, injected, seconds)


def chapter_parameters(declared: Mapping[str, Parameter], parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The part of the build's `parameters` a chapter with these `declared` parameters is given."""
    accepted = accepted_parameters(declared)
    return {name: value for name, value in parameters.items() if name in accepted}


def chapter_run(chapter: Chapter, declared: Mapping[str, Parameter], injected: Mapping[str, Any],
                seconds: float, *, reused: bool = False) -> ChapterRun:
    effective = {name: parameter.default for name, parameter in declared.items()} | dict(injected)
    return ChapterRun(chapter.name, chapter.executed, seconds, effective, tuple(injected), reused)


def _annotation(node: Any) -> str:
    """An annotation as written, without the quotes of a quoted one ("Optional[int]", "str | None")."""
    import ast

    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return ast.unparse(node)


def _source_cell_number(chapter: Chapter) -> int | None:
    """1-based number, in the *committed* notebook, of the cell that failed: the cell of the partial copy
    with an error output, counted without the cells papermill added (injected parameters, error banners)."""
    import nbformat

    own_cells = [cell for cell in nbformat.read(chapter.executed, as_version=4).cells
                 if not _is_papermill_cell(cell)]
    for number, cell in enumerate(own_cells, start=1):
        if any(output.get("output_type") == "error" for output in cell.get("outputs", [])):
            return number
    return None


def _is_papermill_cell(cell: Any) -> bool:
    tags = cell.get("metadata", {}).get("tags", [])
    return INJECTED_TAG in tags or "papermill-error-cell-tag" in tags


def presented_tags(cell: Any) -> list[str]:
    """The tags a code cell carries in the executed copy: its own, plus `remove-cell` for the parameters and
    injected cells (the build's note stands for them) or `hide-input` for every other code cell (the page
    shows its output, the code folded above it). Markdown cells keep their own."""
    tags = list(cell.metadata.get("tags", []))
    if cell.cell_type != "code":
        return tags
    added = REMOVE_CELL if PARAMETERS_TAG in tags or INJECTED_TAG in tags else HIDE_INPUT
    return tags if added in tags else [*tags, added]


def present_parameters(executed: Path, declared: Mapping[str, Parameter], injected: Mapping[str, Any]) -> None:
    """Fold the code of every cell, hide the parameters and injected cells of `executed` and insert one
    collapsed note with the values this run used (injected, else the notebook's default) and what each
    means; a parameter left at None and not given (a profile key: "the profile's") is left out, the profile
    it names is in the note."""
    import nbformat

    notebook = nbformat.read(executed, as_version=4)
    insert_at = None
    for index, cell in enumerate(notebook.cells):
        cell.metadata["tags"] = presented_tags(cell)
        if {PARAMETERS_TAG, INJECTED_TAG} & set(cell.metadata["tags"]):
            insert_at = index + 1
    if insert_at is None or not declared:
        nbformat.write(notebook, executed)
        return
    rows = []
    for name, parameter in declared.items():
        if name not in injected and parameter.default is None:
            continue
        value = repr(injected[name]) if name in injected else parameter.default_source
        origin = "" if name in injected else " (default)"
        meaning = parameter.meaning.replace("|", "\\|").replace("<", "&lt;")  # `<profile>` is no HTML tag
        rows.append(f"| `{name}` | `{value}`{origin} | {meaning} |")
    for name in [name for name in injected if name not in declared]:  # profile keys set with -p
        rows.append(f"| `{name}` | `{injected[name]!r}` | replaces the profile's value |")
    note = "\n".join([
        ":::{admonition} Parameters of this run",
        ":class: note dropdown",
        "| parameter | value | meaning |",
        "|---|---|---|",
        *rows,
        ":::",
    ])
    notebook.cells.insert(insert_at, nbformat.v4.new_markdown_cell(note, metadata={"tags": [RUN_PARAMETERS_TAG]}))
    nbformat.write(notebook, executed)
