"""`python -m thesis_lib.book [--profile P] [-y YAML ...] [-p NAME VALUE ...] [--only CHAPTER ...]`: `thesis book` itself
(what `make book` runs)."""

import sys

from thesis_lib.cli import main

sys.exit(main(["book", *sys.argv[1:]]))
