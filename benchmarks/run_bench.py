"""`python benchmarks/run_bench.py --profile cpu|gpu|tiny [--out FILE]`: run the speed benchmark.

A thin entry point: the logic lives in `thesis_lib.bench` (see benchmarks/README.md for what is measured
and what the JSON holds). Prints the table and writes the JSON to --out (default
benchmarks/results/<profile>-<device>-<date>.json); progress goes to stderr as log lines. `--grid` instead runs the real `thesis run` path
on a small full-size grid (thesis_lib.bench.grid), as the GPU script does after the benchmark.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a plain checkout (the GPU machine has the project on no path)

import thesis_lib  # noqa: E402,F401  (sets the offline environment before torch / transformers load)
from thesis_lib.logs import configure_logging  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=("tiny", "cpu", "gpu"))
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: the system temp)")
    parser.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak to compute MFU against")
    parser.add_argument("--time-budget", type=float, default=None, help="seconds; later sections are skipped")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile section")
    parser.add_argument("--grid", action="store_true", help="run the small full-size `thesis run` grid instead")
    parser.add_argument("--note", default=None, help="a remark stored in the JSON (e.g. 'shared machine, loaded')")
    ns = parser.parse_args(argv)
    configure_logging()  # the benchmark's progress lines (and the grid's, with --grid) on stderr

    import torch

    from thesis_lib.bench.config import PROFILES
    from thesis_lib.bench.report import summary_lines
    from thesis_lib.bench.runner import run_benchmark, write_json

    device = torch.device(ns.device) if ns.device else None
    if ns.grid:
        from thesis_lib.bench.grid import run_grid_check

        outcome = run_grid_check(workdir=ns.workdir)
        print(json.dumps(outcome, indent=2, default=str))
        if ns.out:
            write_json(ns.out, outcome)
        return 0 if outcome["ok"] else 1
    config = PROFILES[ns.profile]
    if ns.time_budget is not None:
        config = dataclasses.replace(config, time_budget_s=ns.time_budget)
    if ns.no_compile:
        config = dataclasses.replace(config, compile=False)
    out = ns.out or default_out(ns.profile, device)
    result = run_benchmark(config, out=out, workdir=ns.workdir, device=device, peak_tflops=ns.peak_tflops,
                           note=ns.note)
    print("\n".join(summary_lines(result)))
    print(f"[bench] JSON: {out}")
    return 0


def default_out(profile: str, device) -> Path:
    """benchmarks/results/<profile>-<device name>-<date>.json"""
    import torch

    from thesis_lib.bench.hardware import describe_device

    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", describe_device(device).name).strip("_")
    date = datetime.datetime.now(datetime.UTC).date().isoformat()
    return ROOT / "benchmarks" / "results" / f"{profile}-{name}-{date}.json"


if __name__ == "__main__":
    sys.exit(main())
