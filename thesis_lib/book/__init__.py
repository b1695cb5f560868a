"""The book: chapter notebooks run by papermill, rendered by Jupyter Book (see `thesis_lib.book.build`).

Profiles are `thesis_lib.experiments.profile` (one loader for `thesis run`, the build and the chapters).
Modules, one job each: `chapters` (the notebooks `_toc.yml` lists), `execute` (one chapter through
papermill, and its presentation), `provenance` (what produced a build, in the words the front page and
captions use), `glue` (numbers and figures into the prose), `architecture` (parameter counts and
cross-attention shapes for the methods chapter), `objects` (detector tables and figures),
`experiments_chapter`, `experiments_figures` and `error_analysis` (chapter 4's tables, figures and error
analysis from the run records), `xai_chapter` (chapter 4's explanations and faithfulness table), `prose`
(sentences built from records), `speed` (the benchmark appendix), `jupyter_book` (the Jupyter Book step),
`build` (the whole build: `build_book`), `pdf` (the built book printed to one PDF: `book_pdf`).
The `thesis book` command itself lives in `thesis_lib.cli.book`. Nothing heavy is imported here.
"""
