"""`python benchmarks/run_bench.py --profile gpu|cpu|dry [--sections a,b] [--out FILE]`: run the speed benchmark.

A thin entry point: the logic lives in `thesis_lib.bench` (benchmarks/README.md says what is measured and
what the JSON holds). Sections (default: all of the profile's) run in this process and are written to --out
after every case; a file that an earlier process of the same run wrote is continued (benchmarks/gpu.sh runs
the sections in several processes, each under its own time limit). Other modes, each on the same file:
  --grid                      a short `thesis run` grid (thesis_lib.bench.grid), saved after each model
  --record-timeout STEP       note that the script stopped STEP (with --limit S and --exit-code N)
  --not-started STEP          note that the script did not start STEP (--reason TEXT)
  --summary                   print the result and its skipped and errors lists; exit 1 when there is no file
Progress goes to stderr as log lines. Default --out: benchmarks/results/<profile>-<device>-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import re
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a plain checkout (the GPU machine has the project on no path)

import thesis_lib  # noqa: E402,F401  (sets the offline environment before torch / transformers load)
from thesis_lib.bench.results import (  # noqa: E402  (no torch: the bookkeeping modes start fast)
    open_result,
    problem_lines,
    read_result,
    record_not_started,
    record_timeout,
    save_result,
)
from thesis_lib.logs import configure_logging  # noqa: E402

PROFILE_NAMES = ("gpu", "cpu", "dry")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=PROFILE_NAMES)
    parser.add_argument("--out", type=Path, default=None, help="the run's JSON file (continued when it exists)")
    parser.add_argument("--sections", default=None, help="comma-separated sections (default: the profile's)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: the system temp)")
    parser.add_argument("--device", default=None, help="cpu | cuda (default: the full profile's choice)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak to compute MFU against")
    parser.add_argument("--time-budget", type=float, default=None, help="seconds; later cases are skipped")
    parser.add_argument("--note", default=None, help="a remark stored in the JSON (e.g. 'shared machine, loaded')")
    parser.add_argument("--grid", action="store_true", help="run the short `thesis run` grid")
    parser.add_argument("--record-timeout", metavar="STEP", default=None)
    parser.add_argument("--limit", type=float, default=0.0, help="with --record-timeout: the step's limit in s")
    parser.add_argument("--exit-code", type=int, default=124, help="with --record-timeout: the step's exit status")
    parser.add_argument("--not-started", metavar="STEP", default=None)
    parser.add_argument("--reason", default="no time left before the script's deadline")
    parser.add_argument("--summary", action="store_true", help="print the result's lines, skipped and errors")
    ns = parser.parse_args(argv)
    if ns.summary:
        return summary(ns.out)
    out = ns.out or default_out(ns.profile)
    if ns.record_timeout:
        record_timeout(out, ns.record_timeout, ns.limit, ns.exit_code, ns.profile)
        return 0
    if ns.not_started:
        record_not_started(out, ns.not_started, ns.reason, ns.profile)
        return 0
    configure_logging()  # the benchmark's progress lines (and the grid's) on stderr
    if ns.grid:
        return grid(ns.profile, out, ns.workdir)
    return bench(ns, out)


def bench(ns: argparse.Namespace, out: Path) -> int:
    import dataclasses

    import torch

    from thesis_lib.bench.config import PROFILES
    from thesis_lib.bench.report import summary_lines
    from thesis_lib.bench.runner import run_benchmark

    config = PROFILES[ns.profile]
    if ns.time_budget is not None:
        config = dataclasses.replace(config, time_budget_s=ns.time_budget)
    sections = ns.sections.split(",") if ns.sections else None
    result = run_benchmark(config, out=out, sections=sections, workdir=ns.workdir,
                           device=torch.device(ns.device) if ns.device else None, peak_tflops=ns.peak_tflops,
                           note=ns.note)
    print("\n".join(summary_lines(result)))
    print(f"[bench] JSON: {out}")
    return 0


def grid(profile: str, out: Path, workdir: Path | None) -> int:
    """The short grid; its outcome goes to the run's JSON under "grid" after each model."""
    from thesis_lib.bench.grid import GRID_CHECKS, run_grid_check

    result = open_result(out, profile)

    def progress(outcome: dict) -> None:
        result["grid"] = outcome
        save_result(out, result)

    try:
        outcome = run_grid_check(GRID_CHECKS[profile], workdir=workdir, on_progress=progress)
    except Exception as error:  # noqa: BLE001 - recorded in the JSON; the script goes on to the next step
        message = f"{type(error).__name__}: {error}".splitlines()[0][:500]
        result["errors"].append({"section": "grid", "name": "thesis run grid", "error": message,
                                 "traceback": traceback.format_exc()[-4000:]})
        save_result(out, result)
        print(f"[grid] FAILED: {message}")
        return 0
    print(f"[grid] {outcome['summary']} (ok: {outcome['ok']}, {outcome['wall_time_s']:.0f} s)")
    if not outcome["ok"]:
        result["errors"].append({"section": "grid", "name": "thesis run grid",
                                 "error": f"failed runs: {outcome['failed']}", "traceback": ""})
        save_result(out, result)
    return 0


def summary(out: Path | None) -> int:
    """Print the run's lines; 1 when there is no JSON (the one failure of the GPU script)."""
    if out is None or not out.is_file():
        print(f"[bench] no result: {out} was not written")
        return 1
    from thesis_lib.bench.report import summary_lines

    result = read_result(out)
    try:
        lines = summary_lines(result)
    except (KeyError, TypeError) as error:  # a run cut off before its first section: show the problems only
        lines = [f"(partial result: {type(error).__name__}: {error})", *problem_lines(result)]
    print("\n".join(lines))
    print(f"[bench] JSON: {out}")
    return 0


def default_out(profile: str) -> Path:
    """benchmarks/results/<profile>-<device name>-<date>.json"""
    import torch

    from thesis_lib.machine import cpu_name

    name = torch.cuda.get_device_name() if torch.cuda.is_available() else cpu_name()
    date = datetime.datetime.now(datetime.UTC).date().isoformat()
    return ROOT / "benchmarks" / "results" / f"{profile}-{re.sub(r'[^A-Za-z0-9._-]+', '_', name).strip('_')}-{date}.json"


if __name__ == "__main__":
    sys.exit(main())
