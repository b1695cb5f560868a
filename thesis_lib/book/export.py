"""`thesis export OUT`: the built book's figures and tables as files a LaTeX thesis can use.

    export = export_book(Path("."), Path("_build/export"))

reads three things a `make book` leaves behind and writes one folder:
- the numbers the build gave (`_build/html/numbers.json`, `thesis_lib.book.numbering`): a figure or table
  is named by its thesis chapter and number, e.g. chapter4/figure_4-3_reliability.pdf, table_4-1_comparison.tex;
- the files each chapter wrote while it ran (`book/_executed/artefacts/<chapter>/`, `thesis_lib.book.artefacts`):
  a figure as PDF, SVG and a 300-dpi PNG, a table as CSV (every digit) and a booktabs tabular (the cells as
  the page shows them);
- what produced the build (`book/_executed/provenance.json`): profile, data and its fingerprint, weights,
  commit, and the run records the chapters read.

For every figure it writes <name>.pdf/.svg/.png and <name>.tex (a `figure` environment with the caption and
`\\label{fig:...}`, `\\includegraphics{chapterN/<name>}`); for every table <name>.csv and <name>.tex (a
`table` environment with caption, `\\label{tab:...}` and the tabular). `manifest.json` lists each item with
its number, caption, files and what produced it; README.md says how to `\\input` them.

Numbers and captions are the book's, so the export always goes with one build: build, then export.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from thesis_lib.book.artefacts import FIGURE_FORMATS, TABLE_FORMATS
from thesis_lib.book.chapters import EXECUTED_DIR, Chapter, chapters_from_toc, thesis_chapter, title_and_author
from thesis_lib.book.numbering import Numbered, read_numbers
from thesis_lib.book.reuse import record_hashes
from thesis_lib.errors import ThesisError
from thesis_lib.tables import latex_text

MANIFEST = "manifest.json"
README = "README.md"
HTML_DIR = Path("_build") / "html"  # where `make book` puts the book, relative to its root
PROVENANCE = EXECUTED_DIR / "provenance.json"
LABEL_PREFIXES = {"figure": "fig-", "table": "tbl-"}  # a directive's :name: is <prefix><key, _ as ->
LATEX_LABELS = {"figure": "fig", "table": "tab"}
FORMATS = {"figure": FIGURE_FORMATS, "table": TABLE_FORMATS}


class ExportError(ThesisError, ValueError):
    """Nothing to export (no built book), an item without its files, or an output folder not ours."""


@dataclass(frozen=True)
class ExportedItem:
    kind: str  # "figure" | "table"
    number: str  # the book's number, e.g. "4.3"
    label: str  # LaTeX label, e.g. "fig:reliability"
    caption: str
    chapter: str  # the notebook that made it, e.g. "04_experiments"
    files: tuple[str, ...]  # relative to the export folder


@dataclass(frozen=True)
class Export:
    folder: Path
    items: tuple[ExportedItem, ...]

    @property
    def figures(self) -> int:
        return sum(item.kind == "figure" for item in self.items)

    @property
    def tables(self) -> int:
        return sum(item.kind == "table" for item in self.items)


def export_book(root: Path, out: Path, html_dir: Path | None = None) -> Export:
    """Export every numbered figure and table of the book built at `root` into `out` (replaced when it is
    an earlier export; refused when it holds anything else). Raises ExportError naming what is missing."""
    root = Path(root).resolve()
    html_dir = Path(html_dir) if html_dir is not None else root / HTML_DIR
    numbers = read_numbers(html_dir)  # ManifestError: build the book first
    provenance = _read_json(root / PROVENANCE, "the build's provenance")
    chapters = {chapter.name: chapter for chapter in chapters_from_toc(root)}
    out = _fresh_folder(Path(out))

    items = [_export_item(item, chapters, out) for item in numbers.items if item.kind in LABEL_PREFIXES]
    runs_dir = provenance.get("runs_dir")
    records = [{"run": run.label, "record": str(run.record), "sha256": digest}  # hashed once for every chapter
               for run, digest in (record_hashes(Path(runs_dir)) if runs_dir else [])]
    title, author = title_and_author(root)
    manifest = {
        "book": {"title": title, "author": author},
        "numfig_format": numbers.numfig_format,
        "provenance": provenance,
        "chapters": {name: _chapter_inputs(chapter, root, provenance, records)
                     for name, chapter in chapters.items() if any(item.chapter == name for item in items)},
        "items": [asdict(item) for item in items],
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / README).write_text(_readme(items, provenance), encoding="utf-8")
    return Export(out, tuple(items))


def artefact_key(item: Numbered, folder: Path) -> str:
    """The glue key behind a numbered item: its label without the kind's prefix, matched to the chapter's
    artefact files (`fig-genre-shares` -> genre_shares)."""
    prefix = LABEL_PREFIXES[item.kind]
    if not item.label.startswith(prefix):
        raise ExportError(f"{item.page}: {item.kind} {item.number} is labelled {item.label!r}; a glued "
                          f"{item.kind} is labelled {prefix}<glue key>, so its files can be found")
    wanted = item.label.removeprefix(prefix)
    keys = {path.stem for path in folder.glob("*.*")} if folder.is_dir() else set()
    for key in sorted(keys):
        if key.replace("_", "-") == wanted.replace("_", "-"):
            return key
    raise ExportError(f"{folder}: no files for {item.kind} {item.number} ({item.label}): the chapter's executed "
                      f"copy predates them; run it again (`make clean-book && make book`)")


def _export_item(item: Numbered, chapters: dict[str, Chapter], out: Path) -> ExportedItem:
    page = Path(item.page).name
    if page not in chapters:
        raise ExportError(f"{item.page}: {item.kind} {item.number} is on a page that is no chapter notebook")
    source = chapters[page].artefacts
    key = artefact_key(item, source)
    chapter = thesis_chapter(page) or page
    name = f"{item.kind}_{item.number.replace('.', '-')}_{key}"
    folder = out / f"chapter{chapter}"
    folder.mkdir(exist_ok=True)
    wanted = [source / f"{key}.{suffix}" for suffix in FORMATS[item.kind]]
    missing = [path for path in wanted if not path.is_file()]
    if missing:
        raise ExportError(f"{missing[0]}: missing ({item.kind} {item.number}); run the chapter again "
                          "(`make clean-book && make book`)")
    files = []
    for suffix in FORMATS[item.kind]:
        if suffix != "tex":  # a table's tabular goes into its table environment below
            shutil.copyfile(source / f"{key}.{suffix}", folder / f"{name}.{suffix}")
            files.append(f"{folder.name}/{name}.{suffix}")
    label = f"{LATEX_LABELS[item.kind]}:{key}"
    environment = (_figure_environment(f"{folder.name}/{name}", item.caption, label) if item.kind == "figure"
                   else _table_environment((source / f"{key}.tex").read_text(encoding="utf-8"), item.caption, label))
    (folder / f"{name}.tex").write_text(f"% {_kind_word(item.kind)} {item.number} of the book ({page}); written by "
                                        f"`thesis export`, do not edit\n{environment}", encoding="utf-8")
    files.append(f"{folder.name}/{name}.tex")
    return ExportedItem(item.kind, item.number, label, item.caption, page, tuple(files))


def _figure_environment(graphic: str, caption: str, label: str) -> str:
    return ("\\begin{figure}[htbp]\n  \\centering\n"
            f"  \\includegraphics[width=\\linewidth]{{{graphic}}}\n"
            f"  \\caption{{{latex_text(caption)}}}\n  \\label{{{label}}}\n\\end{{figure}}\n")


def _table_environment(tabular: str, caption: str, label: str) -> str:
    return ("\\begin{table}[htbp]\n  \\centering\n"
            f"  \\caption{{{latex_text(caption)}}}\n  \\label{{{label}}}\n"
            "  \\resizebox{\\linewidth}{!}{%\n" + tabular.rstrip("\n") + "}\n\\end{table}\n")


def _kind_word(kind: str) -> str:
    return {"figure": "Figure", "table": "Table"}[kind]


def _chapter_inputs(chapter: Chapter, root: Path, provenance: dict[str, Any],
                    records: list[dict[str, str]]) -> dict[str, Any]:
    """What a chapter read: its notebook and executed copy, the data's fingerprint, the run `records` (when
    it reads runs)."""
    data = provenance.get("data") or {}
    return {"notebook": chapter.source.relative_to(root).as_posix(),
            "executed": chapter.executed.relative_to(root).as_posix(),
            "data_fingerprint": data.get("fingerprint") if chapter.reads_data else None,
            "commit": provenance.get("commit"), "run_records": records if chapter.reads_runs else []}


def _fresh_folder(out: Path) -> Path:
    """`out`, empty: created, or emptied when it holds an earlier export (its manifest says so)."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a folder; choose another output folder")
    if out.is_dir() and any(out.iterdir()):
        manifest = out / MANIFEST
        try:
            earlier = json.loads(manifest.read_text(encoding="utf-8")) if manifest.is_file() else None
        except (OSError, ValueError):
            earlier = None
        if not isinstance(earlier, dict) or "items" not in earlier:
            raise ExportError(f"{out}: not empty and not an earlier export (no {MANIFEST}); nothing was "
                              "overwritten: choose a new or empty folder")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{path}: no {what}: build the book first (`make book`)") from None
    except ValueError as error:
        raise ExportError(f"{path}: {what} is not JSON ({error})") from None


def _readme(items: list[ExportedItem], provenance: dict[str, Any]) -> str:
    data = provenance.get("data") or {}
    lines = [
        "# Figures and tables of the thesis companion's book",
        "",
        f"Exported by `thesis export` from the build of commit {provenance.get('commit')} "
        f"({'with uncommitted changes' if provenance.get('dirty') else 'clean'}), profile "
        f"{provenance.get('profile')}, data {data.get('kind', 'none')} (fingerprint {data.get('fingerprint')}), "
        f"built {provenance.get('built_at')}. manifest.json says what produced each file.",
        "",
        "In LaTeX (`\\usepackage{booktabs,graphicx}`), with this folder beside the thesis as `export/`:",
        "",
        "    \\graphicspath{{export/}}",
        "    \\input{export/chapter4/table_4-1_....tex}   % a table: caption, label tab:<key>, booktabs tabular",
        "    \\input{export/chapter4/figure_4-1_....tex}  % a figure: \\includegraphics of the PDF, caption, label",
        "",
        "| number | kind | label | files |",
        "|---|---|---|---|",
    ]
    lines += [f"| {item.number} | {item.kind} | `{item.label}` | {', '.join(item.files)} |" for item in items]
    return "\n".join(lines) + "\n"

