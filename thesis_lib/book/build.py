"""`thesis book`: run every chapter notebook with papermill, then build the HTML book with Jupyter Book.

    build_book(BookBuild(root=Path("."), profile="smoke", overrides=(("data_root", "/data/mmimdb"),)))

(what `thesis book --profile smoke -p data_root /data/mmimdb` and `make book` run). Progress lines go to
this module's logger, or to the `log` function given.

Steps, each with one job:
1. parameters: `-y` and `-p` values typed by the parameter's type (a profile key's field type, else the
   annotation of the chapter's parameters cell) and the typed profile (notebooks/params/<profile>.yaml plus
   the values of profile keys), loaded once here to fail early; each chapter that declares `profile` gets
   the profile's name and those values, and loads the same typed profile itself;
2. chapters: the notebooks `_toc.yml` points at (book/_executed/<name> <- notebooks/<name>.ipynb);
3. papermill runs them in TOC order into book/_executed/ (git-ignored); the first failing cell stops the
   build, naming the chapter and cell and keeping the partial notebook. A chapter whose code, parameters,
   data, input runs, library and lock are unchanged since its executed copy was made is not run again:
   that copy is reused with the new prose (`thesis_lib.book.reuse`), and the log and front page say so;
4. provenance: profile, data, weights and commit, written to book/_executed/provenance.json and into the
   front page; on the synthetic twin a banner on every page says the results are not thesis evidence, and
   in a rehearsal (profile key `rehearsal`) that they come from random stand-in weights;
5. `jupyter-book build -W -n --keep-going` with a per-build copy of _config.yml (front page, banner) and
   of _toc.yml (only the chapters this build ran). Notebooks are never executed by Jupyter Book.
"""

from __future__ import annotations

import functools
import logging
import operator
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import thesis_lib
from thesis_lib.book import reuse
from thesis_lib.book.chapters import (
    ARTEFACTS_DIR,
    EXECUTED_DIR,
    Chapter,
    chapters_from_toc,
    read_toc,
    restrict_toc,
    select_chapters,
)
from thesis_lib.book.execute import (
    ChapterRun,
    Parameter,
    chapter_parameters,
    chapter_run,
    declared_parameters,
    execute_chapter,
    project_kernel,
)
from thesis_lib.book.jupyter_book import BUILD_CONFIG, BUILD_TOC, run_jupyter_book
from thesis_lib.book.jupyter_book import BookBuildError as BookBuildError  # raised through build_book; re-exported
from thesis_lib.book.provenance import (
    BuildProvenance,
    DataDescription,
    book_config,
    describe_data,
    describe_weights,
    release_folder,
    runs_summary,
    utc_now,
)
from thesis_lib.errors import ThesisError
from thesis_lib.experiments.grid import GridStatus, grid_status
from thesis_lib.experiments.preflight import preflight
from thesis_lib.experiments.profile import DEFAULT_PROFILE, PROFILE_HINTS, Profile, load_profile, profile_path
from thesis_lib.experiments.provenance import git_state
from thesis_lib.experiments.values import ProfileError, thaw, typed_value

PROFILE_PARAMETER = "profile"  # a chapter that declares it loads the typed profile (and takes its keys)
DATA_ROOT_PARAMETER = "data_root"  # the release folder (see notebooks/params/); None: the twin ...
TWIN_ROOT_PARAMETER = "twin_root"  # ... at this folder
MODEL_SIZE_PARAMETER = "model_size"  # "small" | "full": which registry recipes the chapters build
PROVENANCE_FILE = "provenance.json"

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BookBuild:
    """One build of the book: which tree, which profile, which chapters, where the HTML goes."""

    root: Path  # the book's tree: _config.yml, _toc.yml, book/, notebooks/ (the project root)
    profile: str = DEFAULT_PROFILE  # a name in notebooks/params/, or a path to a .yaml parameter file
    # (name, value) in order, later ones win: `-y` values (parsed YAML) then `-p` ones (text), each typed by
    # the parameter's type
    overrides: tuple[tuple[str, Any], ...] = ()
    only: tuple[str, ...] | None = None  # chapter names to run (None: every chapter of the TOC)
    output: Path | None = None  # Jupyter Book's --path-output (None: root); HTML lands in <output>/_build/html
    kernel: str | None = None  # Jupyter kernel (None: the project's thesis-lib kernel, else python3)
    # Render only from finished runs (stop, naming the missing ones) instead of training them inside a
    # chapter. None: render only for a full-size profile or when the runs folder is given (-p runs_dir).
    render_only: bool | None = None


@dataclass(frozen=True)
class BookResult:
    html_index: Path
    provenance: BuildProvenance
    runs: list[ChapterRun] = field(default_factory=list)
    book_seconds: float = 0.0  # the Jupyter Book step alone


class PreflightError(ThesisError):
    """A build that would train full-size runs inside a chapter, on a machine the preflight stops."""


class MissingRunsError(ThesisError):
    """A render-only build whose runs folder lacks finished runs of the profile's grid."""


def renders_only(build: BookBuild, profile: Profile, overrides: Mapping[str, Any]) -> bool:
    """Whether this build renders from finished runs only (see `BookBuild.render_only`)."""
    if build.render_only is not None:
        return build.render_only
    return profile.model_size == "full" or "runs_dir" in overrides


def check_runs_finished(build: BookBuild, profile: Profile) -> GridStatus:
    """Stop a render-only build before any chapter runs when a run of the grid is not finished: one line
    with the missing runs and the `thesis run` command that makes them."""
    status = grid_status(profile)
    if status.complete:
        return status
    shown = ", ".join(status.missing[:6]) + (f" and {len(status.missing) - 6} more" if len(status.missing) > 6 else "")
    data = f" --data {profile.data_root}" if profile.data_root else ""
    if profile.rehearsal:  # its runs folder, twin and cache root come with --rehearse
        raise MissingRunsError(
            f"{len(status.missing)} of {len(status.missing) + len(status.finished)} rehearsal runs are not finished "
            f"in {status.runs_dir} ({shown}): make them first with `thesis run --profile {build.profile}{data} "
            "--rehearse` (or `make book PROFILE=full REHEARSE=1`, which runs it first)")
    raise MissingRunsError(
        f"{len(status.missing)} of {len(status.missing) + len(status.finished)} runs are not finished in "
        f"{status.runs_dir} ({shown}): make them first with `thesis run --profile {build.profile}{data} "
        f"--runs {status.runs_dir}`, then build the book again (it renders finished runs only; "
        "--train-missing trains them inside the chapter instead)"
    )


def build_book(build: BookBuild, log: Callable[[str], None] = _log.info) -> BookResult:
    """Run the chapters and build the book; see the module docstring. Raises ChapterFailedError or
    BookBuildError (both name what to look at)."""
    root = Path(build.root).resolve()
    chapters = select_chapters(chapters_from_toc(root), list(build.only) if build.only is not None else None)
    declared: dict[str, Parameter] = {}
    for chapter in chapters:
        declared = declared_parameters(chapter.source) | declared
    overrides = parameter_values(build.overrides, declared)
    profile, profile_file, selector = None, None, {}
    if PROFILE_PARAMETER in declared:
        profile = load_profile(build.profile, {k: v for k, v in overrides.items() if k in PROFILE_HINTS}, root=root)
        path = profile_path(build.profile, root)
        profile_file = str(path)
        # The chapters get a name as it is (it resolves in their kernel too) unless this tree is not the
        # project; a file they get as an absolute path (their kernel's working folder is the root).
        by_name = path != Path(build.profile).expanduser() and path == profile_path(build.profile)
        selector = {PROFILE_PARAMETER: build.profile if by_name else str(path.resolve())}
        log(f"profile {build.profile}: {profile_file}")
    data = None
    if profile is not None and DATA_ROOT_PARAMETER in declared and any(chapter.reads_data for chapter in chapters):
        # Fail before running anything when the data is missing (e.g. the full profile without -p data_root).
        data = describe_data(release_folder(profile.data_root, profile.twin_root, root))
    if profile is not None and any(chapter.reads_runs for chapter in chapters):
        if renders_only(build, profile, overrides):
            status = check_runs_finished(build, profile)  # MissingRunsError before any chapter runs
            log(f"render only: all {len(status.finished)} runs of the grid are finished in {status.runs_dir}")
        elif profile.model_size == "full":  # it will train at full size inside a chapter: as `thesis run` would
            check = preflight(profile)
            for line in check.summary().splitlines():
                log(line)
            if not check.ok:
                raise PreflightError(f"the preflight stops this build before it trains: "
                                     f"{'; '.join(line.line() for line in check.stops)}")
    parameters = selector | {name: _injected(name, value, PROFILE_PARAMETER in declared)
                             for name, value in overrides.items()}

    executed_dir = root / EXECUTED_DIR
    _remove_stale(executed_dir, chapters_from_toc(root))
    inputs = reuse.build_inputs(
        root, data=None if data is None else data.fingerprint,
        runs_root=None if profile is None else profile.runs_path(),
        profile=None if profile is None else profile.to_dict())
    kernel = build.kernel or project_kernel()
    chapter_lines: list[str] = []  # also written at the top of the build log

    def chapter_log(line: str) -> None:
        chapter_lines.append(line)
        log(line)

    runs = [run_chapter(chapter, parameters, inputs, kernel=kernel, root=root, log=chapter_log) for chapter in chapters]
    reused = [run.chapter for run in runs if run.reused]
    if reused:
        chapter_log(f"reused {len(reused)} of {len(runs)} chapters unchanged since their executed copy: "
                    f"{', '.join(reused)}")

    provenance = _provenance(root, build, profile, profile_file, overrides, data, runs,
                             reads_runs=any(chapter.reads_runs for chapter in chapters))
    (executed_dir / PROVENANCE_FILE).write_text(_json(provenance.to_json()), encoding="utf-8")
    config_path, toc_path = _write_build_files(root, provenance, {chapter.name for chapter in chapters})

    started = time.perf_counter()
    html_index = run_jupyter_book(root, build.output or root, config_path, toc_path, log, chapter_lines)
    return BookResult(html_index, provenance, runs, time.perf_counter() - started)


def run_chapter(chapter: Chapter, parameters: Mapping[str, Any], inputs: reuse.BuildInputs, *, kernel: str,
                root: Path, log: Callable[[str], None] = _log.info) -> ChapterRun:
    """Run one chapter with papermill, or reuse its executed copy when its render key is unchanged
    (`thesis_lib.book.reuse`); the log line says which, and why a chapter ran again."""
    declared = declared_parameters(chapter.source)
    injected = chapter_parameters(declared, parameters)
    key = reuse.render_key(chapter, injected, inputs, kernel)
    earlier = reuse.stored_key(chapter.executed)
    changed = key.changed(earlier)
    if not changed and reuse.refresh_prose(chapter.source, chapter.executed):
        log(f"{chapter.name} reused: its code, parameters, data, runs, library and lock are unchanged "
            f"(prose refreshed) -> {_shown(chapter.executed, root)}")
        return chapter_run(chapter, declared, injected, earlier.seconds, reused=True)
    why = "no executed copy with a render key" if earlier is None else f"changed: {', '.join(changed) or 'code cells'}"
    log(f"running {chapter.name} (papermill, kernel {kernel}; {why}) ...")
    run = execute_chapter(chapter, parameters, kernel=kernel, cwd=root)
    # Keyed after it ran: a chapter that trained missing runs is reused next time, when they are there.
    reuse.store_key(chapter.executed, reuse.render_key(chapter, injected, inputs, kernel), run.seconds)
    log(f"{chapter.name} done in {run.seconds:.1f} s -> {_shown(run.executed, root)}")
    return run


def _remove_stale(executed_dir: Path, chapters: Sequence[Chapter]) -> None:
    """Clear the executed folder of everything but the executed copies of the book's chapters and their
    artefact folders (each is reused only when its key matches): stale chapters and build files of an
    earlier build must not linger."""
    artefacts = executed_dir / ARTEFACTS_DIR.name
    _remove_all_but(executed_dir, {chapter.executed for chapter in chapters} | {artefacts})
    _remove_all_but(artefacts, {chapter.artefacts for chapter in chapters})
    executed_dir.mkdir(parents=True, exist_ok=True)


def _remove_all_but(folder: Path, keep: set[Path]) -> None:
    for path in folder.iterdir() if folder.is_dir() else ():
        if path not in keep:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def _injected(name: str, value: Any, takes_profile: bool) -> Any:
    """A typed value as a chapter is given it: plain YAML values; a profile key set to null as the text
    "null", since a chapter reads None as "the profile's" (`profile_from_parameters`)."""
    if value is None and takes_profile and name in PROFILE_HINTS:
        return "null"
    return thaw(value)


def yaml_parameters(text: str) -> list[tuple[str, Any]]:
    """`-y YAML` (papermill's option): a mapping of parameter names to values, in order."""
    import yaml

    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ProfileError(f"-y {text!r} is not YAML: {str(error).splitlines()[0]}") from None
    if content is None:
        return []
    if not isinstance(content, dict) or not all(isinstance(name, str) for name in content):
        raise ProfileError(f"-y {text!r} must be a mapping of parameter names to values, e.g. -y 'epochs: 2'")
    return list(content.items())


# ---------------------------------------------------------------------------------------------------------


def parameter_values(overrides: Sequence[tuple[str, Any]], declared: Mapping[str, Parameter]) -> dict[str, Any]:
    """`-y`/`-p` (name, value) pairs (later ones win) typed by the parameter's type: a profile key's field
    type when a chapter declares `profile`, else the annotation of the chapter's parameters cell (untyped:
    YAML); text is read as `typed_value` reads it, a parsed YAML value is checked. A name that no chapter of
    this build takes is a typo, not a silent no-op."""
    takes_profile = PROFILE_PARAMETER in declared
    unknown = sorted({name for name, _ in overrides
                      if name not in declared and not (takes_profile and name in PROFILE_HINTS)})
    if unknown:
        raise ProfileError(
            f"no chapter of this build declares the parameter(s) {', '.join(unknown)}; "
            f"declared: {', '.join(sorted(declared)) or 'none'}"
            + ("; and every profile key (the chapters load the profile)" if takes_profile else "")
        )
    values: dict[str, Any] = {}
    for name, text in overrides:
        if name == PROFILE_PARAMETER and takes_profile:
            raise ProfileError("choose the profile with --profile, not -p/-y profile")
        hint = PROFILE_HINTS[name] if takes_profile and name in PROFILE_HINTS else _hint(declared[name].annotation)
        values[name] = typed_value(name, text, hint, "-p")
    return values


def _hint(annotation: str) -> Any:
    """The type a parameters cell's annotation names ("int", "str | None", "Optional[str]", "list[int]");
    Any for others."""
    simple = {"int": int, "float": float, "str": str, "bool": bool, "None": type(None)}
    options = []
    annotation = annotation.strip()
    if annotation.startswith("Optional[") and annotation.endswith("]"):
        annotation = f"{annotation[len('Optional['):-1]} | None"
    for part in (part.strip() for part in annotation.split("|")):
        item = part[len("list["):-1].strip() if part.startswith("list[") and part.endswith("]") else None
        if part in simple:
            options.append(simple[part])
        elif item in simple:
            options.append(list[simple[item]])
        else:
            return Any  # untyped, or a type this reader does not know: the value is read as YAML
    return functools.reduce(operator.or_, options)


def _provenance(root: Path, build: BookBuild, profile: Profile | None, profile_file: str | None,
                overrides: Mapping[str, Any], data: DataDescription | None, runs: list[ChapterRun],
                reads_runs: bool = False) -> BuildProvenance:
    effective = _effective_parameters(runs)
    if profile is None and (DATA_ROOT_PARAMETER in effective or TWIN_ROOT_PARAMETER in effective):
        folder = release_folder(effective.get(DATA_ROOT_PARAMETER), effective.get(TWIN_ROOT_PARAMETER), root)
        data = describe_data(folder)
    size = profile.model_size if profile is not None else effective.get(MODEL_SIZE_PARAMETER, "small")
    state = git_state(root)
    return BuildProvenance(
        profile=build.profile,
        profile_file=profile_file,
        overrides={name: thaw(value) for name, value in overrides.items()},
        data=data,
        weights=describe_weights(size),
        commit=state["commit"],
        dirty=state["dirty"],
        version=thesis_lib.__version__,
        built_at=utc_now(),
        chapter_seconds={run.chapter: round(run.seconds, 1) for run in runs if not run.reused},
        rehearsal=profile is not None and profile.rehearsal,
        reused=[run.chapter for run in runs if run.reused],
        runs_dir=str(profile.runs_path()) if profile is not None else None,
        runs=runs_summary(profile.runs_path()) if profile is not None and reads_runs else None,
    )


def _effective_parameters(runs: list[ChapterRun]) -> dict[str, Any]:
    """The values the chapters ran with (a name shared by several chapters has one value: the profile's)."""
    effective: dict[str, Any] = {}
    for run in runs:
        for name, value in run.parameters.items():
            effective.setdefault(name, value)
    return effective


def _write_build_files(root: Path, provenance: BuildProvenance, chapters: set[str]) -> tuple[Path, Path]:
    import yaml

    base = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    config_path = root / EXECUTED_DIR / BUILD_CONFIG
    config_path.write_text(yaml.safe_dump(book_config(base, provenance, root), allow_unicode=True, sort_keys=False),
                           encoding="utf-8")
    toc_path = root / EXECUTED_DIR / BUILD_TOC
    toc = restrict_toc(read_toc(root / "_toc.yml"), chapters)
    toc_path.write_text(yaml.safe_dump(toc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return config_path, toc_path


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _json(content: Any) -> str:
    import json

    return json.dumps(content, indent=1, ensure_ascii=False) + "\n"
