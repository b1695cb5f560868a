"""The `thesis` command line and its boundary with the library.

- every `thesis ... --help` works (argparse formats help strings with %, so one stray % breaks a page), walking
  the parser's tree so a new command is covered without being listed; `thesis --version`;
- a user error in any command group is one `thesis: error:` line on stderr and exit status 2;
- the library's log lines reach stderr through the CLI, and `configure_logging` is idempotent;
- only `thesis_lib/cli/` prints, defines `main`, or is imported as `thesis_lib.cli` (entry points aside).
"""

from __future__ import annotations

import argparse
import ast
import io
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from thesis_lib.cli import build_parser, main
from thesis_lib.logs import LIBRARY_LOGGER, configure_logging

PACKAGE = Path(__file__).resolve().parents[1] / "thesis_lib"
CLI_PACKAGE = PACKAGE / "cli"


@pytest.fixture
def library_logger() -> Iterator[logging.Logger]:
    """The `thesis_lib` logger, restored afterwards (configure_logging changes process-wide state)."""
    logger = logging.getLogger(LIBRARY_LOGGER)
    handlers, level = list(logger.handlers), logger.level
    yield logger
    logger.handlers[:] = handlers
    logger.setLevel(level)


# --------------------------------------------------------------------------------------------------------
# Help pages


def command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command of the parser tree: (), ("data",), ("data", "check"), ..."""
    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                yield from command_paths(subparser, (*prefix, name))


ALL_COMMANDS = list(command_paths(build_parser()))


def test_the_tree_holds_every_command_group():
    assert {path[0] for path in ALL_COMMANDS if path} == {"data", "models", "weights", "run", "cache", "results", "xai", "book",
                                                          "export", "capacity", "datasize"}
    assert ("results", "table") in ALL_COMMANDS and ("data", "download") in ALL_COMMANDS
    assert ("results", "seeds") in ALL_COMMANDS


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda path: " ".join(("thesis", *path)))
def test_every_help_page_prints(path, capsys):
    with pytest.raises(SystemExit) as done:
        main([*path, "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: {' '.join(('thesis', *path))}")


def test_version_is_the_installed_packages_with_the_checkouts_commit(capsys, monkeypatch):
    from importlib import metadata

    from thesis_lib import versions

    with pytest.raises(SystemExit) as done:
        main(["--version"])  # no command needed
    assert done.value.code == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"thesis_lib {metadata.version('thesis_lib')}")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PACKAGE.parent, capture_output=True, text=True)
    if head.returncode == 0:  # a checkout (a test run from an unpacked sdist has none)
        assert f"(commit {head.stdout.strip()[:7]}" in line
    monkeypatch.setattr(versions, "source_checkout", lambda: None)  # an installed copy: no commit, whatever the cwd
    assert versions.version_line() == f"thesis_lib {metadata.version('thesis_lib')}"


def test_help_does_not_import_torch():
    code = ("import sys\nfrom thesis_lib.cli import build_parser\nbuild_parser().format_help()\n"
            "from thesis_lib.versions import version_line\nversion_line()\n"  # what `thesis --version` runs
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------------------
# One error convention


def user_errors(tmp_path: Path) -> dict[str, list[str]]:
    """One bad input per command group (each exists independently of this test)."""
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a folder")
    return {
        "data check": ["data", "check", str(tmp_path / "missing")],
        "data download": ["data", "download", str(in_the_way / "dest"), "--no-extract"],
        "models describe": ["models", "describe", "no_such_model"],
        "weights list": ["weights", "list", "--profile", str(tmp_path / "no-such-profile.yaml")],
        "run": ["run", "--seeds", "x"],
        "results table": ["results", "table", "--runs", str(tmp_path / "missing")],
        "xai check": ["xai", "check", "--data", str(tmp_path), "--runs", str(tmp_path), "--tolerance", "-1"],
        "book": ["book", "--only", "no_such_chapter"],
    }


@pytest.mark.parametrize("command", ["data check", "data download", "models describe", "weights list", "run",
                                     "results table", "xai check", "book"])
def test_a_user_error_is_one_line_and_exit_status_2(command, tmp_path, capsys, library_logger):
    assert main(user_errors(tmp_path)[command]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("thesis: error: ") and captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err


def test_a_bug_keeps_its_traceback(monkeypatch, library_logger):
    from thesis_lib.cli import models

    def broken(ns: argparse.Namespace) -> int:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(models, "list_command", broken)
    with pytest.raises(ZeroDivisionError):
        main(["models", "list"])


# --------------------------------------------------------------------------------------------------------
# Logging


def test_configure_logging_is_idempotent_and_leaves_the_root_alone(library_logger):
    root = logging.getLogger()
    root_handlers = list(root.handlers)
    stream = io.StringIO()
    configure_logging(stream=stream)
    handlers = list(library_logger.handlers)
    configure_logging(stream=stream)
    assert library_logger.handlers == handlers  # the second call added nothing
    assert root.handlers == root_handlers
    logging.getLogger("thesis_lib.some.module").info("one line")
    logging.getLogger("thesis_lib.some.module").debug("below the level")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith(" thesis_lib.some.module: one line")
    assert lines[0][2] == ":" and lines[0][5] == ":"  # HH:MM:SS first


def test_library_info_lines_reach_stderr_through_the_cli(tmp_path, monkeypatch, capsys, library_logger):
    from thesis_lib.data.download import URL_ENV

    monkeypatch.delenv(URL_ENV, raising=False)
    archive = tmp_path / "mmimdb.tar.gz"  # the default URL's file name, already here: nothing is fetched
    archive.write_bytes(b"an archive")
    assert main(["data", "download", str(tmp_path), "--no-extract"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(archive)  # stdout: the result only
    assert f"thesis_lib.data.download: {archive} already downloaded; verifying" in captured.err


# --------------------------------------------------------------------------------------------------------
# The boundary: the library returns values and raises; the CLI prints


def library_modules() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if CLI_PACKAGE not in path.parents:
            yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_only_the_cli_prints():
    printing = [f"{path.relative_to(PACKAGE.parent)}:{node.lineno}" for path, tree in library_modules()
                for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id == "print"]
    assert printing == [], "the library returns values or logs; only thesis_lib/cli/ prints"


def test_only_the_cli_defines_main():
    mains = [f"{path.relative_to(PACKAGE.parent)}:{node.name}" for path, tree in library_modules()
             for node in ast.walk(tree)
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
             and (node.name == "main" or node.name.startswith("main_"))]
    assert mains == []


def test_the_library_never_imports_the_cli():
    # `python -m` entry points (__main__.py) are the one exception: they delegate to the CLI.
    importing = []
    for path, tree in library_modules():
        if path.name == "__main__.py":
            continue
        for node in ast.walk(tree):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            importing += [f"{path.relative_to(PACKAGE.parent)}" for name in names
                          if name == "thesis_lib.cli" or name.startswith("thesis_lib.cli.")]
    assert importing == []
