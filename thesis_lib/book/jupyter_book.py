"""The Jupyter Book step: `jupyter-book build` on the per-build config and TOC that `thesis book` writes.

Its own module, light to import (no torch, no papermill): `thesis_lib.book.build` renders the HTML book with
it, `thesis_lib.book.pdf` the one-page book that Chromium prints. Notebooks are never executed here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from thesis_lib.errors import ThesisError

BUILD_CONFIG = "_config.yml"  # per-build copies, written into the executed folder
BUILD_TOC = "_toc.yml"
BUILD_LOG = "book-build.log"  # the chapters run or reused, then Jupyter Book's full output; next to html/
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # Sphinx colours its console output


class BookBuildError(ThesisError, RuntimeError):
    """Jupyter Book reported warnings or errors (the build runs with -W, so a broken reference fails)."""


def run_jupyter_book(root: Path, output: Path, config: Path, toc: Path, log: Callable[[str], None],
                     chapter_lines: Sequence[str] = (), *, builder: str = "html", log_path: Path | None = None) -> Path:
    """`jupyter-book build -W -n --keep-going --all` with `builder` (html; singlehtml for the PDF,
    `thesis_lib.book.pdf`) into <output>/_build/<builder>/; warnings are printed, the full log is kept at
    `log_path` (None: <output>/_build/book-build.log), after `chapter_lines` (which chapters ran, which were
    reused, and why). Returns the builder's index.html."""
    command = [
        str(Path(sys.executable).parent / "jupyter-book"), "build", str(root),
        "--config", str(config), "--toc", str(toc), "--path-output", str(output), "--builder", builder,
        "-W", "-n", "--keep-going", "--all",
    ]
    log(f"jupyter-book build --builder {builder} -W -n --keep-going ...")
    result = subprocess.run(command, cwd=root, capture_output=True, text=True)
    log_path = Path(log_path) if log_path is not None else Path(output) / "_build" / BUILD_LOG
    log_path.parent.mkdir(parents=True, exist_ok=True)
    output_text = _ANSI_ESCAPE.sub("", result.stdout + result.stderr)
    problems = [line for line in output_text.splitlines()
                if "WARNING" in line or "ERROR" in line or "Traceback" in line]
    header = "".join(f"{line}\n" for line in chapter_lines) + ("\n" if chapter_lines else "")
    log_path.write_text(header + output_text, encoding="utf-8")
    for line in problems:
        log(f"jupyter-book: {line}")
    index = Path(output) / "_build" / builder / "index.html"
    if result.returncode != 0 or not index.is_file():
        raise BookBuildError(
            f"jupyter-book failed (exit status {result.returncode}, {len(problems)} warning/error lines); "
            f"full log: {log_path}"
        )
    return index
