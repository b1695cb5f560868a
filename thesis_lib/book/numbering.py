"""Sphinx extension of the book: figures and tables numbered per thesis chapter (그림 4.1, 표 4.1) and a
manifest of the numbers the build gave them, for `thesis export`.

Registered in `_config.yml` (`sphinx: extra_extensions`). Three steps, each at its place in a Sphinx build:

- Tables (read): myst-nb places a glued value with `{glue:figure}` only, so a glued table is placed as
  ```{glue:figure} KEY
  :name: tbl-KEY
  :figclass: table
  ```
  and this extension turns such a figure into a `numbered_table`: Sphinx counts it as a table (numfig's
  "table" type, `{numref}` works), and its caption moves above it, where a table's caption goes (a
  `table_caption`, whose HTML closes its own <figcaption>: the writer would close a figure's caption only
  at the figure's end). On paper the caption then stays with its table (book/_static/print.css).
- Numbers (after reading): Sphinx numbers figures and tables through the whole book. Each number is then
  replaced by (thesis chapter, n), the chapter taken from the page's name (`chapters.thesis_chapter`:
  "04_experiments" and "04_xai" are both chapter 4, so 04_xai's first figure continues 04_experiments'
  count). Pages without a chapter prefix keep Sphinx's number.
- Manifest (end of the build): `numbers.json` in the output folder lists every numbered figure and table in
  reading order with its page, kind, label, number and caption text as the page shows them
  (`read_manifest`). Numbers exist only after a build, so this file is where `thesis export` reads them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from docutils import nodes

from thesis_lib.book.chapters import thesis_chapter
from thesis_lib.errors import ThesisError

TABLE_CLASS = "table"  # the `:figclass:` that marks a glued table
MANIFEST_FILE = "numbers.json"  # in the HTML output folder
KINDS = ("figure", "table")


class numbered_table(nodes.figure):  # noqa: N801 (docutils names node classes in lower case)
    """A glued table with its caption, numbered as a table."""


class table_caption(nodes.caption):  # noqa: N801
    """A table's caption, first in its `numbered_table`."""


@dataclass(frozen=True)
class Numbered:
    """One numbered figure or table of the built book."""

    page: str  # the Sphinx docname, e.g. "book/_executed/04_experiments"
    kind: str  # "figure" | "table"
    label: str  # the directive's :name:, e.g. "tbl-comparison"
    number: str  # as the page prints it after "그림 "/"표 ", e.g. "4.1"
    caption: str  # the caption's text, glued values filled in


class ManifestError(ThesisError, FileNotFoundError):
    """No built book with a numbers manifest where one was expected."""


@dataclass(frozen=True)
class Numbers:
    """numbers.json: the caption prefixes ("그림 %s") and every numbered figure and table."""

    numfig_format: dict[str, str]
    items: list[Numbered]


def read_numbers(html_dir: Path) -> Numbers:
    """numbers.json of the book built into `html_dir`."""
    path = Path(html_dir) / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(f"{path}: no numbers manifest: build the book first (`make book`)")
    content = json.loads(path.read_text(encoding="utf-8"))
    return Numbers(content["numfig_format"], [Numbered(**item) for item in content["items"]])


def read_manifest(html_dir: Path) -> list[Numbered]:
    """The numbered figures and tables of the book built into `html_dir`, in reading order."""
    return read_numbers(html_dir).items


def tables_from_glued_figures(app: Any, doctree: nodes.document) -> None:
    """`doctree-read`: every figure with the table class becomes a `numbered_table`, caption first."""
    for figure in list(doctree.findall(nodes.figure)):
        if TABLE_CLASS not in figure["classes"] or isinstance(figure, numbered_table):
            continue
        captions = [table_caption(caption.rawsource, *caption.children, **caption.attributes)
                    for caption in figure.children if isinstance(caption, nodes.caption)]
        rest = [child for child in figure.children if not isinstance(child, nodes.caption)]
        figure.replace_self(numbered_table(figure.rawsource, *captions, *rest, **figure.attributes))


def number_by_chapter(app: Any, env: Any) -> list[str]:
    """`env-get-updated`, after Sphinx numbered everything: (chapter, n) for the figures and tables of pages
    with a thesis chapter, counted in reading order. Returns the pages whose numbers changed."""
    counters: dict[tuple[str, str], int] = {}
    changed = []
    for page, by_kind in env.toc_fignumbers.items():  # pages in reading order (Sphinx walks the TOC)
        chapter = thesis_chapter(page)
        if chapter is None:
            continue
        for kind, numbers in by_kind.items():
            for figure_id in sorted(numbers, key=lambda i: numbers[i]):  # the order on the page
                counters[chapter, kind] = counters.get((chapter, kind), 0) + 1
                number = (chapter, counters[chapter, kind])
                if numbers[figure_id] != number:
                    numbers[figure_id] = number
                    changed.append(page)
    return sorted(set(changed))


def collect_numbered(app: Any, doctree: nodes.document, page: str) -> None:
    """`doctree-resolved`: note each numbered figure and table of the page with its caption."""
    domain = app.env.get_domain("std")
    numbers = app.env.toc_fignumbers.get(page, {})
    items = []
    for node in doctree.findall(nodes.figure):
        kind = domain.get_enumerable_node_type(node)
        if kind not in KINDS or not node["ids"] or node["ids"][0] not in numbers.get(kind, {}):
            continue
        caption = next((child for child in node.children if isinstance(child, nodes.caption)), None)
        label = node["names"][0] if node["names"] else node["ids"][0]
        number = ".".join(map(str, numbers[kind][node["ids"][0]]))
        items.append(Numbered(page, kind, label, number, caption.astext() if caption else ""))
    app.thesis_numbered[page] = items


def write_manifest(app: Any, exception: Exception | None) -> None:
    """`build-finished`: numbers.json in the output folder (the page-per-chapter HTML build only: a
    single-page build numbers the same figures under one page)."""
    if exception is not None or app.builder.name != "html":
        return
    found = app.thesis_numbered
    order = list(app.env.toc_fignumbers)  # reading order
    pages = sorted(found, key=lambda page: order.index(page) if page in order else len(order))
    items = [asdict(item) for page in pages for item in found[page]]
    formats = {kind: app.config.numfig_format.get(kind, "%s") for kind in KINDS}
    content = {"numfig_format": formats, "items": items}
    path = Path(app.outdir) / MANIFEST_FILE
    path.write_text(json.dumps(content, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _visit_table(translator: Any, node: numbered_table) -> None:
    translator.visit_figure(node)


def _depart_table(translator: Any, node: numbered_table) -> None:
    translator.depart_figure(node)


def _visit_caption(translator: Any, node: table_caption) -> None:
    translator.visit_caption(node)  # <figcaption><p> with the number (表 N.k) and the caption's text


def _depart_caption(translator: Any, node: table_caption) -> None:
    translator.depart_caption(node)
    translator.body.append("</figcaption>\n")  # closed here: the table follows inside the figure


def setup(app: Any) -> dict[str, Any]:
    app.thesis_numbered = {}  # page -> [Numbered], filled as pages are written
    app.add_enumerable_node(numbered_table, "table", html=(_visit_table, _depart_table))
    app.add_node(table_caption, html=(_visit_caption, _depart_caption))
    app.connect("doctree-read", tables_from_glued_figures)
    app.connect("env-get-updated", number_by_chapter, priority=900)  # after Sphinx's own numbering (500)
    app.connect("doctree-resolved", collect_numbered)
    app.connect("build-finished", write_manifest)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": False}
