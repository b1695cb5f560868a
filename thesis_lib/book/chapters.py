"""Which notebooks make up the book, read from the table of contents.

`_toc.yml` is the one list of chapters: an entry under `book/_executed/` is the executed copy of the
notebook with the same name in `notebooks/`. Adding a chapter therefore means adding its notebook and one
TOC line; the build runs the chapters in TOC order. A build of some chapters only (`--only`) gets a copy
of the TOC without the others, so the book never links to a page this build did not produce.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thesis_lib.errors import ThesisError

EXECUTED_DIR = Path("book") / "_executed"  # relative to the book's root; git-ignored build output
ARTEFACTS_DIR = EXECUTED_DIR / "artefacts"  # a chapter's figures and tables as files (`book.artefacts`)
NOTEBOOKS_DIR = Path("notebooks")  # the committed notebooks (without outputs)


class TocError(ThesisError, ValueError):
    """The table of contents is unreadable, or names a chapter whose notebook does not exist."""


@dataclass(frozen=True)
class Chapter:
    """One notebook chapter: the committed source and where its executed copy goes."""

    name: str  # the notebook's stem, e.g. "03_data"
    source: Path  # <root>/notebooks/<name>.ipynb
    executed: Path  # <root>/book/_executed/<name>.ipynb (what the TOC points at)

    @property
    def artefacts(self) -> Path:
        """<root>/book/_executed/artefacts/<name>/: its glued figures and tables as files, for `thesis export`."""
        return self.executed.parent / ARTEFACTS_DIR.name / self.name

    @property
    def reads_runs(self) -> bool:
        """The chapter shows finished runs of the profile's grid (its notebook's metadata says
        `"thesis": {"reads_runs": true}`): a render-only build checks they exist before it starts."""
        return bool(self._metadata().get("reads_runs", False))

    @property
    def reads_data(self) -> bool:
        """The chapter reads the profile's release (all but those whose metadata says `"reads_data": false`,
        the speed appendix): a build of such chapters needs the data, and a change of it reruns them."""
        return bool(self._metadata().get("reads_data", True))

    def _metadata(self) -> dict[str, Any]:
        return json.loads(self.source.read_text(encoding="utf-8")).get("metadata", {}).get("thesis", {})


def thesis_chapter(page: str) -> str | None:
    """The thesis chapter a page belongs to, from the prefix of its name: "04_xai" -> "4", "03_data" -> "3",
    "A1_speed" -> "A" (appendix A); None for a page without one ("intro", "reproduce"). Figures and tables
    are numbered per thesis chapter (그림 4.1), so chapter 4's two pages share one count."""
    prefix = Path(page).name.partition("_")[0] if "_" in Path(page).name else ""
    if prefix.isdigit():
        return str(int(prefix))
    if len(prefix) >= 2 and prefix[0].isalpha() and prefix[1:].isdigit():
        return prefix[0].upper()
    return None


def title_and_author(root: Path) -> tuple[str, str]:
    """The book's title and author, as `_config.yml` at `root` sets them once (the PDF's metadata, the
    export's manifest)."""
    import yaml

    config = yaml.safe_load((Path(root) / "_config.yml").read_text(encoding="utf-8")) or {}
    return str(config.get("title", "")), str(config.get("author", ""))


def read_toc(path: Path) -> dict[str, Any]:
    import yaml

    try:
        toc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise TocError(f"{path}: not a readable table of contents: {error}") from None
    if not isinstance(toc, dict) or "root" not in toc:
        raise TocError(f"{path}: not a Jupyter Book table of contents (no 'root' entry)")
    return toc


def toc_files(toc: Any) -> Iterator[str]:
    """Every `file:` entry of a TOC (any nesting of parts, chapters and sections), in reading order."""
    if isinstance(toc, dict):
        if isinstance(toc.get("file"), str):
            yield toc["file"]
        for value in toc.values():
            yield from toc_files(value)
    elif isinstance(toc, list):
        for item in toc:
            yield from toc_files(item)


def chapters_from_toc(root: Path, toc_path: Path | None = None) -> list[Chapter]:
    """The notebook chapters of the book at `root`, in TOC order; their source notebooks must exist."""
    root = Path(root)
    toc_path = toc_path or root / "_toc.yml"
    prefix = EXECUTED_DIR.as_posix() + "/"
    chapters = []
    for entry in toc_files(read_toc(toc_path)):
        entry = entry.removesuffix(".ipynb")
        if not entry.startswith(prefix):
            continue
        name = entry.removeprefix(prefix)
        source = root / NOTEBOOKS_DIR / f"{name}.ipynb"
        if not source.is_file():
            raise TocError(f"{toc_path} lists chapter {entry!r} but its notebook {source} does not exist")
        chapters.append(Chapter(name=name, source=source, executed=root / EXECUTED_DIR / f"{name}.ipynb"))
    return chapters


def select_chapters(chapters: list[Chapter], only: list[str] | None) -> list[Chapter]:
    """`chapters` restricted to the names in `only` (TOC order kept); None keeps all."""
    if only is None:
        return list(chapters)
    known = {chapter.name for chapter in chapters}
    unknown = [name for name in only if name not in known]
    if unknown:
        raise TocError(f"no chapter named {', '.join(unknown)}; the book has {', '.join(sorted(known)) or 'none'}")
    return [chapter for chapter in chapters if chapter.name in only]


def restrict_toc(toc: dict[str, Any], keep: set[str]) -> dict[str, Any]:
    """A copy of `toc` without the executed chapters not in `keep` (and without parts left empty)."""
    prefix = EXECUTED_DIR.as_posix() + "/"

    def kept(entry: Any) -> bool:
        file = entry.get("file") if isinstance(entry, dict) else None
        return not (isinstance(file, str) and file.startswith(prefix) and file.removeprefix(prefix) not in keep)

    def prune(node: Any) -> Any:
        if isinstance(node, list):
            items = [prune(item) for item in node if kept(item)]
            return [item for item in items if item is not None]
        if isinstance(node, dict):
            pruned = {key: prune(value) for key, value in node.items()}
            for key in ("chapters", "sections", "parts"):
                if key in pruned and not pruned[key]:
                    if "file" not in pruned and key != "parts":
                        return None  # a part (caption only) whose chapters were all dropped
                    del pruned[key]
            return pruned
        return node

    return prune(copy.deepcopy(toc))
