"""The files `thesis export` hands to the thesis, written while a chapter runs: the figure objects and the
tables exist only in its kernel.

`thesis book` runs each chapter with THESIS_BOOK_ARTEFACTS naming the chapter's folder
(book/_executed/artefacts/<chapter>/: emptied before the chapter runs, kept with an executed copy that a
later build reuses), and every glued figure and table is written there under its glue key:
- a figure as PDF and SVG (vector) and as a 300-dpi PNG: <key>.pdf, <key>.svg, <key>.png;
- a table as CSV (the values themselves) and as a booktabs LaTeX tabular whose cells read as on the page
  (`thesis_lib.tables`): <key>.csv, <key>.tex.
A notebook run outside `thesis book` (Jupyter, papermill by hand) writes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from thesis_lib.tables import DEFAULT_PRECISION, latex_tabular

if TYPE_CHECKING:
    import pandas as pd

ARTEFACTS_ENV = "THESIS_BOOK_ARTEFACTS"  # set by `thesis book` for each chapter's kernel
FIGURE_FORMATS = ("pdf", "svg", "png")
TABLE_FORMATS = ("csv", "tex")
PRINT_DPI = 300  # the PNG for print; the page shows the figure at plots.BOOK_DPI


def artefact_folder() -> Path | None:
    """Where this chapter's figures and tables go (None: not run by `thesis book`)."""
    folder = os.environ.get(ARTEFACTS_ENV)
    return Path(folder) if folder else None


def save_figure(key: str, figure: Any) -> None:
    """Write a matplotlib figure as <key>.pdf, .svg and a 300-dpi .png (when the chapter keeps artefacts)."""
    folder = artefact_folder()
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in FIGURE_FORMATS:
        figure.savefig(folder / f"{key}.{suffix}", dpi=PRINT_DPI if suffix == "png" else "figure",
                       bbox_inches="tight")


def save_table(key: str, table: pd.DataFrame, precision: int = DEFAULT_PRECISION) -> None:
    """Write a table as <key>.csv (every digit) and <key>.tex (a booktabs tabular as the page shows it)."""
    folder = artefact_folder()
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / f"{key}.csv")
    (folder / f"{key}.tex").write_text(latex_tabular(table, precision), encoding="utf-8")
