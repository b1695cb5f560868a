"""Whole sentences into the prose: glued as Markdown and quoted with `{glue:md}`.

`{glue:text}` (thesis_lib.book.glue) suits a number or a name: myst-nb sets it in bold, which marks it as
computed. A sentence the chapter writes from the data (which model leads, whether an interval excludes
zero) would be a bold paragraph, so it is glued as Markdown instead and reads as ordinary text.
"""

from __future__ import annotations


def glue_sentences(**sentences: str) -> None:
    """Glue each keyword as Markdown for `` {glue:md}`name` ``; an empty sentence is glued as a space (a
    section that does not apply on this data says nothing)."""
    from IPython.display import Markdown
    from myst_nb import glue

    for name, text in sentences.items():
        glue(name, Markdown(text or " "), display=False)
