"""The benchmark's JSON document: created by the first process of a run, grown by the later ones, written
atomically after every case (`storage.write_text_atomic`), so whatever finished before a cut-off is kept.

benchmarks/gpu.sh runs the sections in several processes (each under its own time limit) that all write
one file: a process that finds the file continues it. A step the script had to kill is recorded with
`record_timeout`; `problem_lines` lists what was skipped and what failed. Nothing here imports torch, so
the script's bookkeeping calls start in a fraction of a second.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from thesis_lib.errors import ThesisError
from thesis_lib.storage import write_text_atomic

SCHEMA = "thesis-bench/2"
LISTS = ("cases", "loader", "extract", "cached_fusion", "end_to_end", "gpu_paths", "detectors", "skipped", "errors",
         "processes")


class BenchJsonError(ThesisError, ValueError):
    """A benchmark JSON that cannot be continued (unreadable, or another schema)."""


def new_result(profile: str, note: str | None = None) -> dict[str, Any]:
    """An empty result of benchmark profile `profile`; the sections fill it."""
    return {"schema": SCHEMA, "profile": profile, "note": note,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            **{key: [] for key in LISTS}}


def read_result(path: Path) -> dict[str, Any]:
    """A benchmark JSON written by `save_result`."""
    try:
        content = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BenchJsonError(f"{path}: not a readable benchmark result: {error}") from None
    if not isinstance(content, dict) or content.get("schema") != SCHEMA:
        found = content.get("schema") if isinstance(content, dict) else type(content).__name__
        raise BenchJsonError(f"{path}: not a {SCHEMA} benchmark result (schema: {found!r})")
    for key in LISTS:
        content.setdefault(key, [])
    return content


def open_result(path: Path | None, profile: str, note: str | None = None) -> dict[str, Any]:
    """The run's document: continued from `path` when a process of the same run wrote it, else a new one."""
    if path is not None and Path(path).is_file():
        result = read_result(path)
        if result["profile"] != profile:
            raise BenchJsonError(f"{path}: a {result['profile']!r} run, not {profile!r}: write to another file")
        return result
    return new_result(profile, note)


def save_result(path: Path | None, result: dict[str, Any]) -> None:
    """Write `result` as indented JSON via a temporary file and a rename (never a half-written file)."""
    if path is not None:
        write_text_atomic(Path(path), json.dumps(result, indent=2, default=str) + "\n")


def record_timeout(path: Path, step: str, limit_s: float, exit_code: int, profile: str) -> dict[str, Any]:
    """Note in the run's JSON that `step` was stopped at its time limit (exit 124) or failed otherwise; the
    cases it saved before stay. Creates the file when the step died before writing anything."""
    result = open_result(path, profile)
    reason = (f"stopped at its time limit of {limit_s:.0f} s (cases saved before that are kept)" if exit_code in (124, 137)
              else f"exited with status {exit_code} (cases saved before that are kept)")
    if exit_code in (124, 137):
        result["skipped"].append({"section": step, "name": step, "reason": reason})
    else:
        result["errors"].append({"section": step, "name": step, "error": reason, "traceback": ""})
    save_result(path, result)
    return result


def record_not_started(path: Path, step: str, reason: str, profile: str) -> None:
    """Note a step the script did not start (no time left before its deadline)."""
    result = open_result(path, profile)
    result["skipped"].append({"section": step, "name": step, "reason": reason})
    save_result(path, result)


def problem_lines(result: dict[str, Any]) -> list[str]:
    """What was skipped and what failed, one line each (the script prints them last)."""
    lines = [f"skipped: {item['name']}: {item['reason']}" for item in result.get("skipped", [])]
    lines += [f"error: {item['name']}: {item['error']}" for item in result.get("errors", [])]
    return lines or ["skipped: none; errors: none"]
