"""One look for a table wherever it goes: the book's page (HTML), the thesis (LaTeX, booktabs), a terminal or
a README (Markdown), a spreadsheet (CSV).

The HTML and the LaTeX come from the same pandas `Styler`, so a cell reads the same in the book and in
the thesis: floats with `precision` decimals, a missing value as a dash. CSV keeps the values themselves
(every digit), for anyone who re-plots or re-tests them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from pandas.io.formats.style import Styler

DEFAULT_PRECISION = 3  # decimals of a float cell
MISSING = {"html": "–", "latex": "--"}  # a missing value (NaN, None) as each format shows it
LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def styled(table: pd.DataFrame, precision: int = DEFAULT_PRECISION, *, escape: str = "html",
           name: str | None = None) -> Styler:
    """`table` formatted for `escape` ("html" | "latex"): floats with `precision` decimals, missing values as
    a dash, cells and headers escaped. `name` makes the HTML ids stable (pandas draws a random one)."""
    styler = table.style.format(precision=precision, na_rep=MISSING[escape], escape=escape)
    styler = styler.format_index(escape=escape, axis=0).format_index(escape=escape, axis=1)
    if name is not None:
        styler = styler.set_uuid(name)
    if escape == "html":
        styler = styler.set_table_attributes('class="dataframe"')  # the book's table style
    return styler


def latex_tabular(table: pd.DataFrame, precision: int = DEFAULT_PRECISION) -> str:
    """A booktabs `tabular` (\\toprule, \\midrule, \\bottomrule: `\\usepackage{booktabs}`) of `table`."""
    return styled(table, precision, escape="latex").to_latex(hrules=True, multicol_align="c")


def markdown_table(table: pd.DataFrame, precision: int = DEFAULT_PRECISION) -> str:
    """A GitHub-flavoured Markdown table of `table` (float columns with `precision` decimals)."""
    from pandas.api.types import is_float_dtype

    formats = ["g"] + [f".{precision}f" if is_float_dtype(table[column]) else "g" for column in table.columns]
    cells = table.astype(object).where(table.notna(), None)  # missing: None, which tabulate shows as a dash
    return cells.to_markdown(floatfmt=formats, missingval=MISSING["html"])


def latex_text(text: str) -> str:
    """`text` with LaTeX's special characters escaped (for a caption, say)."""
    return "".join(LATEX_SPECIALS.get(character, character) for character in text)
