"""`thesis book pdf` (`make pdf`): the built book as one PDF, printed by headless Chromium, offline.

    book_pdf(Path("."))  # -> BookPdf(path=<root>/_build/pdf/book.pdf, pages=56, bytes=7_000_000, images=20)

The route of Jupyter Book's own `pdfhtml` builder, without the browser that builder downloads for itself:
1. the book `thesis book` built last (its per-build book/_executed/_config.yml and _toc.yml, the executed
   chapters) is rendered again as one HTML page (`jupyter-book build --builder singlehtml`, into a temporary
   folder; nothing is executed, so this takes seconds);
2. Sphinx writes that page under the root document's name (book/intro.html) with links relative to the
   output folder, so it is copied to the folder's index.html, where its stylesheets and images resolve; there
   a small script opens collapsed outputs (paper cannot be clicked; code folded under its output stays
   folded, and print.css leaves out the fold's button) and scales a table wider than the text down to fit it;
3. Chromium prints it (`--print-to-pdf`) with the network blocked; book/_static/print.css lays it out for
   paper (A4, page numbers, no sidebars, chapters on new pages, figures and tables kept whole);
4. pypdf sets the PDF's title and author from _config.yml, mends bookmarks Chromium named twice, and counts
   the pages and images.

Chromium is Debian's `chromium` (`make browser` installs it; fonts-nanum gives the Korean text its glyphs).
Progress lines go to this module's logger, or to the `log` function given.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from thesis_lib.book.chapters import EXECUTED_DIR, read_toc, title_and_author
from thesis_lib.book.jupyter_book import BUILD_CONFIG, BUILD_TOC, run_jupyter_book
from thesis_lib.errors import ThesisError

PDF_PATH = Path("_build") / "pdf" / "book.pdf"  # relative to the book's root; what `make pdf` writes
SINGLEHTML_LOG = "singlehtml-build.log"  # Jupyter Book's output of step 1, next to the PDF
BROWSERS = ("chromium", "chromium-browser", "google-chrome")  # looked up on PATH, in this order
# Headless, and never on the network: every host name resolves to nothing (the book needs none: MathJax is
# served from its own _static folder, sphinx-mathjax-offline).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND"]
PRINT_FLAGS = [
    "--no-pdf-header-footer",  # no URL and date in the page margins (print.css puts the page numbers there)
    "--generate-pdf-document-outline",  # the headings become the PDF's bookmarks
    "--run-all-compositor-stages-before-draw",  # print a fully drawn page ...
    "--virtual-time-budget=20000",  # ... after its images and scripts are done (virtual ms: no real wait)
    "--window-size=680,2000",  # the script of step 2 measures tables at about the text width of an A4 page
]
PRINT_TIMEOUT_S = 300
# Step 2's script. The layout it measures is the screen's at the window width above, with the print type size
# set on the table first, so its scale holds in print too (print.css gives every table that size).
PAPER_SCRIPT = """<script>
window.addEventListener("load", () => {
  document.querySelectorAll("details:not(.above-input)").forEach((details) => { details.open = true; });
  document.querySelectorAll("article table").forEach((table) => {
    table.style.fontSize = "7.5pt";
    table.style.display = "table";
    // The text's width less the table's indent on both sides (a box or dropdown around it): its parents
    // may have grown to the table's width, the text has not.
    const text = table.closest("article") || document.body;
    const indent = table.getBoundingClientRect().left - text.getBoundingClientRect().left;
    const room = text.clientWidth - 2 * Math.max(indent, 0);
    const width = table.getBoundingClientRect().width;
    if (width > room) {
      table.style.zoom = (0.9 * room / width).toFixed(3);  // 10% to spare: print sets text a little wider
    }
  });
});
</script>"""
_NOISE = re.compile(r"dbus|Fontconfig|unexpected operator")  # stderr lines Chromium prints on a normal run

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BookPdf:
    """The PDF that `book_pdf` wrote."""

    path: Path
    pages: int
    bytes: int
    images: int  # image XObjects embedded (the figures; an image drawn twice counts once)


class BookNotBuiltError(ThesisError):
    """No book to print: `thesis book` (`make book`) has not built one in this tree."""


class ChromiumNotFoundError(ThesisError):
    """No headless Chromium to print with."""


class PrintFailedError(ThesisError, RuntimeError):
    """Chromium did not print the book (its exit status and the tail of its stderr say why)."""


def find_chromium() -> str | None:
    """The first of `BROWSERS` on PATH, or None."""
    return next(filter(None, map(shutil.which, BROWSERS)), None)


def book_pdf(root: Path, output: Path | None = None, browser: str | None = None,
             log: Callable[[str], None] = _log.info) -> BookPdf:
    """Print the book built in `root` to `output` (None: <root>/_build/pdf/book.pdf); see the module
    docstring. Raises BookNotBuiltError, ChromiumNotFoundError, BookBuildError (the one-page build failed;
    its log is next to the PDF) or PrintFailedError."""
    root = Path(root).resolve()
    output = Path(output).resolve() if output is not None else root / PDF_PATH
    config, toc = root / EXECUTED_DIR / BUILD_CONFIG, root / EXECUTED_DIR / BUILD_TOC
    missing = [path for path in (config, toc) if not path.is_file()]
    if missing:
        raise BookNotBuiltError(f"no built book in {root}: {missing[0]} is missing; run `make book` "
                                "(or `thesis book`) first")
    browser = browser or find_chromium()
    if browser is None or shutil.which(browser) is None:
        named = f"{browser} is not an executable" if browser else f"none of {', '.join(BROWSERS)} is on PATH"
        raise ChromiumNotFoundError(f"no headless Chromium to print the book with ({named}): install it with "
                                    "`make browser` (Debian: apt-get install chromium fonts-nanum)")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="thesis-pdf-") as scratch:
        started = time.perf_counter()
        index = run_jupyter_book(root, Path(scratch), config, toc, log, builder="singlehtml",
                                 log_path=output.parent / SINGLEHTML_LOG)
        page = paper_page(index, root_document=read_toc(toc)["root"])
        log(f"one-page book built in {time.perf_counter() - started:.1f} s; printing it with {browser} ...")
        started = time.perf_counter()
        printed = Path(scratch) / "printed.pdf"
        print_page(browser, page, printed)
        log(f"printed in {time.perf_counter() - started:.1f} s")
        pages, images = _finish(printed, output, title_and_author(root))
    return BookPdf(output, pages, output.stat().st_size, images)


def paper_page(index: Path, root_document: str) -> Path:
    """Step 2: the one-page book (Sphinx writes it as <root_document>.html) copied over the output folder's
    index.html (a redirect to it), where its links resolve, with its own anchors kept on the page and
    `PAPER_SCRIPT` added."""
    single = index.parent / f"{root_document}.html"
    html = single.read_text(encoding="utf-8")
    html = html.replace(f'href="{root_document}.html#', 'href="#')  # citations and cross-references
    html = html.replace("</body>", f"{PAPER_SCRIPT}\n</body>", 1)
    index.write_text(html, encoding="utf-8")
    return index


def print_page(browser: str, page: Path, pdf: Path, timeout_s: float = PRINT_TIMEOUT_S) -> None:
    """Step 3: `chromium --print-to-pdf` of `page`, offline, with a profile folder of its own."""
    with tempfile.TemporaryDirectory(prefix="thesis-chromium-") as profile:
        command = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *PRINT_FLAGS,
                   f"--print-to-pdf={pdf}", page.as_uri()]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise PrintFailedError(f"{browser} did not finish printing {page} within {timeout_s:.0f} s") from None
    if result.returncode != 0 or not pdf.is_file() or pdf.stat().st_size == 0:
        raise PrintFailedError(f"{browser} exited with status {result.returncode} printing {page} to {pdf}: "
                               f"{_stderr_tail(result.stderr) or 'no PDF written and nothing on stderr'}")


def _stderr_tail(stderr: str, lines: int = 3) -> str:
    kept = [line.strip() for line in stderr.splitlines() if line.strip() and not _NOISE.search(line)]
    return " | ".join(kept[-lines:])


def _finish(printed: Path, output: Path, title_and_author: tuple[str, str]) -> tuple[int, int]:
    """Step 4: `printed` with the book's title and author as its metadata, written to `output` (whole or not
    at all); its page and image counts."""
    from pypdf import PdfWriter

    title, author = title_and_author
    # An incremental update: Chromium's PDF stays as it is (outline, tagged structure, links), the new
    # document information is appended after it.
    writer = PdfWriter(printed, incremental=True)
    writer.add_metadata({"/Title": title, "/Author": author})
    outline = writer.root_object.get("/Outlines")
    if outline is not None:
        _undouble_bookmarks(outline.get_object().get("/First"))
    partial = output.with_name(f".{output.name}.partial")
    with partial.open("wb") as stream:
        writer.write(stream)
    os.replace(partial, output)
    return len(writer.pages), image_count(writer.pages)


def _undouble_bookmarks(item) -> None:
    """Chromium 156 names a bookmark twice ("The gridThe grid") when its heading was carried to the top of
    the next page; such a title is halved, here and in the bookmarks below it."""
    from pypdf.generic import NameObject, TextStringObject

    while item is not None:
        node = item.get_object()
        title = str(node.get("/Title", ""))
        half = len(title) // 2
        if half and title[:half] == title[half:]:
            node[NameObject("/Title")] = TextStringObject(title[:half])
        _undouble_bookmarks(node.get("/First"))
        item = node.get("/Next")


def image_count(pages: Sequence) -> int:
    """Image XObjects drawn on `pages` (pypdf pages), each counted once however often it is drawn; images
    inside form XObjects included."""
    from pypdf.generic import IndirectObject

    images: set[tuple[int, int]] = set()
    forms: set[tuple[int, int]] = set()

    def visit(resources) -> None:
        xobjects = resources.get_object().get("/XObject") if resources is not None else None
        for reference in (xobjects.get_object() if xobjects is not None else {}).values():
            indirect = isinstance(reference, IndirectObject)
            key = (reference.idnum, reference.generation) if indirect else (id(reference), -1)
            xobject = reference.get_object()
            if xobject.get("/Subtype") == "/Image":
                images.add(key)
            elif xobject.get("/Subtype") == "/Form" and key not in forms:
                forms.add(key)
                visit(xobject.get("/Resources"))

    for page in pages:
        visit(page.get("/Resources"))
    return len(images)
