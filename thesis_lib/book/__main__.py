"""`python -m thesis_lib.book [--profile P] [-p NAME VALUE ...] [--only CHAPTER ...]` (same as `thesis book`)."""

import argparse
import sys

from thesis_lib.book.command import add_book_arguments, run_book

parser = argparse.ArgumentParser(prog="python -m thesis_lib.book",
                                 description="Run every chapter with papermill and build the HTML book.")
add_book_arguments(parser)
sys.exit(run_book(parser.parse_args()))
