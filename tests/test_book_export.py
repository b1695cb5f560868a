"""Figures and tables numbered per thesis chapter (그림 4.1, 표 4.1) and exported for a LaTeX thesis.

A small book of four chapter notebooks (chapters 3, 4, 4 and appendix A) with glued figures and tables is
built with the project's Sphinx extension (`thesis_lib.book.numbering`), then exported (`thesis export`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from test_book import write_book_tree

from thesis_lib.book.build import BookBuild, build_book
from thesis_lib.book.chapters import EXECUTED_DIR, thesis_chapter
from thesis_lib.book.export import export_book
from thesis_lib.book.numbering import read_manifest
from thesis_lib.cli import main
from thesis_lib.errors import ThesisError

SETUP = ("import matplotlib.pyplot as plt\nimport pandas as pd\n"
         "from thesis_lib.book.glue import glue_figure, glue_table\n")


def figure_cell(key: str) -> str:
    return f"figure, axis = plt.subplots()\naxis.plot([0, n], [0, 1])\nglue_figure({key!r}, figure)"


def figure_directive(key: str, caption: str) -> str:
    return f"```{{glue:figure}} {key}\n:name: fig-{key.replace('_', '-')}\n\n{caption}\n```"


def table_directive(key: str, caption: str) -> str:
    return f"```{{glue:figure}} {key}\n:name: tbl-{key.replace('_', '-')}\n:figclass: table\n\n{caption}\n```"


TABLE_CELL = ("table = pd.DataFrame({'macro-F1 (95% CI)': [0.81234, 0.5], 'runs': [3, 1]},\n"
              "                     index=pd.Index(['fusion_cross', 'text_bert'], name='model'))\n"
              "glue_table('scores', table)")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = write_book_tree(tmp_path_factory.mktemp("numbered"), {
        "03_a": [("md", "# 3.1 A"), ("code", SETUP + figure_cell("line")), ("md", figure_directive("line", "A line."))],
        "04_b": [("md", "# 4.1 B"), ("code", SETUP + figure_cell("first") + "\n" + TABLE_CELL),
                 ("md", figure_directive("first", "First of chapter 4.")),
                 ("md", table_directive("scores", "Scores of 50% & more_of them.")),
                 ("code", figure_cell("second")), ("md", figure_directive("second", "Second."))],
        "04_c": [("md", "# 4.2 C"), ("code", SETUP + figure_cell("third")), ("md", figure_directive("third", "Third."))],
        "A1_d": [("md", "# A.1 D"), ("code", SETUP + figure_cell("speed")), ("md", figure_directive("speed", "Speed."))],
    }, parameters="n: int = 1  # the slope")
    config = root / "_config.yml"
    config.write_text(config.read_text(encoding="utf-8") + (
        "sphinx:\n  extra_extensions: [thesis_lib.book.numbering]\n  config:\n    language: ko\n"
        "    html_search_language: en\n    numfig: true\n"
        "    numfig_format: {figure: '그림 %s', table: '표 %s'}\n"), encoding="utf-8")
    build_book(BookBuild(root=root), log=lambda _: None)
    return root


def page(root: Path, name: str) -> str:
    return (root / "_build" / "html" / "book" / "_executed" / f"{name}.html").read_text(encoding="utf-8")


@pytest.mark.parametrize(("name", "chapter"), [("04_xai", "4"), ("03_data", "3"), ("A1_speed", "A"),
                                               ("book/_executed/04_experiments", "4"), ("intro", None),
                                               ("reproduce", None), ("A_b", None)])
def test_a_page_belongs_to_the_thesis_chapter_its_name_starts_with(name, chapter):
    assert thesis_chapter(name) == chapter


def test_figures_and_tables_are_numbered_per_thesis_chapter_in_korean(built):
    numbered = [(item.kind, item.number, item.label) for item in read_manifest(built / "_build" / "html")]
    assert numbered == [("figure", "3.1", "fig-line"), ("figure", "4.1", "fig-first"), ("table", "4.1", "tbl-scores"),
                        ("figure", "4.2", "fig-second"), ("figure", "4.3", "fig-third"), ("figure", "A.1", "fig-speed")]
    b, c = page(built, "04_b"), page(built, "04_c")
    assert 'lang="ko"' in b
    assert "그림 4.1" in b and "그림 4.2" in b and "표 4.1" in b and "그림 4.3" in c  # 04_c continues chapter 4
    table = b[b.index('<figure class="table align-default" id="tbl-scores">'):]
    assert table.index("표 4.1") < table.index("</figcaption>") < table.index("fusion_cross")  # caption on top
    assert '"data row0 col0" >0.812</td>' in b  # floats as the LaTeX export shows them


def test_code_is_folded_and_english_words_stay_searchable(built):
    assert "tag_hide-input" in page(built, "04_b")
    index = (built / "_build" / "html" / "searchindex.js").read_text(encoding="utf-8")
    assert '"scor"' in index or '"score"' in index  # English stemming although the book's language is ko


def test_export_writes_every_figure_and_table_named_by_its_number(built, tmp_path):
    out = tmp_path / "export"
    assert main(["export", str(out), "--root", str(built)]) == 0
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert [(item["kind"], item["number"]) for item in manifest["items"]] == [
        ("figure", "3.1"), ("figure", "4.1"), ("table", "4.1"), ("figure", "4.2"), ("figure", "4.3"), ("figure", "A.1")]
    for suffix in ("pdf", "svg", "png", "tex"):
        assert (out / "chapter4" / f"figure_4-1_first.{suffix}").stat().st_size > 0
    assert (out / "chapter4" / "figure_4-1_first.pdf").read_bytes().startswith(b"%PDF")
    from PIL import Image

    with Image.open(out / "chapterA" / "figure_A-1_speed.png") as image:
        assert round(image.info["dpi"][0]) == 300
    latex = (out / "chapter4" / "table_4-1_scores.tex").read_text(encoding="utf-8")
    assert "\\caption{Scores of 50\\% \\& more\\_of them.}" in latex and "\\label{tab:scores}" in latex
    assert "\\toprule" in latex and "fusion\\_cross & 0.812 & 3" in latex
    figure = (out / "chapter4" / "figure_4-2_second.tex").read_text(encoding="utf-8")
    assert "\\includegraphics[width=\\linewidth]{chapter4/figure_4-2_second}" in figure and "\\label{fig:second}" in figure
    csv = pd.read_csv(out / "chapter4" / "table_4-1_scores.csv", index_col=0)
    assert csv.loc["fusion_cross", "macro-F1 (95% CI)"] == pytest.approx(0.81234)  # every digit
    assert manifest["provenance"]["commit"] == json.loads(
        (built / EXECUTED_DIR / "provenance.json").read_text(encoding="utf-8"))["commit"]
    assert manifest["chapters"]["04_b"]["notebook"] == "notebooks/04_b.ipynb"


def test_export_never_overwrites_a_folder_that_is_not_an_earlier_export(built, tmp_path, capsys):
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("my words", encoding="utf-8")
    assert main(["export", str(mine), "--root", str(built)]) == 2
    assert "not an earlier export" in capsys.readouterr().err
    assert (mine / "chapter1.tex").read_text(encoding="utf-8") == "my words"
    out = tmp_path / "again"
    export_book(built, out)
    export_book(built, out)  # an earlier export is replaced
    assert len(json.loads((out / "manifest.json").read_text(encoding="utf-8"))["items"]) == 6


def test_export_before_any_build_says_to_build_first(tmp_path):
    with pytest.raises(ThesisError, match="build the book first"):
        export_book(tmp_path, tmp_path / "out")


def test_a_table_a_build_cannot_have_is_a_one_cell_note_and_never_silently_missing(tmp_path, monkeypatch):
    from thesis_lib.book.artefacts import ARTEFACTS_ENV
    from thesis_lib.book.glue import glue_table

    monkeypatch.setenv(ARTEFACTS_ENV, str(tmp_path))
    with pytest.raises(ValueError, match="absent="):
        glue_table("probes", None)
    glue_table("probes", None, absent="no probe: no ground truth")
    assert "no probe: no ground truth" in (tmp_path / "probes.csv").read_text(encoding="utf-8")
