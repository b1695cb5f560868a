"""`thesis book pdf` (thesis_lib.book.pdf) without a browser: its errors, the page it prints, the PDF it finishes.

The PDF of a real book, printed by Chromium and read back with pypdf, is checked in
tests/browser/test_book_in_chromium.py (slow).
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from PIL import Image

from thesis_lib.book import pdf
from thesis_lib.book.chapters import EXECUTED_DIR
from thesis_lib.book.jupyter_book import BUILD_CONFIG, BUILD_TOC
from thesis_lib.book.pdf import (
    BookNotBuiltError,
    ChromiumNotFoundError,
    PrintFailedError,
    book_pdf,
    paper_page,
    print_page,
)
from thesis_lib.cli import main


def built_book(root: Path) -> Path:
    """A tree with what `thesis book` leaves for the PDF: the per-build config and TOC."""
    (root / EXECUTED_DIR).mkdir(parents=True)
    (root / "_config.yml").write_text('title: "A book · 책"\nauthor: "Someone"\n', encoding="utf-8")
    (root / EXECUTED_DIR / BUILD_CONFIG).write_text('title: "A book · 책"\n', encoding="utf-8")
    (root / EXECUTED_DIR / BUILD_TOC).write_text("format: jb-book\nroot: book/intro\n", encoding="utf-8")
    return root


def fake_browser(folder: Path, script: str) -> str:
    path = folder / "fake-chromium"
    path.write_text(f"#!/bin/sh\n{script}\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_without_a_built_book_it_says_to_run_make_book(tmp_path):
    with pytest.raises(BookNotBuiltError, match=r"_executed/_config.yml is missing; run `make book`"):
        book_pdf(tmp_path)


def test_without_chromium_it_says_how_to_install_it_before_building_anything(tmp_path, monkeypatch):
    root = built_book(tmp_path / "book")
    monkeypatch.setenv("PATH", str(tmp_path))  # no browser on PATH
    monkeypatch.setattr(pdf, "run_jupyter_book", lambda *args, **kwargs: pytest.fail("built before the check"))
    with pytest.raises(ChromiumNotFoundError, match=r"none of chromium, .* is on PATH.*`make browser`"):
        book_pdf(root)
    with pytest.raises(ChromiumNotFoundError, match=r"no-such-chromium is not an executable"):
        book_pdf(root, browser=str(tmp_path / "no-such-chromium"))


@pytest.mark.parametrize("problem", ["no book", "no chromium"])
def test_thesis_book_pdf_reports_either_in_one_line_with_exit_status_2(problem, tmp_path, monkeypatch, capsys):
    root = tmp_path if problem == "no book" else built_book(tmp_path / "book")
    monkeypatch.setenv("THESIS_HOME", str(root))
    assert main(["book", "pdf", "--browser", str(tmp_path / "no-such-chromium")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert ("make book" if problem == "no book" else "make browser") in captured.err


def test_a_failing_chromium_is_reported_with_its_status_and_stderr(tmp_path):
    page = tmp_path / "index.html"
    page.write_text("<html><body>book</body></html>", encoding="utf-8")
    crashing = fake_browser(tmp_path, 'echo "[1:2:ERROR:dbus/bus.cc] Failed to connect to the bus" >&2\n'
                                      'echo "Check failed: the page crashed" >&2\nexit 3')
    with pytest.raises(PrintFailedError, match=r"exited with status 3 printing .*: Check failed: the page crashed$"):
        print_page(crashing, page, tmp_path / "book.pdf")
    silent = fake_browser(tmp_path, "exit 0")  # status 0 and no PDF is a failure too
    with pytest.raises(PrintFailedError, match=r"status 0 .*no PDF written"):
        print_page(silent, page, tmp_path / "book.pdf")


def test_the_printed_page_is_the_one_page_book_at_the_folder_root(tmp_path):
    """Sphinx writes the one-page book as book/intro.html with links relative to the folder; its copy at
    index.html resolves them, keeps its own anchors on the page, and carries the script for paper."""
    (tmp_path / "book").mkdir()
    (tmp_path / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=book/intro.html" />')
    (tmp_path / "book" / "intro.html").write_text(
        '<html><body><a href="book/intro.html#id2">[Arevalo]</a><img src="_images/f.png"/></body></html>',
        encoding="utf-8")
    page = paper_page(tmp_path / "index.html", root_document="book/intro")
    html = page.read_text(encoding="utf-8")
    assert page == tmp_path / "index.html"
    assert '<a href="#id2">' in html and 'src="_images/f.png"' in html
    assert 'details:not(.above-input)").forEach((details) => { details.open = true; })' in html  # outputs, not code
    assert "style.zoom" in html and html.rstrip().endswith("</body></html>")


def test_the_finished_pdf_has_the_books_title_and_author_and_counts_its_images(tmp_path):
    """Two pages with a poster each, and bookmarks as Chromium writes them, one named twice."""
    from pypdf import PdfReader, PdfWriter

    drawn = tmp_path / "drawn.pdf"
    poster = Image.new("RGB", (40, 60), (200, 30, 30))
    poster.save(drawn, save_all=True, append_images=[Image.new("RGB", (40, 60), (30, 30, 200))])
    writer = PdfWriter(clone_from=drawn)
    chapter = writer.add_outline_item(title="3.1 데이터 · Data", page_number=0)
    writer.add_outline_item(title="학습 곡선 · Training curves학습 곡선 · Training curves", page_number=1,
                           parent=chapter)
    printed = tmp_path / "printed.pdf"
    writer.write(printed)
    output = tmp_path / "out" / "book.pdf"
    output.parent.mkdir()
    pages, images = pdf._finish(printed, output, ("A book · 책", "Someone"))
    reader = PdfReader(output)
    assert (pages, images) == (2, 2) == (len(reader.pages), pdf.image_count(reader.pages))
    assert (reader.metadata.title, reader.metadata.author) == ("A book · 책", "Someone")
    assert reader.outline[0].title == "3.1 데이터 · Data"
    assert reader.outline[1][0].title == "학습 곡선 · Training curves"
    assert not list(output.parent.glob(".*partial"))
