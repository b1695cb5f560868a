"""End to end: render a tiny book (tiny twin, tiny parameters) and open it in headless Chromium.

The build runs every chapter of the real `_toc.yml` with the real notebooks and the smoke profile, on a
copy of the book tree in a temporary folder, with overrides that keep it small (a 40-movie twin, one
training epoch, a few models, both splits; the runs go to the copy's own runs folder). Chromium then
loads each page (`--dump-dom`) and the checks read what it rendered: the page and its banner, every figure
present and not blank, every caption naming its data (and its weights outside the data chapter); on the
chapter-4 pages also numbers of the results tables (thesis and official split) against their run records,
the official split's verdict, and the Grad-CAM images as the browser loaded them.

Chapter 4 is rendered a second time on a copy of the twin without twin_truth.json: the MM-IMDb branch of
the chapters (no banner, the XAI checks that need no ground truth, the peers' published figures beside the
official-split rows). That copy keeps the data fingerprint (the truth file is not part of it), so the
runs that read no ground truth (baselines, single-modality runs) are shared by record with the twin's
grid; the fusions read the twin's true boxes (objects_oracle), which the copy lacks, so its grid retrains
them on text and poster only. Screenshots of chapter 4 of both branches are kept in test-artifacts/
(git-ignored). The twin's tiny book is also printed to one PDF (`thesis book pdf`, the same Chromium) and
read back with pypdf; it is kept there too.

Chromium is Debian's `chromium` (`make test` installs it when missing and apt-get is there); without it the
test is skipped, unless THESIS_REQUIRE_CHROMIUM=1, which turns the skip into a failure: `make test` sets it
where Chromium is found or under CI, so only a machine without Chromium and apt-get, outside CI, skips.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

from thesis_lib.book.build import BookBuild, BookResult, build_book
from thesis_lib.book.chapters import chapters_from_toc
from thesis_lib.book.execute import accepted_parameters, declared_parameters
from thesis_lib.book.numbering import read_manifest
from thesis_lib.book.pdf import CHROMIUM_FLAGS, book_pdf, find_chromium  # headless, never on the network
from thesis_lib.cli import main
from thesis_lib.data.twin import TwinConfig, generate_twin
from thesis_lib.data.twin.generate import TRUTH_FILE

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
TINY_TWIN = TwinConfig(n_movies=40, seed=0)
# Parameters that keep each chapter tiny. Only those some chapter takes are passed (a `-p` nobody takes
# is an error; a chapter that loads the profile takes every profile key). The grid of the tiny book: the
# models chapter 4 reads (the proposed model, the sources its fusions reuse, the attention fusion, two
# baselines), with the twin's true boxes as detections
# (no detector to train) and two ablations; one epoch, one learning-rate trial, 20 bootstrap resamples.
TINY_MODELS = ("baseline_frequency", "baseline_shallow", "text_roberta", "image_resnet50", "objects_oracle",
               "fusion_early", "fusion_late", "fusion_attention", "fusion_cross_attention")
TINY_ABLATIONS = ({"name": "fusion_cross_attention@no_objects", "changes": {"modalities": ["text", "image"]}},
                  {"name": "fusion_cross_attention@one_way", "changes": {"fusion_bidirectional": False}})
TINY_PARAMETERS = {"epochs": "1", "seeds": "0", "lr_scales": "1.0", "bootstrap_resamples": "20",
                   "splits": "thesis,official", "models": ",".join(TINY_MODELS),
                   "ablations": json.dumps(list(TINY_ABLATIONS)), "fusion_objects_source": "objects_oracle"}
# The MM-IMDb branch (the twin's copy without twin_truth.json): the runs chapter 4 reads. The baselines and
# single-modality runs come from the twin's grid (same fingerprint and config); the fusions read text and
# poster only (every detection source of the small recipes needs the twin's boxes), so they train again.
SHARED_RUNS = ("baseline_frequency", "baseline_shallow", "text_roberta", "image_resnet50")
MMIMDB_MODELS = (*SHARED_RUNS, "fusion_attention", "fusion_cross_attention")
MMIMDB_FUSIONS = ("fusion_attention", "fusion_cross_attention")
MMIMDB_PARAMETERS = TINY_PARAMETERS | {"models": ",".join(MMIMDB_MODELS), "ablations": json.dumps([TINY_ABLATIONS[1]])}
CHAPTER_4 = ("04_experiments", "04_xai")
RUNS = "runs"  # the tiny grid's runs folder, inside the book's copy (never the project's runs/)
BROWSER_TIMEOUT_S = 90
SHOT_HEIGHT = 16000  # px of a chapter-4 screenshot: the whole page of the tiny book
MIN_PDF_PAGES = 40  # the tiny book printed to 70 A4 pages (2026-12)
WEIGHTLESS_CHAPTERS = {"03_data"}  # figures of the data alone: their captions name no weights
pytestmark = pytest.mark.slow  # builds the whole tiny book (a grid included), then opens it in Chromium


def chromium() -> str | None:
    return find_chromium()


@pytest.fixture(scope="module")
def browser() -> str:
    found = chromium()
    if found is None:
        message = "headless Chromium not found (Debian: apt-get install chromium; `make test` does it)"
        if os.environ.get("THESIS_REQUIRE_CHROMIUM") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


def run_browser(browser: str, *arguments: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *arguments],
                              capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, check=True)


@pytest.fixture(scope="module")
def tiny_twin(tmp_path_factory) -> Path:
    twin = tmp_path_factory.mktemp("twin") / "release"
    generate_twin(twin, TINY_TWIN, workers=1)
    return twin


def book_tree(root: Path) -> Path:
    """A copy of the book's tree (config, TOC, pages, notebooks) at `root`."""
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(ROOT / name, root / name)
    shutil.copytree(ROOT / "book", root / "book", ignore=shutil.ignore_patterns("_executed"))
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    return root


def run_and_render(root: Path, release: Path, parameters: dict[str, str],
                   only: tuple[str, ...] | None = None) -> BookResult:
    """As the README says for the real release: `thesis run` makes the runs, then the book renders them
    (given a runs folder it renders only: a run missing here would stop the build before any chapter)."""
    chapters = chapters_from_toc(root) if only is None else [c for c in chapters_from_toc(root) if c.name in only]
    declared = set().union(*(accepted_parameters(declared_parameters(c.source)) for c in chapters))
    settings = [f"{key}={value}" for key, value in parameters.items()]
    assert main(["run", "--profile", "smoke", "--data", str(release), "--runs", str(root / RUNS), *settings]) == 0
    tiny = parameters | {"runs_dir": str(root / RUNS)}
    overrides = [("data_root", str(release))] + [(k, v) for k, v in tiny.items() if k in declared]
    return build_book(BookBuild(root=root, profile="smoke", overrides=tuple(overrides), only=only))


@pytest.fixture(scope="module")
def book(tiny_twin, tmp_path_factory) -> BookResult:
    return run_and_render(book_tree(tmp_path_factory.mktemp("book")), tiny_twin, TINY_PARAMETERS)


@pytest.fixture(scope="module")
def mmimdb_book(book, tiny_twin, tmp_path_factory) -> BookResult:
    """Chapter 4 on a copy of the tiny twin without its truth file: what a real release looks like."""
    import yaml

    release = tmp_path_factory.mktemp("mmimdb") / "release"
    shutil.copytree(tiny_twin, release, ignore=shutil.ignore_patterns(TRUTH_FILE))
    root = book_tree(tmp_path_factory.mktemp("book-mmimdb"))
    shared = book_root(book) / RUNS
    shutil.copytree(shared / "splits", root / RUNS / "splits")
    for split in TINY_PARAMETERS["splits"].split(","):
        for name in SHARED_RUNS:
            shutil.copytree(shared / split / name, root / RUNS / split / name)
    smoke = yaml.safe_load((ROOT / "notebooks" / "params" / "smoke.yaml").read_text(encoding="utf-8"))
    overrides = smoke["model_overrides"] | {name: {"modalities": ["text", "image"]} for name in MMIMDB_FUSIONS}
    result = run_and_render(root, release, MMIMDB_PARAMETERS | {"model_overrides": json.dumps(overrides)}, CHAPTER_4)
    for split in TINY_PARAMETERS["splits"].split(","):
        for name in SHARED_RUNS:  # shared by record: the grid on the copy skipped them
            assert (root / RUNS / split / name / "seed0" / "record.json").stat().st_mtime == (
                shared / split / name / "seed0" / "record.json").stat().st_mtime, f"{split}/{name} was retrained"
    return result


def book_root(result: BookResult) -> Path:
    return result.html_index.parents[2]  # <root>/_build/html/index.html


@dataclass
class RenderedPage:
    """What Chromium rendered: title, banner text, and each figure's image sources and caption."""

    title: str = ""
    banner: str = ""
    figures: list[tuple[list[str], str]] = field(default_factory=list)
    text: str = ""
    dom: str = ""  # the document as Chromium rendered it (its tables are read from it: `rendered_tables`)


class _DomReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.page = RenderedPage()
        self._open: list[str] = []  # what we are inside of: "h1", "banner", "figure", "figcaption"
        self._images: list[str] = []
        self._caption: list[str] = []
        self._title: list[str] = []
        self._banner: list[str] = []
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "h1" and not self.page.title and "h1" not in self._open:
            self._open.append("h1")
        elif tag == "aside" and "bd-header-announcement" in classes:
            self._open.append("banner")
        elif tag == "figure":
            self._open.append("figure")
            self._images, self._caption = [], []
        elif tag == "figcaption":
            self._open.append("figcaption")
        elif tag == "img" and "figure" in self._open:
            self._images.append(attributes.get("src", ""))
        elif tag == "a" and "headerlink" in classes:
            self._open.append("headerlink")  # the "#" anchor Sphinx appends to headings

    def handle_endtag(self, tag):
        closing = {"h1": "h1", "aside": "banner", "figure": "figure", "figcaption": "figcaption",
                   "a": "headerlink"}.get(tag)
        if closing is None or closing not in self._open:
            return
        self._open.remove(closing)
        if closing == "h1":
            self.page.title = " ".join("".join(self._title).split())
        elif closing == "banner":
            self.page.banner = " ".join("".join(self._banner).split())
        elif closing == "figure":
            self.page.figures.append((self._images, " ".join("".join(self._caption).split())))

    def handle_data(self, data):
        if "headerlink" in self._open:
            return
        self._text.append(data)
        if "h1" in self._open:
            self._title.append(data)
        if "banner" in self._open:
            self._banner.append(data)
        if "figcaption" in self._open:
            self._caption.append(data)

    def close(self):
        super().close()
        self.page.text = " ".join("".join(self._text).split())


def render(browser: str, page: Path) -> RenderedPage:
    dom = run_browser(browser, "--dump-dom", page.as_uri()).stdout
    assert "<body" in dom, f"Chromium returned no document for {page}"
    reader = _DomReader()
    reader.feed(dom)
    reader.close()
    reader.page.dom = dom
    return reader.page


def assert_not_blank(path: Path) -> None:
    """An image with real content: not one flat colour, not a few pixels."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"), dtype=np.float32)  # (H, W)
    assert min(pixels.shape) >= 50, f"{path.name}: only {pixels.shape} pixels"
    assert pixels.std() > 5 and len(np.unique(pixels)) > 10, f"{path.name} is blank"


def chapter_title(chapter_source: Path) -> str:
    first_line = nbformat.read(chapter_source, as_version=4).cells[0].source.splitlines()[0]
    return first_line.removeprefix("# ").strip()


def glued_figures(chapter_source: Path) -> int:
    cells = nbformat.read(chapter_source, as_version=4).cells
    return sum(cell.source.count("{glue:figure}") for cell in cells if cell.cell_type == "markdown")


# Checks that only a chapter-4 page needs, by chapter name; the generic checks run on every page.


@dataclass(frozen=True)
class Branch:
    """One rendered book: the twin's, or the MM-IMDb branch (the twin's copy without ground truth)."""

    name: str  # "twin" | "mmimdb": the screenshots' prefix
    root: Path  # the book's tree (its runs folder is root / RUNS)
    twin: bool

    @property
    def html(self) -> Path:
        return self.root / "_build" / "html"

    def page(self, chapter: str) -> Path:
        return self.html / "book" / "_executed" / f"{chapter}.html"


ChapterCheck = Callable[[RenderedPage, Branch], None]
FIRST_NUMBER = re.compile(r"-?\d+\.\d+")


class _TableReader(HTMLParser):
    """Every <table> of a page as rows of cell texts (header rows included)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th") and self.tables and self.tables[-1]:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def rendered_tables(page: RenderedPage) -> list[list[list[str]]]:
    """Every table of a page Chromium rendered (`render`), as rows of cell texts."""
    reader = _TableReader()
    reader.feed(page.dom)
    return reader.tables


def table_cell(tables: list[list[list[str]]], column: str, row: str) -> str:
    """The cell of the first table with a header cell `column`, in the row whose first cell is `row`."""
    for table in tables:
        header = next((cells for cells in table if column in cells), None)
        if header is None:
            continue
        body = next((cells for cells in table if cells and cells[0] == row), None)
        assert body is not None, f"the table with column {column!r} has no row {row!r}"
        offset = len(body) - len(header)  # the index cell may sit in a header row of its own
        return body[header.index(column) + offset]
    raise AssertionError(f"no table with a column {column!r}")


def tables_after(tables: list[list[list[str]]], header_start: str) -> list[list[list[str]]]:
    """The tables from the first one with a header cell that starts with `header_start` on."""
    for index, table in enumerate(tables):
        if any(cell.startswith(header_start) for row in table[:2] for cell in row):
            return tables[index:]
    raise AssertionError(f"no table with a header cell starting {header_start!r}")


def column_cell(table: list[list[str]], header_start: str, row: str) -> str:
    """The cell of `table` under the header cell that starts with `header_start`, in the row named `row`."""
    header = next(cells for cells in table if any(cell.startswith(header_start) for cell in cells))
    body = next((cells for cells in table if cells and cells[0] == row), None)
    assert body is not None, f"no row {row!r} in the table with column {header_start!r}"
    column = next(index for index, cell in enumerate(header) if cell.startswith(header_start))
    return body[column + len(body) - len(header)]


def keep_screenshot(page: Path, branch: Branch) -> Path:
    """A tall screenshot of a chapter-4 page in test-artifacts/, for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"book-{page.stem}.png" if branch.twin else ARTIFACTS / f"book-{branch.name}-{page.stem}.png"
    run_browser(chromium(), f"--window-size=1280,{SHOT_HEIGHT}", f"--screenshot={shot}", page.as_uri())
    assert_not_blank(shot)
    return shot


def recorded_macro_f1(branch: Branch, split: str, policy: str) -> float:
    from thesis_lib.book.experiments_chapter import PROPOSED

    records = [json.loads(path.read_text())
               for path in sorted((branch.root / RUNS / split / PROPOSED).glob("seed*/record.json"))]
    assert records, f"no run records of {PROPOSED} under {branch.root / RUNS / split}"
    return float(np.mean([record["metrics"][policy]["summary"]["macro_f1"] for record in records]))


def check_results_table_against_records(page: RenderedPage, branch: Branch) -> None:
    """The proposed model's macro-F1 in the comparison tables of both splits equals the one in its run
    records; the official split's verdict is the one its records give; the peers' published figures are
    there on the MM-IMDb branch only."""
    from thesis_lib.analysis.comparison import compare
    from thesis_lib.analysis.published import PUBLISHED
    from thesis_lib.book.experiments_chapter import PROPOSED

    page_path = branch.page("04_experiments")
    keep_screenshot(page_path, branch)
    tables = rendered_tables(page)
    official = tables_after(tables, "official split")  # the claims table, then the official split's own
    for split, shown_in in (("thesis", tables), ("official", official[1:])):
        for column, policy in (("macro-F1 @0.5", "fixed_0.5"), ("macro-F1 tuned", "tuned_per_genre")):
            shown = float(FIRST_NUMBER.search(table_cell(shown_in, column, PROPOSED)).group())
            recorded = recorded_macro_f1(branch, split, policy)
            assert shown == pytest.approx(recorded, abs=5e-4), f"{split} {column}: page {shown}, records {recorded}"
    rival = column_cell(official[0], "official split", "best other model").split(" (")[0]
    expected = compare(branch.root / RUNS, PROPOSED, rival, n_resamples=int(TINY_PARAMETERS["bootstrap_resamples"]),
                       seeds=[0], split="official")
    assert column_cell(official[0], "official split", "verdict") == str(expected["verdict"])
    assert column_cell(official[0], "thesis split", "verdict") in {"ahead", "behind", "undecided"}
    published = [cells for table in tables for cells in table if cells and cells[0].endswith(", published")]
    if branch.twin:
        assert not published, f"published figures on the twin: {published}"
    else:
        assert [cells[0] for cells in published] == [paper.label for paper in PUBLISHED]
        assert column_cell(tables_after(tables, "official split, test")[0], "micro-F1 @0.5",
                           "GMU (Arevalo et al. 2017), published") == "0.630"


IMAGE_REPORT = """<script>
window.addEventListener("load", () => {
  const report = document.createElement("pre");
  report.id = "image-report";
  report.textContent = JSON.stringify([...document.images].map(
    image => [image.getAttribute("src"), image.complete, image.naturalWidth, image.naturalHeight]));
  document.body.appendChild(report);
});
</script>"""


def images_as_loaded(page: Path) -> dict[str, tuple[bool, int, int]]:
    """src -> (complete, natural width, natural height) of every <img>, as Chromium loaded the page: a copy
    of the page next to it reports them once the window's load event has fired."""
    probe = page.with_name(f"_probe_{page.name}")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", IMAGE_REPORT + "</body>"), encoding="utf-8")
    try:
        dom = run_browser(chromium(), "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()).stdout
    finally:
        probe.unlink()
    found = re.search(r'<pre id="image-report"[^>]*>(.*?)</pre>', dom, flags=re.S)  # the theme adds attributes
    assert found, f"{page.name}: the page's load event never fired in Chromium"
    report = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    return {src: (complete, width, height) for src, complete, width, height in report}


def check_gradcam_figures_are_loaded(page: RenderedPage, branch: Branch) -> None:
    """The XAI page shows its Grad-CAM figures inline: loaded by the browser, with varying pixels; without
    ground truth it checks deletion and randomisation only, and says so."""
    from thesis_lib.book.faithfulness import NO_GROUND_TRUTH
    from thesis_lib.xai.check import COMPARISONS

    page_path = branch.page("04_xai")
    gradcam = [(images[0], caption) for images, caption in page.figures if "Grad-CAM" in caption]
    assert len(gradcam) >= 3, f"expected the Grad-CAM grid, side-by-side and methods figures, got {len(gradcam)}"
    keep_screenshot(page_path, branch)
    loaded = images_as_loaded(page_path)
    for source, caption in gradcam:
        complete, width, height = loaded[source]
        assert complete and width >= 50 and height >= 50, f"Chromium did not load {source} ({caption[:60]!r})"
        assert_not_blank((page_path.parent / source).resolve())
        assert "Weights:" in caption and "fusion_cross_attention/seed0" in caption, f"no weights named: {caption!r}"
    # The verdict table: each comparison of an explanation with its reference, a verdict from its interval.
    shown = {cell.replace("’", "'") for table in rendered_tables(page) for cells in table for cell in cells}
    text = page.text.replace("’", "'")  # MyST's typographic apostrophes
    compared = [comparison.name for comparison in COMPARISONS if comparison.name in shown]
    if branch.twin:
        assert "pointing game against the poster's centre" in compared and NO_GROUND_TRUTH not in text
        assert shown & {"ahead", "behind", "undecided"}, "the verdict table shows no verdict"
    else:
        assert compared == ["deletion AUC against random order"], compared  # no boxes, no cue words
        assert NO_GROUND_TRUTH in text
        assert "n/a" not in text and "nan" not in text.split()


def check_capacity_table_against_its_results_file(page: RenderedPage, branch: Branch) -> None:
    """Chapter 4.3 shows the committed capacity results: every task and model of the file, with the file's
    accuracy as the table prints it, and the command that regenerates it."""
    from thesis_lib.book import capacity
    from thesis_lib.tables import DEFAULT_PRECISION

    results = capacity.load(ROOT)
    assert results.document is not None, results.status
    shown = {cell for table in rendered_tables(page) for cells in table for cell in cells}
    expected = capacity.capacity_table(results)
    for (task, model), row in expected.iterrows():
        assert task in shown and model in shown, f"capacity table lacks {task} / {model}"
        assert f"{row['accuracy']:.{DEFAULT_PRECISION}f}" in shown, f"{task} / {model}: {row['accuracy']} not shown"
    assert "thesis capacity" in page.text and "results/capacity.json" in page.text  # the command (dashes typeset)
    check_datasize_table_against_its_results_file(page, shown)


def check_datasize_table_against_its_results_file(page: RenderedPage, shown: set[str]) -> None:
    """4.3's data-size curve shows the committed file: cross-attention's difference from each pooled fusion, as
    the file gives it, for every genre group and size, and the command that regenerates it."""
    from thesis_lib.book import datasize

    results = datasize.load(ROOT)
    assert results.document is not None, results.status
    table = datasize.datasize_table(results)
    differences = table[[column for column in table.columns if column.startswith("minus ")]]
    for (group, size), row in differences.iterrows():
        for column, value in row.items():
            assert value in shown, f"data-size table lacks {group} / {size} / {column}: {value}"
    assert "thesis datasize" in page.text and "results/datasize.json" in page.text


CHAPTER_CHECKS: dict[str, ChapterCheck] = {
    "04_experiments": check_results_table_against_records,
    "04_xai": check_gradcam_figures_are_loaded,
    "04_capacity": check_capacity_table_against_its_results_file,
}


def check_chapter_page(chapter, branch: Branch, browser: str) -> None:
    """What every page shows (title, banner, figures with their data and weights), then its own checks."""
    page_path = branch.page(chapter.name)
    page = render(browser, page_path)
    assert page.title == chapter_title(chapter.source), f"{chapter.name}: title {page.title!r}"
    assert ("not thesis evidence" in page.banner) == branch.twin, f"{chapter.name}: banner {page.banner!r}"
    assert len(page.figures) == glued_figures(chapter.source), f"{chapter.name}: figures missing"
    for images, caption in page.figures:  # figures (그림 N.k) and glued tables (표 N.k), each with a caption
        if caption.startswith("표 "):
            assert not images, f"{chapter.name}: table {caption!r} shows an image"
        else:
            assert caption.startswith("그림 "), f"{chapter.name}: figure without its number: {caption!r}"
            assert len(images) == 1, f"{chapter.name}: figure {caption!r} has {len(images)} images"
            assert_not_blank((page_path.parent / images[0]).resolve())
        data = (r"Data: (synthetic twin|not used|synthetic token tasks)" if branch.twin
                else r"Data: (MM-IMDb|not used|synthetic token tasks)")
        assert re.search(data, caption), f"{chapter.name}: caption does not name its data: {caption!r}"
        if chapter.name not in WEIGHTLESS_CHAPTERS:
            assert "Weights:" in caption, f"{chapter.name}: caption does not name its weights: {caption!r}"
    # Tables whole: none cut by pandas, and the stylesheet that lets a wide one scroll is on the page.
    cut = [cells for table in rendered_tables(page) for cells in table if "..." in cells or "…" in cells]
    assert not cut, f"{chapter.name}: a table was cut: {cut[:2]}"
    assert "_static/tables.css" in page.dom, f"{chapter.name}: the tables stylesheet is not linked"
    if chapter.name in CHAPTER_CHECKS:
        CHAPTER_CHECKS[chapter.name](page, branch)


def test_front_page_states_what_produced_the_build(book, browser):
    html = book.html_index.parent
    front = render(browser, html / "book" / "intro.html")
    assert "not thesis evidence" in front.banner
    for expected in ("What produced this build", "Profile: smoke", f"twin ({TINY_TWIN.n_movies} movies, seed 0)",
                     "Weights:", "minilm", "Code: thesis_lib"):
        assert expected in front.text, f"front page lacks {expected!r}"
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "book-front.png"
    run_browser(browser, "--window-size=1280,1400", f"--screenshot={shot}", (html / "book" / "intro.html").as_uri())
    assert_not_blank(shot)


def test_every_chapter_renders_its_figures_and_captions(book, browser):
    branch = Branch("twin", book_root(book), twin=True)
    chapters = chapters_from_toc(branch.root)
    assert chapters, "the TOC lists no chapter"
    for chapter in chapters:
        check_chapter_page(chapter, branch, browser)


def test_chapter_4_renders_on_a_release_without_ground_truth(mmimdb_book, browser):
    branch = Branch("mmimdb", book_root(mmimdb_book), twin=False)
    assert mmimdb_book.provenance.data.kind == "mmimdb"
    chapters = [chapter for chapter in chapters_from_toc(branch.root) if chapter.name in CHAPTER_4]
    assert [chapter.name for chapter in chapters] == list(CHAPTER_4)
    for chapter in chapters:
        check_chapter_page(chapter, branch, browser)


def test_screenshot_of_the_data_chapter_is_kept(book, browser):
    page = book.html_index.parent / "book" / "_executed" / f"{chapters_from_toc(ROOT)[0].name}.html"
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "book.png"
    run_browser(browser, "--window-size=1280,6000", f"--screenshot={shot}", page.as_uri())
    assert_not_blank(shot)


def pdf_text(text: str) -> str:
    """Text for comparing with what pypdf extracts: ligatures (fi) undone, no whitespace (the PDF breaks
    titles over lines and spaces Korean words unevenly)."""
    return "".join(unicodedata.normalize("NFKC", text).split())


def test_the_book_prints_to_one_pdf(book, browser, tmp_path):
    """`thesis book pdf` on the tiny book: pages, every chapter's title, Korean text that can be extracted,
    every figure and table with the number its page gives it, the figures as embedded images, and the title
    and author of _config.yml. Adds about 13 s (10 s to print)."""
    import yaml
    from pypdf import PdfReader

    root = book_root(book)
    result = book_pdf(root, tmp_path / "book.pdf", browser)
    reader = PdfReader(result.path)
    assert result.pages == len(reader.pages) > MIN_PDF_PAGES
    assert result.bytes == result.path.stat().st_size
    text = pdf_text("".join(page.extract_text() for page in reader.pages))
    chapters = chapters_from_toc(root)
    for chapter in chapters:
        assert pdf_text(chapter_title(chapter.source)) in text, f"the PDF lacks the title of {chapter.name}"
    assert "데이터" in text, "no Korean text in the PDF"  # glyphs with their text, not shapes alone
    assert pdf_text("Synthetic data: every number and figure") in text, "the twin's banner is not printed"
    numbered = read_manifest(book.html_index.parent)  # every figure and table, numbered as the pages number them
    for item in numbered:
        label = f"{'그림' if item.kind == 'figure' else '표'}{item.number}"
        assert label in text, f"the PDF lacks {label} ({item.label})"
    figures = sum(item.kind == "figure" for item in numbered)
    assert result.images >= figures > 0, f"{result.images} images embedded for {figures} figures"
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    assert (reader.metadata.title, reader.metadata.author) == (config["title"], config["author"])
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy2(result.path, ARTIFACTS / "book.pdf")


def test_chapter_4_pages_come_with_their_specific_checks():
    missing = [c.name for c in chapters_from_toc(ROOT) if c.name.startswith("04_") and c.name not in CHAPTER_CHECKS]
    assert not missing, f"add the page checks of {missing} to CHAPTER_CHECKS (see the comment above it)"
    assert set(CHAPTER_4) <= set(CHAPTER_CHECKS)


# --------------------------------------------------------------------------------------------------------
# The Korean interface and `thesis export` on the tiny book


class _NumberedTables(HTMLParser):
    """The body cells (<td>, not the <th> labels) of each numbered table of a page, by its figure's id."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._depth = 0  # <figure> nesting inside a numbered table
        self._in_body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "figure" and "table" in (attrs.get("class") or "").split() and self._table is None:
            self._table, self._depth = attrs.get("id", ""), 1
            self.tables[self._table] = []
        elif tag == "figure" and self._table is not None:
            self._depth += 1
        elif self._table is not None and tag == "tbody":
            self._in_body = True
        elif self._in_body and tag == "tr":
            self.tables[self._table].append([])
        elif self._in_body and tag == "td":
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "figure" and self._table is not None:
            self._depth -= 1
            if self._depth == 0:
                self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def same_number(shown: str, exported: str) -> bool:
    """A page cell and the CSV value behind it: equal text, or the CSV number rounded as the page shows it."""
    missing = {"", "–", "nan", "NaN", "None"}
    if shown in missing and exported in missing:
        return True
    try:
        value, full = float(shown), float(exported)
    except ValueError:
        return shown == exported
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    return abs(value - full) <= 0.5 * 10 ** -decimals + 1e-9


def test_pages_are_korean_with_figures_and_tables_numbered_per_chapter(book):
    html = book.html_index.parent
    for chapter in chapters_from_toc(book_root(book)):
        page = (html / "book" / "_executed" / f"{chapter.name}.html").read_text(encoding="utf-8")
        assert '<html lang="ko"' in page, chapter.name
        assert re.search(r"[가-힣]{2,}", page.split("<main", 1)[-1]), f"{chapter.name}: no Korean lead"
        assert "tag_hide-input" in page, f"{chapter.name}: code inputs are not folded"
    numbers = json.loads((html / "numbers.json").read_text(encoding="utf-8"))["items"]
    by_chapter: dict[tuple[str, str], list[str]] = {}
    for item in numbers:
        by_chapter.setdefault((item["number"].split(".")[0], item["kind"]), []).append(item["number"])
    for (chapter, kind), shown in by_chapter.items():  # 1, 2, 3, ... within each chapter and kind
        assert shown == [f"{chapter}.{n}" for n in range(1, len(shown) + 1)], (chapter, kind, shown)
    assert {"3", "4", "A"} <= {chapter for chapter, _ in by_chapter}
    assert ("4", "table") in by_chapter and ("4", "figure") in by_chapter
    experiments = (html / "book" / "_executed" / "04_experiments.html").read_text(encoding="utf-8")
    assert "그림 4.1" in experiments and "표 4.1" in experiments
    index = (html / "searchindex.js").read_text(encoding="utf-8")
    assert '"fusion"' in index and '"attent"' in index  # English words stay searchable (stemmed)


def test_export_holds_every_number_and_figure_the_pages_show(book, tmp_path):
    """`thesis export`: every numbered table's CSV has the values its page shows (rounded as shown) and
    every numbered figure its PDF, SVG and PNG; the LaTeX carries the caption the page prints."""
    import csv

    root = book_root(book)
    out = tmp_path / "export"
    assert main(["export", str(out), "--root", str(root)]) == 0
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    numbers = json.loads((book.html_index.parent / "numbers.json").read_text(encoding="utf-8"))["items"]
    assert [(i["kind"], i["number"]) for i in manifest["items"]] == [(i["kind"], i["number"]) for i in numbers]
    pages: dict[str, dict[str, list[list[str]]]] = {}
    compared = 0
    for item, numbered in zip(manifest["items"], numbers, strict=True):
        files = {Path(name).suffix: out / name for name in item["files"]}
        latex = files[".tex"].read_text(encoding="utf-8")
        assert "\\caption{" in latex and f"\\label{{{item['label']}}}" in latex
        if item["kind"] == "figure":
            assert files[".pdf"].read_bytes().startswith(b"%PDF") and files[".svg"].stat().st_size > 0
            assert_not_blank(files[".png"])
            continue
        page = Path(numbered["page"]).name
        if page not in pages:
            reader = _NumberedTables()
            reader.feed((book.html_index.parent / f"{numbered['page']}.html").read_text(encoding="utf-8"))
            pages[page] = reader.tables
        shown = pages[page][numbered["label"]]  # ids keep the label's form here (tbl-…)
        with open(files[".csv"], newline="", encoding="utf-8") as handle:
            exported = list(csv.reader(handle))[-len(shown):] if shown else []
        assert len(exported) == len(shown), f"{item['number']}: {len(exported)} CSV rows, {len(shown)} on the page"
        for shown_row, exported_row in zip(shown, exported, strict=True):
            values = exported_row[-len(shown_row):]  # the index columns come first in the CSV
            for cell, value in zip(shown_row, (value.strip() for value in values), strict=True):
                assert same_number(cell, value), f"table {item['number']} ({item['label']}): page {cell!r}, CSV {value!r}"
                compared += 1
    assert compared > 100, f"only {compared} cells compared"
    assert manifest["chapters"]["04_experiments"]["run_records"], "the run records the chapter read are not listed"
