"""The book machinery (thesis_lib.book): profiles, chapters from the TOC, papermill runs, provenance.

Real notebooks are exercised end to end by tests/browser/; here small throw-away notebooks in a
temporary book tree test the machinery itself, including the two runs that start a kernel (a failing
cell, and a build with MPLBACKEND=Agg in the environment).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from thesis_lib.book import objects, reuse
from thesis_lib.book.architecture import (
    PARTS,
    example_batch,
    grid_models,
    grid_parameter_table,
    readable_counts,
    trace_cross_attention,
    without_pretrained_weights,
)
from thesis_lib.book.build import BookBuild, build_book, parameter_values, run_chapter, yaml_parameters
from thesis_lib.book.chapters import (
    EXECUTED_DIR,
    Chapter,
    TocError,
    chapters_from_toc,
    restrict_toc,
    select_chapters,
    toc_files,
)
from thesis_lib.book.execute import (
    ChapterFailedError,
    Parameter,
    declared_parameters,
    execute_chapter,
    present_parameters,
    project_kernel,
)
from thesis_lib.book.provenance import (
    TWIN_BANNER,
    BuildProvenance,
    NoDataError,
    book_config,
    chapter_release,
    describe_release,
    describe_weights,
    front_page_block,
    release_folder,
)
from thesis_lib.cli import main
from thesis_lib.data.mmimdb import load_release
from thesis_lib.detection import Detections, DetectorConfig, pad_detections
from thesis_lib.detection.truth import load_truth_boxes
from thesis_lib.detection.vocab import twin_classes
from thesis_lib.experiments.profile import ProfileError, load_profile
from thesis_lib.models.registry import build_from_config

ROOT = Path(__file__).resolve().parents[1]
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def write_notebook(path: Path, *cells: tuple[str, str], parameters: str | None = None) -> Path:
    """A notebook of ("md" | "code", source) cells, with a tagged parameters cell first when given."""
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": KERNELSPEC})
    if parameters is not None:
        notebook.cells.append(nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    for kind, source in cells:
        maker = nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell
        notebook.cells.append(maker(source))
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


def write_book_tree(root: Path, chapters: dict[str, list[tuple[str, str]]], parameters: str) -> Path:
    """A minimal book: _config.yml, _toc.yml with the given chapters, an intro page, the notebooks."""
    (root / "book").mkdir(parents=True)
    (root / "book" / "intro.md").write_text("# Intro\n\n{{ build_provenance }}\n", encoding="utf-8")
    (root / "_config.yml").write_text(
        'title: test\nonly_build_toc_files: true\nexecute:\n  execute_notebooks: "off"\n  stderr_output: remove\n'
        "parse:\n  myst_enable_extensions: [colon_fence, substitution]\n"
        "  myst_substitutions:\n    build_provenance: not built\n"
        'exclude_patterns: ["notebooks/*", "_build/*"]\n',
        encoding="utf-8",
    )
    entries = "".join(f"  - file: book/_executed/{name}\n" for name in chapters)
    (root / "_toc.yml").write_text(f"format: jb-book\nroot: book/intro\nchapters:\n{entries}", encoding="utf-8")
    for name, cells in chapters.items():
        write_notebook(root / "notebooks" / f"{name}.ipynb", *cells, parameters=parameters)
    return root


# --------------------------------------------------------------------------------------------------------
# Profiles and overrides


DECLARED = {"n": "int", "name": "str", "flag": "bool", "root": "str | None", "seeds": "list[int]", "raw": "",
            "opt": "Optional[int]"}


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [("n", "3", 3), ("n", "-2", -2), ("flag", "true", True), ("flag", "False", False), ("root", "null", None),
     ("root", "data/twin", "data/twin"), ("root", "on", "on"), ("name", "no", "no"), ("name", "1.0", "1.0"),
     ("seeds", "0,1", [0, 1]), ("seeds", "[2]", [2]), ("raw", "1e-3", "1e-3"), ("raw", "[a, b]", ("a", "b")),
     ("opt", "4", 4), ("opt", "null", None)],
)
def test_overrides_are_typed_by_the_declared_annotation(name, text, value):
    declared = {key: Parameter(key, annotation, None, "None", "") for key, annotation in DECLARED.items()}
    parsed = parameter_values([(name, text)], declared)[name]
    assert parsed == value and type(parsed) is type(value)


def test_overrides_apply_in_order_and_profile_keys_need_a_chapter_that_loads_the_profile():
    declared = {"n": Parameter("n", "int", 1, "1", "")}
    assert parameter_values([("n", "2"), ("n", "3")], declared) == {"n": 3}
    with pytest.raises(ProfileError, match="no chapter of this build declares the parameter.s. epochs"):
        parameter_values([("epochs", "2")], declared)
    with pytest.raises(ProfileError, match="key 'n' must be int"):
        parameter_values([("n", "three")], declared)
    declared["profile"] = Parameter("profile", "str", "smoke", "'smoke'", "")
    assert parameter_values([("epochs", "2"), ("mixed_precision", "no")], declared) == {
        "epochs": 2, "mixed_precision": "no"}  # typed by the profile's field types
    with pytest.raises(ProfileError, match="--profile"):
        parameter_values([("profile", "full")], declared)


def test_yaml_parameters_are_papermill_s_y_and_come_before_p():
    declared = {"profile": Parameter("profile", "str", "smoke", "'smoke'", "")}
    given = yaml_parameters("splits: official\nseeds: [0, 1]\nepochs: 3") + [("epochs", "2")]
    assert parameter_values(given, declared) == {"splits": ["official"], "seeds": [0, 1], "epochs": 2}
    assert yaml_parameters("") == []
    for bad, problem in (("[1, 2]", "must be a mapping"), ("a: [", "is not YAML")):
        with pytest.raises(ProfileError, match=problem):
            yaml_parameters(bad)


@pytest.mark.parametrize(("option", "problem"), [("epochs: three", "key 'epochs' must be int"),
                                                 ("[1, 2]", "must be a mapping"),
                                                 ("profile: full", "choose the profile with --profile")])
def test_book_command_takes_y_before_any_chapter_runs(option, problem, capsys):
    assert main(["book", "-y", option, "--only", "03_data"]) == 2
    assert problem in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------------
# Chapters from the table of contents


def test_chapters_follow_the_toc_and_need_their_notebooks(tmp_path):
    write_book_tree(tmp_path, {"03_b": [], "03_a": []}, parameters="x: int = 1  # x")
    chapters = chapters_from_toc(tmp_path)
    assert [c.name for c in chapters] == ["03_b", "03_a"]  # TOC order, not alphabetical
    assert chapters[0].source == tmp_path / "notebooks" / "03_b.ipynb"
    assert chapters[0].executed == tmp_path / EXECUTED_DIR / "03_b.ipynb"
    assert [c.name for c in select_chapters(chapters, ["03_a"])] == ["03_a"]
    with pytest.raises(TocError, match="no chapter named 04_x"):
        select_chapters(chapters, ["04_x"])
    (tmp_path / "notebooks" / "03_a.ipynb").unlink()
    with pytest.raises(TocError, match=r"lists chapter 'book/_executed/03_a' but its notebook .*03_a.ipynb"):
        chapters_from_toc(tmp_path)


def test_restricted_toc_drops_unselected_chapters_and_emptied_parts():
    toc = {"format": "jb-book", "root": "book/intro", "parts": [
        {"caption": "3", "chapters": [{"file": "book/_executed/03_data"}, {"file": "book/_executed/03_methods"}]},
        {"caption": "4", "chapters": [{"file": "book/_executed/04_experiments"}]},
        {"caption": "A", "chapters": [{"file": "book/reproduce", "sections": [{"file": "book/_executed/04_x"}]}]},
    ]}
    restricted = restrict_toc(toc, {"03_data"})
    assert list(toc_files(restricted)) == ["book/_executed/03_data", "book/reproduce"]
    assert [part["caption"] for part in restricted["parts"]] == ["3", "A"]
    assert list(toc_files(toc))[1] == "book/_executed/03_methods"  # the original is untouched


def test_book_command_rejects_an_unknown_chapter_before_touching_anything(capsys):
    executed = ROOT / EXECUTED_DIR
    before = sorted(executed.iterdir()) if executed.exists() else None
    assert main(["book", "--profile", "smoke", "--only", "no_such_chapter"]) == 2
    assert "thesis: error: no chapter named no_such_chapter" in capsys.readouterr().err
    assert (sorted(executed.iterdir()) if executed.exists() else None) == before


def test_render_only_stops_on_missing_runs_before_any_chapter_runs(tiny_twin, tmp_path, capsys):
    executed = ROOT / EXECUTED_DIR
    before = sorted(executed.iterdir()) if executed.exists() else None
    runs = tmp_path / "runs"  # given a runs folder, the book renders only: nothing is trained
    assert main(["book", "--profile", "smoke", "-p", "data_root", str(tiny_twin), "--runs", str(runs),
                 "--only", "03_data", "04_experiments"]) == 2
    (error,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("thesis: error: ")]
    assert "runs are not finished in" in error and "thesis/text_bert/seed0" in error
    assert f"thesis run --profile smoke --data {tiny_twin} --runs {runs}" in error
    assert (sorted(executed.iterdir()) if executed.exists() else None) == before  # no chapter ran
    assert not runs.exists()  # and no split file or run folder was made


@pytest.mark.slow
def test_a_full_size_book_that_would_train_runs_the_preflight_first(tiny_twin, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    executed = ROOT / EXECUTED_DIR
    before = sorted(executed.iterdir()) if executed.exists() else None
    assert main(["book", "--profile", "full", "-p", "data_root", str(tiny_twin), "--train-missing",
                 "--only", "04_experiments"]) == 2
    (error,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("thesis: error: ")]
    assert "the preflight stops this build before it trains" in error
    assert "no usable GPU" in error and "weights fetch" in error  # the device and the missing weights
    assert (sorted(executed.iterdir()) if executed.exists() else None) == before  # no chapter ran


def test_only_chapters_that_read_runs_need_them():
    # the conclusion reads the full profile's run records (which builds exist), not the release
    assert {chapter.name for chapter in chapters_from_toc(ROOT) if chapter.reads_runs} == {
        "04_experiments", "04_xai", "05_conclusion"}
    assert {chapter.name for chapter in chapters_from_toc(ROOT) if not chapter.reads_data} == {"A1_speed", "04_capacity",
                                                                                    "05_conclusion"}


def test_module_entry_point_shows_the_book_options():
    result = subprocess.run([sys.executable, "-m", "thesis_lib.book", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for option in ("--profile", "--yaml YAML", "--parameter NAME VALUE", "--only CHAPTER"):
        assert option in result.stdout


# --------------------------------------------------------------------------------------------------------
# The executed copy


def test_parameter_cells_are_hidden_and_replaced_by_one_note_with_the_values_used(tmp_path):
    path = write_notebook(tmp_path / "run.ipynb", ("code", "print(n)"),
                          parameters="n: int = 1  # how many\nname: str = 'a'  # what | which")
    notebook = nbformat.read(path, as_version=4)
    injected = nbformat.v4.new_code_cell("n = 5", metadata={"tags": ["injected-parameters"]})
    notebook.cells.insert(1, injected)
    nbformat.write(notebook, path)
    declared = declared_parameters(path)
    assert declared["name"] == Parameter("name", "str", "a", "'a'", "what | which")
    present_parameters(path, declared, {"n": 5})
    cells = nbformat.read(path, as_version=4).cells
    assert "remove-cell" in cells[0].metadata.tags and "remove-cell" in cells[1].metadata.tags
    note = cells[2]
    assert note.cell_type == "markdown" and note.source.startswith(":::{admonition} Parameters of this run")
    assert "| `n` | `5` | how many |" in note.source
    assert "| `name` | `'a'` (default) | what \\| which |" in note.source  # a pipe would break the table
    assert cells[3].source == "print(n)"


def test_parameters_cell_is_read_with_any_annotation_and_bad_lines_are_named(tmp_path):
    path = write_notebook(tmp_path / "p.ipynb", parameters=(
        'data_root: str | None = None  # release; None: the twin\nsplits: list[str] = ["thesis", "a#b"]  # first\n'
        "seed = 3\nlr: float = 1e-3"))
    declared = declared_parameters(path)
    assert list(declared) == ["data_root", "splits", "seed", "lr"]
    assert declared["data_root"] == Parameter("data_root", "str | None", None, "None", "release; None: the twin")
    assert declared["splits"].default == ["thesis", "a#b"] and declared["splits"].meaning == "first"
    assert (declared["seed"].annotation, declared["lr"].default, declared["lr"].meaning) == ("", 1e-3, "")
    for bad, problem in (("import os", "is not `name = value`"), ("n: int = len('ab')", "no literal default")):
        write_notebook(tmp_path / "bad.ipynb", parameters=bad)
        with pytest.raises(ValueError, match=problem):
            declared_parameters(tmp_path / "bad.ipynb")


# --------------------------------------------------------------------------------------------------------
# Provenance


@pytest.fixture(scope="module")
def tiny_twin(make_twin) -> Path:
    return make_twin(12)


def provenance(data, **changes) -> BuildProvenance:
    fields = dict(profile="smoke", profile_file=None, overrides={"epochs": 1}, data=data, weights="tiny weights",
                  commit="abc123", dirty=True, version="0.1.0", built_at="2026-01-01 00:00 UTC",
                  chapter_seconds={"03_data": 12.3})
    return BuildProvenance(**(fields | changes))


def test_a_twin_is_described_as_such_and_gets_the_banner(tiny_twin, tmp_path):
    data = describe_release(load_release(tiny_twin))
    assert (data.kind, data.n_movies, data.twin_seed) == ("twin", 12, 3)
    assert data.caption == "Data: synthetic twin (12 movies, seed 3), not MM-IMDb."
    build = provenance(data)
    block = front_page_block(build, tmp_path)
    for expected in ("`smoke`", "synthetic MM-IMDb twin (12 movies, seed 3)", data.fingerprint[:12],
                     "tiny weights", "`abc123` with uncommitted changes", "03_data (12 s)", "`epochs=1`",
                     "not thesis evidence"):
        assert expected in block
    assert "Code:** thesis_lib 0.1.0, commit unknown (not a git checkout)" in front_page_block(
        provenance(data, commit=None, dirty=None), tmp_path)
    config = book_config({"html": {"use_issues_button": False}, "parse": {"myst_enable_extensions": ["x"]}},
                         build, tmp_path)
    assert config["html"] == {"use_issues_button": False, "announcement": TWIN_BANNER}
    assert config["parse"]["myst_substitutions"]["build_provenance"] == block
    assert config["parse"]["myst_enable_extensions"] == ["x"]


def test_a_real_release_gets_no_banner(tiny_twin, tmp_path):
    data = describe_release(load_release(tiny_twin))
    real = type(data)(kind="mmimdb", root=data.root, n_movies=25959, fingerprint="f" * 64)
    assert real.caption == "Data: MM-IMDb (25,959 usable movies)."
    build = provenance(real)
    assert book_config({}, build, tmp_path)["html"]["announcement"] == ""
    assert "not thesis evidence" not in front_page_block(build, tmp_path)


def test_release_folder_is_data_root_else_a_generated_twin(tiny_twin, tmp_path):
    assert release_folder("/data/mmimdb", "data/twin", tmp_path) == Path("/data/mmimdb")  # not checked: loaders do
    assert release_folder(None, str(tiny_twin), tmp_path) == tiny_twin
    with pytest.raises(NoDataError, match=r"twin .*data/twin has not been generated: generate the twin with "
                                          r"`make twin` or `thesis data synth data/twin`"):
        release_folder(None, "data/twin", tmp_path)
    with pytest.raises(NoDataError, match="pass the MM-IMDb release with -p data_root ROOT"):
        release_folder(None, None, tmp_path)


def test_a_chapter_without_its_data_says_how_to_make_it_in_one_line(tmp_path):
    """What 03_data's first cell runs (`chapter_release`), with the twin missing or a folder that holds no
    release: one line that names the command, not a bare "not an MM-IMDb release"."""
    missing = load_profile("smoke", {"twin_root": str(tmp_path / "twin")})
    with pytest.raises(NoDataError, match=r"has not been generated: generate the twin with `make twin` or "
                                          r"`thesis data synth .*twin`"):
        chapter_release(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoDataError) as error:
        chapter_release(load_profile("smoke", {"data_root": str(tmp_path / "empty")}))
    assert "is not an MM-IMDb release: no split.json" in str(error.value) and "\n" not in str(error.value)
    assert "generate the twin with `make twin` or `thesis data synth data/twin`" in str(error.value)


def test_weights_sentence_names_the_backbones_of_the_profile():
    small = describe_weights("small")
    assert "minilm (pretrained all-MiniLM-L6-v2, packaged)" in small
    assert "resnet18 (random init)" in small and "4 blocks" in small
    assert "yolo (trained on the twin)" in small and "oracle (the twin's true boxes)" in small


# --------------------------------------------------------------------------------------------------------
# Runs with a kernel


FIGURE_CELL = (
    "import sys\nimport matplotlib.pyplot as plt\nfrom myst_nb import glue\n"
    "print('progress 50%', file=sys.stderr)\n"
    "figure, axis = plt.subplots(figsize=(2, 2)); axis.plot([0, n])\nglue('line', figure, display=False)\n"
    "glue('n_value', n, display=False)"
)


@pytest.mark.slow
def test_a_failing_cell_stops_the_build_naming_chapter_cell_and_partial_notebook(tmp_path):
    root = write_book_tree(tmp_path, {"03_ok": [("code", "x = 1")],
                                      "03_broken": [("md", "# Broken"), ("code", "y = 2"),
                                                    ("code", "raise ValueError('no such poster')")],
                                      "03_never": [("code", "z = 3")]},
                           parameters="n: int = 1  # n")
    with pytest.raises(ChapterFailedError) as failure:
        build_book(BookBuild(root=root, overrides=(("n", "4"),)), log=lambda _: None)
    message = str(failure.value)
    partial = root / EXECUTED_DIR / "03_broken.ipynb"
    # Cell 4 of the committed notebook: parameters, markdown, y = 2, then the raise.
    assert message.startswith("chapter 03_broken failed in cell 4: ValueError: no such poster")
    assert str(partial) in message and failure.value.partial == partial
    cells = nbformat.read(partial, as_version=4).cells
    assert any(output.get("ename") == "ValueError" for cell in cells if cell.cell_type == "code"
               for output in cell.outputs)
    assert (root / EXECUTED_DIR / "03_ok.ipynb").is_file()
    assert not (root / EXECUTED_DIR / "03_never.ipynb").exists()  # the build stopped at the failure
    assert not (root / "_build" / "html" / "index.html").exists()


@pytest.mark.slow
def test_a_chapter_kernel_shows_the_library_log_lines(tmp_path, capsys):
    source = write_notebook(tmp_path / "notebooks" / "03_log.ipynb",
                            ("code", "import logging\nlogging.getLogger('thesis_lib.demo').info('step %d of 3', n)"),
                            parameters="n: int = 1  # n")
    chapter = Chapter("03_log", source, tmp_path / EXECUTED_DIR / "03_log.ipynb")
    execute_chapter(chapter, {"n": 2}, kernel="python3", cwd=tmp_path)
    cells = nbformat.read(chapter.executed, as_version=4).cells
    stderr = "".join(output.get("text", "") for cell in cells if cell.cell_type == "code"
                     for output in cell.outputs if output.get("name") == "stderr")
    assert "thesis_lib.demo: step 2 of 3" in stderr  # kept in the executed copy (out of the page)
    assert "thesis_lib.demo: step 2 of 3" in capsys.readouterr().err  # and shown while the build runs


@pytest.mark.slow
def test_build_keeps_figures_under_agg_hides_parameters_and_stderr(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")  # the known pitfall: would drop every figure
    root = write_book_tree(tmp_path, {"03_fig": [
        ("md", "# Figure\n\nn is {glue:text}`n_value:d`.\n\n```{glue:figure} line\n:name: fig-line\n\nA line.\n```"),
        ("code", FIGURE_CELL)]}, parameters="n: int = 1  # the slope")
    with pytest.raises(ProfileError, match="no chapter of this build declares the parameter.s. typo"):
        build_book(BookBuild(root=root, overrides=(("typo", "1"),)), log=lambda _: None)
    result = build_book(BookBuild(root=root, overrides=(("n", "7"),)), log=lambda _: None)

    executed = nbformat.read(root / EXECUTED_DIR / "03_fig.ipynb", as_version=4)
    outputs = [output for cell in executed.cells if cell.cell_type == "code" for output in cell.outputs]
    glued = [output for output in outputs if "application/papermill.record/text/plain" in output.get("data", {})]
    assert any("application/papermill.record/image/png" in output["data"] for output in glued), "figure dropped"
    page = (root / "_build" / "html" / "book" / "_executed" / "03_fig.html").read_text(encoding="utf-8")
    assert "n is <span class=\"pasted-text\">7</span>" in page  # the override reached the notebook
    assert "<img" in page and "A line." in page
    assert "output stderr" not in page  # the cell's stderr output (a progress line) stays out of the page
    assert "# Parameters" not in page  # papermill's injected cell is hidden
    assert "Parameters of this run" in page and "the slope" in page
    assert result.html_index == root / "_build" / "html" / "index.html"
    recorded = json.loads((root / EXECUTED_DIR / "provenance.json").read_text(encoding="utf-8"))
    assert recorded["overrides"] == {"n": 7} and recorded["data"] is None
    assert set(recorded["chapter_seconds"]) == {"03_fig"}


# --------------------------------------------------------------------------------------------------------
# Re-render without re-running


def _set_cell(path: Path, index: int, source: str) -> None:
    notebook = nbformat.read(path, as_version=4)
    notebook.cells[index].source = source
    nbformat.write(notebook, path)


def test_render_key_ignores_prose_and_sees_code_parameters_runs_library_and_lock(tmp_path):
    root = write_book_tree(tmp_path / "book", {"04_r": [("md", "# R"), ("code", "x = n")]},
                           parameters="n: int = 1  # n")
    (chapter,) = chapters_from_toc(root)
    notebook = nbformat.read(chapter.source, as_version=4)
    notebook.metadata["thesis"] = {"reads_runs": True}  # as 04_experiments and 04_xai say
    nbformat.write(notebook, chapter.source)
    runs = tmp_path / "runs"
    record = runs / "thesis" / "fusion_early" / "seed0" / "record.json"
    record.parent.mkdir(parents=True)
    record.write_text('{"config_hash": "a"}', encoding="utf-8")
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "sub" / "m.py").write_text("A = 1\n", encoding="utf-8")

    def key(parameters=None):
        inputs = reuse.BuildInputs(reuse.library_hash(package), reuse.file_hash(root / reuse.LOCK_FILE),
                                   reuse.results_hash(root), "fp", runs, {"epochs": 1})
        return reuse.render_key(chapter, parameters or {"n": 2}, inputs, "thesis-lib")

    first = key()
    assert first.changed(None) == list(reuse.PARTS)
    _set_cell(chapter.source, 1, "# R, reworded")  # prose
    assert key().changed(first) == []
    assert key({"n": 3}).changed(first) == ["parameters"]
    _set_cell(chapter.source, 2, "x = n + 1")
    assert key().changed(first) == ["code"]
    _set_cell(chapter.source, 2, "x = n")
    (root / "results").mkdir(exist_ok=True)
    (root / "results" / "seeds-smoke.json").write_text("{}", encoding="utf-8")  # a new committed results file
    assert key().changed(first) == ["results"]
    (root / "results" / "seeds-smoke.json").unlink()
    record.write_text('{"config_hash": "b"}', encoding="utf-8")  # a run retrained
    assert key().changed(first) == ["runs"]
    (package / "sub" / "m.py").write_text("A = 2\n", encoding="utf-8")
    (root / reuse.LOCK_FILE).parent.mkdir(parents=True)
    (root / reuse.LOCK_FILE).write_text("torch==2.5.1\n", encoding="utf-8")
    assert key().changed(first) == ["runs", "library", "lock"]


def test_refresh_prose_takes_the_new_markdown_and_keeps_outputs_and_added_cells(tmp_path):
    source = write_notebook(tmp_path / "src.ipynb", ("md", "# Old title"), ("code", "print(n)"), ("md", "end"),
                            parameters="n: int = 1  # n")
    executed = nbformat.read(source, as_version=4)
    executed.cells.insert(1, nbformat.v4.new_code_cell("n = 5", metadata={"tags": ["injected-parameters"]}))
    executed.cells.insert(2, nbformat.v4.new_markdown_cell("note", metadata={"tags": ["run-parameters"]}))
    executed.cells[4].outputs = [nbformat.v4.new_output("stream", name="stdout", text="5\n")]
    nbformat.write(executed, tmp_path / "done.ipynb")
    notebook = nbformat.read(source, as_version=4)
    notebook.cells[1].source = "# New title"
    notebook.cells.insert(3, nbformat.v4.new_markdown_cell("A new paragraph."))
    notebook.cells[2].metadata["tags"] = ["hide-input"]
    nbformat.write(notebook, source)
    assert reuse.refresh_prose(source, tmp_path / "done.ipynb")
    cells = nbformat.read(tmp_path / "done.ipynb", as_version=4).cells
    assert [cell.source for cell in cells] == [notebook.cells[0].source, "n = 5", "note", "# New title",
                                               "print(n)", "A new paragraph.", "end"]
    assert cells[4].outputs[0].text == "5\n" and cells[4].metadata.tags == ["hide-input"]
    assert "remove-cell" in cells[0].metadata.tags  # the parameters cell stays hidden
    notebook.cells[2].source = "print(n + 1)"  # code no longer pairs up: run it again
    nbformat.write(notebook, source)
    assert not reuse.refresh_prose(source, tmp_path / "done.ipynb")


@pytest.mark.slow
def test_a_second_build_reuses_unchanged_chapters_shows_new_prose_and_reruns_edited_code(tmp_path):
    root = write_book_tree(tmp_path, {
        "03_a": [("md", "# A\n\nFirst words; n is {glue:text}`a_n:d`."),
                 ("code", "from myst_nb import glue\nglue('a_n', n, display=False)")],
        "03_b": [("md", "# B"), ("code", "b = n + 1")]}, parameters="n: int = 1  # n")
    build = BookBuild(root=root, overrides=tuple(yaml_parameters("n: 7")))  # thesis book -y 'n: 7'
    build_book(build, log=lambda _: None)
    executed = root / EXECUTED_DIR / "03_a.ipynb"
    assert reuse.stored_key(executed) is not None

    _set_cell(root / "notebooks" / "03_a.ipynb", 1, "# A\n\nReworded words; n is {glue:text}`a_n:d`.")
    lines: list[str] = []
    result = build_book(build, log=lines.append)
    assert result.provenance.reused == ["03_a", "03_b"] and result.provenance.chapter_seconds == {}
    assert [line.split()[0] for line in lines if " reused: " in line] == ["03_a", "03_b"]
    assert not any(line.startswith("running ") for line in lines)
    page = (root / "_build" / "html" / "book" / "_executed" / "03_a.html").read_text(encoding="utf-8")
    assert "Reworded words; n is <span class=\"pasted-text\">7</span>" in page and "First words" not in page
    assert "tag_hide-input" in page  # a reused chapter's code stays folded, as when it ran
    front = (root / "_build" / "html" / "book" / "intro.html").read_text(encoding="utf-8")  # the front page
    assert "reused from an earlier build" in front and "03_a, 03_b" in front
    assert json.loads((root / EXECUTED_DIR / "provenance.json").read_text())["reused"] == ["03_a", "03_b"]
    build_log = (root / "_build" / "book-build.log").read_text(encoding="utf-8")
    assert build_log.startswith("03_a reused: ") and "reused 2 of 2 chapters" in build_log

    # The build's chapter step alone (Jupyter Book needs not run again): a code edit reruns that chapter only.
    inputs = reuse.build_inputs(root, data=None, runs_root=None, profile=None)
    _set_cell(root / "notebooks" / "03_b.ipynb", 2, "b = n + 2")
    lines.clear()
    runs = [run_chapter(chapter, {"n": 7}, inputs, kernel=project_kernel(), root=root, log=lines.append)
            for chapter in chapters_from_toc(root)]
    assert [run.reused for run in runs] == [True, False]
    assert any(line.startswith("running 03_b") and "changed: code" in line for line in lines)
    assert reuse.stored_key(root / EXECUTED_DIR / "03_b.ipynb") is not None  # keyed again: reused next time
    # ... and so does a change of the library's sources (every chapter: what it imports changed)
    changed = reuse.BuildInputs("another library", inputs.lock, inputs.results, None, None, None)
    (chapter_a, _) = chapters_from_toc(root)
    assert reuse.render_key(chapter_a, {"n": 7}, changed, project_kernel()).changed(
        reuse.stored_key(executed)) == ["library"]


# --------------------------------------------------------------------------------------------------------
# What the methods chapter shows about the models


@pytest.fixture(scope="module")
def grid(tiny_twin, tmp_path_factory) -> dict:
    """The runs chapter 4 would train on the tiny twin (the smoke profile, the small models), as the grid
    builds them."""
    runs = tmp_path_factory.mktemp("grid-runs")
    profile = load_profile("smoke", {"data_root": str(tiny_twin), "runs_dir": str(runs)})
    return grid_models(profile)


@pytest.mark.slow
def test_chapter_3_counts_the_models_chapter_4_trains_and_says_what_each_name_stands_for(grid):
    smoke = load_profile("smoke")
    assert set(grid) == {*smoke.models, *(ablation.name for ablation in smoke.ablations)}  # in the order they run
    table = grid_parameter_table(grid)
    trained = table.dropna(subset=["total"])
    assert (trained[list(PARTS)].fillna(0).sum(axis=1) == trained["total"]).all()
    # the smoke stand-ins, not the registry's default recipes: ResNet-10 at quarter width, random init
    described = table["stands for (this build)"]
    assert "ResNet-10" in described["image_resnet50"] and "0.25x width" in described["image_resnet50"]
    assert "random init" in described["image_resnet50"] and "random init" in described["text_roberta"]
    assert trained.loc["image_resnet50", "total"] < 500_000 < trained.loc["fusion_cross_attention", "total"]
    # a fusion starts from its source runs' encoders, frozen: the same text part, and nothing of it trains
    assert trained.loc["fusion_cross_attention", "text"] == trained.loc["text_roberta", "text"]
    assert trained.loc["fusion_cross_attention", "trainable"] < trained.loc["fusion_cross_attention", "total"]
    assert "text encoder of text_roberta (frozen)" in described["fusion_cross_attention"]
    assert table.loc["baseline_shallow", ["total"]].isna().all()
    shown = readable_counts(table)
    assert shown.loc["baseline_shallow", "total"] == "" and shown.loc["fusion_cross_attention", "total"].endswith("M")


@pytest.mark.slow
def test_cross_attention_trace_records_the_shapes_of_the_trained_model_on_a_real_batch(tiny_twin, grid):
    release = load_release(tiny_twin)
    ids = list(release.official_split["train"][:2])
    model = grid["fusion_cross_attention"]
    config = without_pretrained_weights(model.config)
    truth = load_truth_boxes(release, ids, twin_classes())
    objects = pad_detections([truth[movie_id].as_detections() for movie_id in ids])  # the oracle's regions
    batch_input = example_batch(release, ids, config, objects, tokenizer=model.tokenizer)
    trace = trace_cross_attention(build_from_config(config), batch_input)
    batch, heads, head_dim = 2, config.fusion.heads, config.fusion.dim // config.fusion.heads
    n_text = trace.shapes["text"][1]
    n_image = (config.image.input_size // 32) ** 2 + objects["mask"].shape[1]  # the ResNet grid, then the regions
    assert n_text <= config.text.max_length and trace.image_parts == ("image", "objects")
    assert trace.shapes["image"] == (batch, n_image, config.fusion.dim)
    assert trace.shapes["query"] == (batch, heads, n_text, head_dim)
    assert trace.shapes["key"] == trace.shapes["value"] == (batch, heads, n_image, head_dim)
    assert trace.shapes["weights"] == (batch, heads, n_text, n_image)
    assert trace.shapes["update"] == (batch, n_text, config.fusion.dim)


# --------------------------------------------------------------------------------------------------------
# What the methods chapter shows about the detectors (a stand-in detector: the real ones are trained in
# tests/test_detection*.py and run end to end in tests/browser/)


class FixedDetector:
    """Finds one "ghost" box and one "car" box on every poster."""

    vocabulary = ("person", "car", "ghost")
    num_parameters = 1_234_567

    def __init__(self, weights: str, training_report: dict | None = None):
        self.config = DetectorConfig(kind="yolo", weights=weights, max_regions=4)
        self.training_report = training_report

    def detect(self, images, score_threshold=None, max_regions=None):
        boxes = torch.tensor([[0.1, 0.1, 0.5, 0.4], [0.5, 0.6, 0.9, 0.9]])  # (2, 4) normalised xyxy
        return [Detections(boxes, torch.tensor([2, 1]), torch.tensor([0.9, 0.6])) for _ in images]


def test_detector_words_and_map_sentence():
    twin = FixedDetector("twin", {"train_posters": 1200, "train_seconds": 61.4, "dev_map50": 0.9})
    assert objects.detector_weights(twin) == (
        "YOLOv8n, trained here from scratch on 1,200 twin training posters (3 epochs)")
    assert objects.detector_weights(FixedDetector("coco")) == "YOLOv8n, COCO-pretrained"


def test_a_rehearsal_s_coco_stand_in_is_never_called_pretrained(tmp_path, monkeypatch):
    from thesis_lib.detection import yolo
    from thesis_lib.models.pretrained import mark_standin

    monkeypatch.setenv("THESIS_CACHE", str(tmp_path))
    detector = FixedDetector("coco")
    weights = yolo.coco_weights_path(detector.config)
    weights.parent.mkdir(parents=True, exist_ok=True)
    weights.write_bytes(b"random weights")
    mark_standin(weights, "rehearsal stand-in: yolov8n.pt")
    assert objects.detector_weights(detector) == "YOLOv8n, a random COCO stand-in"
    table = pd.DataFrame({"test mAP@0.5": [0.912, 0.97]}, index=["YOLOv8n", "Faster R-CNN"])
    assert objects.map_sentence(table, ["1"] * 100) == (
        "on 100 test posters of the twin, mAP@0.5 is YOLOv8n 0.91 and Faster R-CNN 0.97.")
    assert "not measured on MM-IMDb" in objects.map_sentence(table, None)


def test_detections_become_the_padded_objects_batch_and_a_figure():
    detector = FixedDetector("twin")
    posters = [Image.new("RGB", (224, 336), (200, 120, 40)) for _ in range(3)]
    batch = objects.objects_batch(detector, ["a", "b", "c"], posters)
    assert batch["boxes"].shape == (3, 4, 4) and batch["mask"].sum(dim=1).tolist() == [2, 2, 2]
    assert batch["classes"][0, :2].tolist() == [2, 1]  # sorted by score, padded to max_regions
    figure = objects.detections_figure({"yolo": detector, "frcnn": detector}, ["a", "b", "c"], posters)
    assert len(figure.axes) == 6  # one row per detector
    first = figure.axes[0]
    assert [p.get_width() for p in first.patches] == pytest.approx([0.4 * 224, 0.4 * 224])  # scaled to pixels
    assert first.get_title() == "YOLOv8n: a" and "ghost 0.90" in [t.get_text() for t in first.texts]


def test_every_reference_is_cited_and_carries_a_doi_an_arxiv_id_or_a_url():
    """The bibliography page lists what the chapters cite; each entry links to the work (DOI, arXiv or, for
    software without either, its URL), and no key is cited that the bibliography lacks."""
    import re

    bibliography = (ROOT / "book" / "references.bib").read_text(encoding="utf-8")
    entries = dict(re.findall(r"^@\w+\{([^,\s]+),(.*?)^\}", bibliography, flags=re.M | re.S))
    unlinked = [key for key, body in entries.items() if not re.search(r"^\s*(doi|eprint|url)\s*=", body, re.M)]
    assert not unlinked, f"references without a DOI, arXiv id or URL: {unlinked}"
    prose = [nbformat.read(path, as_version=4) for path in sorted((ROOT / "notebooks").glob("*.ipynb"))]
    texts = ["".join(cell.source) for notebook in prose for cell in notebook.cells if cell.cell_type == "markdown"]
    texts += [path.read_text(encoding="utf-8") for path in sorted((ROOT / "book").glob("*.md"))]
    cited = {key.strip() for text in texts for keys in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", text)
             for key in keys.split(",")}
    assert cited <= set(entries), f"cited but not in references.bib: {sorted(cited - set(entries))}"
    assert set(entries) <= cited, f"in references.bib but cited nowhere: {sorted(set(entries) - cited)}"
    # YOLOv8n is Ultralytics' model, not the 2016 YOLO paper's (which stays cited as its family).
    assert "jocher2023yolov8" in cited


def test_the_book_style_shows_tables_whole():
    """A chapter's table is never cut by pandas ("..." columns or rows) and the book's stylesheet lets a wide
    one scroll inside the page."""
    from thesis_lib.plots import use_book_style

    wide = pd.DataFrame(np.arange(80 * 30).reshape(80, 30), columns=[f"metric {i}" for i in range(30)])
    with pd.option_context("display.max_columns", 20, "display.max_rows", 60):
        assert "..." in wide._repr_html_()  # pandas' defaults cut it
        use_book_style()
        html = wide._repr_html_()
    assert "..." not in html and "metric 29" in html and ">2399<" in html
    stylesheet = (ROOT / "book" / "_static" / "tables.css").read_text(encoding="utf-8")
    assert "overflow-x: auto" in stylesheet


def test_korean_text_in_a_figure_gets_its_glyphs_in_every_exported_format():
    """The book style falls back to an installed Korean font for Hangul (DejaVu Sans has none)."""
    import io
    import warnings

    import matplotlib.pyplot as plt

    from thesis_lib.plots import korean_font, use_book_style

    if korean_font() is None:
        pytest.skip("no Korean font installed (make browser installs fonts-nanum)")
    use_book_style()
    figure, axis = plt.subplots()
    axis.set_title("장르 · Drama")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)"
        for suffix in ("png", "pdf", "svg"):
            figure.savefig(io.BytesIO(), format=suffix)
    plt.close(figure)
