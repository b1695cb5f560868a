"""The one base class for errors caused by the user's input (a bad folder, file, URL or parameter).

Their messages are one line naming the problem and the file, so the `thesis` command prints them without
a traceback; programming errors (anything else) still raise normally.
"""


class ThesisError(Exception):
    """Bad input, reported to the user as one line (the CLI exits with status 2)."""
