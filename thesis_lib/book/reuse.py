"""Re-render without re-running: when the executed copy of a chapter can stand for a new run of it.

What a chapter shows is decided by its code cells, the parameters it is given (and the profile they
resolve to), the data it reads (the release's content fingerprint; every chapter but those whose metadata
says `thesis.reads_data: false`), the run records it reads (chapters whose metadata says
`thesis.reads_runs`), the committed results files (results/**/*.json: seeds, capacity, datasize;
benchmarks/results/*.json), the library (thesis_lib/**/*.py), the installed packages (the lock,
requirements/constraints.txt) and the kernel. `render_key` hashes each of these; after a chapter ran, the
build stores its key in the executed copy's metadata (`thesis.render_key`), and the next build reuses that
copy when the key it computes is the same, so a prose edit re-renders in seconds instead of re-running
every chapter (on the full profile every XAI cell reruns on GPU models).

Markdown cells are not part of the key: `refresh_prose` copies the source notebook's markdown into the
reused copy, keeping the outputs of its code cells, so the page shows the new prose.

The runs part is hashed again after the chapter ran, so a chapter that trains missing runs (the smoke
book's grid) is reused next time, when those runs are there. Not in the key: files a chapter reads that are
none of these (downloaded pretrained weights, the feature caches derived from the runs) and the machine;
delete book/_executed/ (`make clean-book`) to force a full re-run.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import thesis_lib
from thesis_lib.book.chapters import Chapter
from thesis_lib.book.execute import INJECTED_TAG, RUN_PARAMETERS_TAG, presented_tags
from thesis_lib.experiments.layout import RunFolder, RunsFolder
from thesis_lib.storage import stable_hash

METADATA_KEY = "thesis"  # the executed copy's metadata section (the source notebooks use it for reads_runs)
RENDER_KEY = "render_key"
LOCK_FILE = Path("requirements") / "constraints.txt"  # relative to the book's root
PARTS = ("code", "parameters", "data", "runs", "results", "library", "lock", "kernel")
RESULTS_FOLDERS = (Path("results"), Path("benchmarks") / "results")  # committed results files chapters read  # in the order the log names them
_ADDED_TAGS = {INJECTED_TAG, RUN_PARAMETERS_TAG, "papermill-error-cell-tag"}  # cells the build or papermill add


@dataclass(frozen=True)
class BuildInputs:
    """What every chapter of one build shares: computed once per build (the runs are hashed per chapter)."""

    library: str  # hash of thesis_lib/**/*.py
    lock: str  # hash of the lock file ("absent" without one)
    results: str  # hash of the committed results files (RESULTS_FOLDERS)
    data: str | None  # the release's content fingerprint; None when the build names no data
    runs_root: Path | None  # the runs folder chapters that read runs read; None without a profile
    profile: Mapping[str, Any] | None  # the typed profile as plain values (`Profile.to_dict`), None without one


@dataclass(frozen=True)
class RenderKey:
    """The hashes of everything a chapter's outputs depend on (see the module docstring)."""

    parts: Mapping[str, str | None]
    seconds: float = 0.0  # papermill time of the run the key stands for (read with a stored key; not compared)

    def changed(self, earlier: RenderKey | None) -> list[str]:
        """The parts that differ from `earlier` (every part when there is none), in `PARTS` order."""
        if earlier is None:
            return list(PARTS)
        return [part for part in PARTS if self.parts.get(part) != earlier.parts.get(part)]


def build_inputs(root: Path, *, data: str | None, runs_root: Path | None,
                 profile: Mapping[str, Any] | None) -> BuildInputs:
    return BuildInputs(library_hash(), file_hash(Path(root) / LOCK_FILE), results_hash(Path(root)), data,
                       runs_root, profile)


def render_key(chapter: Chapter, parameters: Mapping[str, Any], inputs: BuildInputs, kernel: str) -> RenderKey:
    """The key of running `chapter` with `parameters` (what it is injected) in this build, now."""
    reads_runs = chapter.reads_runs and inputs.runs_root is not None
    return RenderKey({
        "code": code_hash(chapter.source),
        "parameters": stable_hash({"injected": dict(parameters), "profile": inputs.profile}),
        "data": inputs.data if chapter.reads_data else None,
        "runs": runs_hash(inputs.runs_root) if reads_runs else None,
        "results": inputs.results,
        "library": inputs.library,
        "lock": inputs.lock,
        "kernel": stable_hash(kernel),
    })


def stored_key(executed: Path) -> RenderKey | None:
    """The key stored in an executed copy; None when there is no copy, or it has none (a partial copy of a
    failed run, or one from before keys were stored)."""
    import nbformat

    if not executed.is_file():
        return None
    try:
        metadata = nbformat.read(executed, as_version=4).metadata
    except Exception:  # noqa: BLE001 - an unreadable copy is one to run again, whatever broke it
        return None
    section = metadata.get(METADATA_KEY, {})
    parts = section.get(RENDER_KEY)
    return RenderKey(dict(parts), float(section.get("seconds", 0.0))) if isinstance(parts, Mapping) else None


def store_key(executed: Path, key: RenderKey, seconds: float) -> None:
    """Write `key` (and the papermill time it stands for) into the executed copy's metadata."""
    import nbformat

    notebook = nbformat.read(executed, as_version=4)
    section = notebook.metadata.setdefault(METADATA_KEY, {})
    section[RENDER_KEY] = dict(key.parts)
    section["seconds"] = round(seconds, 1)
    nbformat.write(notebook, executed)


def refresh_prose(source: Path, executed: Path) -> bool:
    """Give the executed copy the source notebook's markdown (and cell tags), keeping the outputs of its
    code cells and the cells the build added (papermill's injected parameters, the parameters note).
    False, and nothing written, when the code cells do not pair up one to one (then run it again)."""
    import nbformat

    committed = nbformat.read(source, as_version=4)
    done = nbformat.read(executed, as_version=4)
    ran, added = [], {}  # added: index of the code cell it follows (-1: before any) -> the added cells
    for cell in done.cells:
        if _ADDED_TAGS & set(cell.metadata.get("tags", [])):
            added.setdefault(len(ran) - 1, []).append(cell)
        elif cell.cell_type == "code":
            ran.append(cell)
    own_code = [cell for cell in committed.cells if cell.cell_type == "code"]
    if len(own_code) != len(ran) or any(a.source != b.source for a, b in zip(own_code, ran, strict=True)):
        return False
    cells = list(added.get(-1, []))
    position = -1
    for cell in committed.cells:
        if cell.cell_type != "code":
            cells.append(copy.deepcopy(cell))
            continue
        position += 1
        cells.append(_with_outputs(cell, ran[position]))
        cells.extend(added.get(position, []))
    done.cells = cells
    nbformat.write(done, executed)
    return True


def _with_outputs(committed: Any, ran: Any) -> Any:
    """The executed code cell with the committed cell's metadata (tags) and its own outputs, presented as
    the build presents a cell it ran (`execute.presented_tags`: the parameters cell hidden, code folded)."""
    cell = copy.deepcopy(ran)
    keep = {key: value for key, value in ran.metadata.items() if key in ("papermill", "execution")}
    cell.metadata = copy.deepcopy(committed.metadata) | keep
    cell.metadata["tags"] = presented_tags(cell)
    return cell


# ---------------------------------------------------------------------------------------------------------
# The parts


def code_hash(notebook: Path) -> str:
    """The code cells' sources, in order (markdown and cell metadata left out: they do not change outputs)."""
    import nbformat

    cells = nbformat.read(notebook, as_version=4).cells
    return stable_hash([cell.source for cell in cells if cell.cell_type == "code"])


def library_hash(package: Path | None = None) -> str:
    """Every .py file of the library (the kernel imports the same one), by path and content."""
    package = Path(thesis_lib.__file__).parent if package is None else package
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def results_hash(root: Path) -> str:
    """Every committed results file (seeds, capacity, datasize, benchmark JSON) under `root`, by path and content: a new
    results file re-renders the chapters (each reads the ones it shows)."""
    files = sorted(path for folder in RESULTS_FOLDERS if (root / folder).is_dir()
                   for path in (root / folder).rglob("*.json"))
    return stable_hash([(path.relative_to(root).as_posix(), file_hash(path)) for path in files])


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "absent"


def record_hashes(runs_root: Path) -> list[tuple[RunFolder, str]]:
    """Every finished run in the runs folder with the SHA-256 of its record (empty: no such folder)."""
    runs = RunsFolder(runs_root) if runs_root.is_dir() else None
    return [] if runs is None else [(run, file_hash(run.record)) for run in runs.recorded()]


def runs_hash(runs_root: Path) -> str:
    """Every finished run's record (its config hash, scores, times) in the runs folder, by label."""
    return stable_hash([(run.label, digest) for run, digest in record_hashes(runs_root)])
