"""The book: chapter notebooks run by papermill, rendered by Jupyter Book (see `thesis_lib.book.build`).

Modules, one job each: `profiles` (parameter files and `-p` overrides), `chapters` (the notebooks
`_toc.yml` lists), `execute` (one chapter through papermill, and its presentation), `provenance` (what
produced a build, in the words the front page and captions use), `glue` (numbers and figures into the
prose), `architecture` (parameter counts and cross-attention shapes for the methods chapter), `build`
(the whole build and `main_book`), `command` (the `thesis book` arguments). Nothing heavy is imported here.
"""
