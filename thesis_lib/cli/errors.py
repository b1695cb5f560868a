"""How a command reports an error: one line `thesis: error: <message>` on stderr."""

from __future__ import annotations

import sys

EXIT_USER_ERROR = 2  # a ThesisError: the status argparse gives a usage error


def report_error(error: BaseException) -> None:
    """Print `thesis: error: <message>` with the message on one line, whatever whitespace it holds."""
    print(f"thesis: error: {' '.join(str(error).split())}", file=sys.stderr)
