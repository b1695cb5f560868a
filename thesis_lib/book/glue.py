"""Helpers notebooks use to hand numbers and figures to the prose (`myst_nb.glue`).

The prose never types a number: a code cell glues it (`glue_values(n_movies=2000)`) and a markdown cell
quotes it (`` {glue:text}`n_movies:,d` ``; a format must end in its type letter). Figures are glued and
closed (`glue_figure`), so each appears once, where its `{glue:figure}` directive puts it with a caption;
the caption ends with the glued `data_caption` sentence, which names the data the figure shows
(`glue_data`). A table is glued the same way (`glue_table`) and placed by a `{glue:figure}` directive with
`:figclass: table`, which the book's Sphinx extension numbers as a table (`thesis_lib.book.numbering`).
Under `thesis book`, each glued figure and table is also written as files for `thesis export`
(`thesis_lib.book.artefacts`).
"""

from __future__ import annotations

from typing import Any

from thesis_lib.book.artefacts import save_figure, save_table
from thesis_lib.book.provenance import DataDescription
from thesis_lib.tables import DEFAULT_PRECISION, styled


def glue_values(**values: Any) -> None:
    """Glue each keyword as a hidden value: `glue_values(n_movies=2000, share=0.31)`.

    NumPy scalars are glued as Python numbers: the prose formats a glued value from its text form
    (`{glue:text}`share:.1%``), and "np.float64(0.31)" is not a number to the formatter.
    """
    import numpy as np
    from myst_nb import glue

    for name, value in values.items():
        glue(name, value.item() if isinstance(value, np.generic) else value, display=False)


def glue_figure(name: str, figure: Any) -> None:
    """Glue a matplotlib figure for a `{glue:figure}` directive and close it (else it shows twice)."""
    import matplotlib.pyplot as plt
    from myst_nb import glue

    save_figure(name, figure)
    glue(name, figure, display=False)
    plt.close(figure)


def glue_table(name: str, table: Any, precision: int = DEFAULT_PRECISION, *, absent: str | None = None) -> None:
    """Glue a pandas table for a `{glue:figure}` directive with `:figclass: table`: floats shown with
    `precision` decimals (the same cells as its LaTeX export), missing values as a dash. A table that
    some builds cannot have (None) needs `absent`, the one-cell note shown in its place (its directive and
    number stay, so the numbering does not depend on the data)."""
    import pandas as pd
    from myst_nb import glue

    if table is None:
        if absent is None:
            raise ValueError(f"table {name!r} is None: give glue_table the note to show instead (absent=...)")
        table = pd.DataFrame({"note": [absent]}, index=pd.Index(["–"], name=name))
    save_table(name, table, precision)
    glue(name, styled(table, precision, name=name), display=False)


def glue_data(data: DataDescription) -> None:
    """Glue the words that name the data: `data_short`, `data_long`, the caption sentence `data_caption` and
    the Korean lead's closing sentence `data_korean`."""
    glue_values(data_short=data.short, data_long=data.long, data_caption=data.caption, data_korean=data.korean)
