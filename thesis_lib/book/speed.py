"""The speed appendix: committed benchmark results (`benchmarks/results/*.json`) as tables for the book.

`benchmarks/run_bench.py` writes one JSON file per run (`schema: thesis-bench/1`, see benchmarks/README.md);
the appendix shows every committed file, newest first, each under a heading that names its profile, device
and date. Nothing here measures anything or computes a number the JSON does not hold, except unit changes
(bytes -> MiB); the comparisons (x plain, x no workers) were added by the benchmark itself. Epoch and data-set
times in the files are derived from measured throughput, and the tables say so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from thesis_lib.bench.report import SCHEMA
from thesis_lib.errors import ThesisError

RESULTS_DIR = Path("benchmarks") / "results"  # relative to the project root
MIB = 2**20


class BenchResultError(ThesisError, ValueError):
    """A file under benchmarks/results/ that is not a readable benchmark result."""


@dataclass(frozen=True)
class BenchResult:
    """One committed benchmark run."""

    path: Path
    content: dict[str, Any]

    @property
    def on_gpu(self) -> bool:
        return self.content["device"]["type"] == "cuda"

    @property
    def heading(self) -> str:
        """"gpu profile on cuda NVIDIA H100 80GB HBM3, 2026-11-27 (benchmarks/results/gpu-....json)"."""
        device = self.content["device"]
        return (f"{self.content['profile']} profile on {device['type']} {device['name']}, "
                f"{self.content['created'][:10]} ({RESULTS_DIR.as_posix()}/{self.path.name})")

    @property
    def description(self) -> str:
        """What the run was, in a sentence or two: peak used for MFU, wall time, and the run's own note."""
        device, content = self.content["device"], self.content
        peak = device.get("peak_bf16_flops")
        peak_text = (f"MFU is achieved FLOP/s over a dense bf16 peak of {peak / 1e12:.0f} TFLOP/s "
                     f"({device.get('peak_source') or 'stated peak'})" if peak else
                     "MFU is n/a (no stated bf16 peak for this device)")
        note = f" Note recorded with the run: {content['note']}" if content.get("note") else ""
        return f"Measured {content['created']} in {content['wall_time_s']:.0f} s; {peak_text}.{note}"


def load_results(root: Path | str) -> list[BenchResult]:
    """Every benchmark result under `root`/benchmarks/results, newest first; a bad file is named in the error."""
    folder = Path(root) / RESULTS_DIR
    results = []
    for path in sorted(folder.glob("*.json")):
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise BenchResultError(f"{path}: not a readable benchmark result: {error}") from None
        if not isinstance(content, dict) or content.get("schema") != SCHEMA:
            found = content.get("schema") if isinstance(content, dict) else type(content).__name__
            raise BenchResultError(f"{path}: not a {SCHEMA} benchmark result (schema: {found!r})")
        results.append(BenchResult(path, content))
    if not results:
        raise BenchResultError(f"{folder}: no benchmark results (run `make bench`, or `bash benchmarks/gpu.sh` on a GPU)")
    return sorted(results, key=lambda result: result.content["created"], reverse=True)


def gpu_status(results: list[BenchResult]) -> str:
    """One sentence: which GPU results exist, or that the GPU figures are still to be measured."""
    gpu = [result for result in results if result.on_gpu]
    if not gpu:
        return ("No GPU result is committed yet: the GPU figures (full-size models, MFU, the H100 targets) are "
                "still to be measured with `bash benchmarks/gpu.sh`; the CPU results below only show that every "
                "path runs.")
    names = "; ".join(result.heading for result in gpu)
    return f"GPU results: {names}."


def headline(results: list[BenchResult]) -> BenchResult:
    """The result the appendix's figure shows: the newest GPU result, else the newest of any kind."""
    return next((result for result in results if result.on_gpu), results[0])


def technique_ladder(result: BenchResult, model: str = "fusion_cross_attention") -> pd.DataFrame:
    """The training variants of `model` on synthetic batches (plain, + bf16, + fused AdamW, ...), one row each,
    indexed by variant: samples/s, x plain, MFU."""
    table = cases_table(result.content)
    ladder = table[table["case"] == f"train {model}"].set_index("variant")
    return ladder[["samples/s", "x plain", "MFU", "peak MiB"]]


def result_tables(result: BenchResult) -> dict[str, pd.DataFrame]:
    """The run's sections as titled tables (empty sections left out)."""
    tables = {
        "Training and extraction steps on synthetic batches": cases_table(result.content),
        "Poster loading (decode, resize, augmentation)": loader_table(result.content),
        "Fed by the real data loader (epoch and data-set times derived from throughput)":
            end_to_end_table(result.content),
        "Detectors": detectors_table(result.content),
        "Targets (for one H100)": targets_table(result.content),
        "Skipped or failed": problems_table(result.content),
    }
    return {title: table for title, table in tables.items() if len(table)}


def cases_table(content: dict[str, Any]) -> pd.DataFrame:
    rows = [{
        "case": case["name"], "size": case["size"], "variant": case["variant"],
        "shape": _shape(case["shape"]), "parameters (M)": case["parameters"] / 1e6,
        "samples/s": case["samples_per_s"], "TFLOP/s": case["achieved_tflops"], "MFU": _share(case["mfu"]),
        "peak MiB": case["peak_memory_bytes"] / MIB, "x plain": case.get("speedup_vs_plain"),
    } for case in content["cases"]]
    return pd.DataFrame(rows)


def loader_table(content: dict[str, Any]) -> pd.DataFrame:
    rows = [{
        "stage": stage["stage"], "workers": stage["workers"], "pinned": stage["pin_memory"],
        "batch": stage["batch_size"], "posters/s": stage["items_per_s"],
        "x no workers": stage.get("speedup_vs_no_workers"),
    } for stage in content["loader"]]
    return pd.DataFrame(rows)


def end_to_end_table(content: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for entry in content["end_to_end"]:
        derived = entry["derived"]
        rows.append({
            "run": entry["name"], "variant": entry["variant"],
            "length-grouped": entry.get("group_by_length"),
            "workers": entry["loader"]["workers"],
            "movies/s": entry.get("samples_per_s", entry.get("movies_per_s")),
            "derived: MM-IMDb epoch s": derived.get("mmimdb_train_epoch_s"),
            "derived: all 25,959 movies s": derived.get("mmimdb_all_movies_s"),
            "padding": _share(entry.get("padding_fraction")), "MFU": _share(entry.get("mfu")),
        })
    return pd.DataFrame(rows)


def detectors_table(content: dict[str, Any]) -> pd.DataFrame:
    rows = [{
        "detector": detector["name"], "precision": detector.get("precision"),
        "posters/s": detector.get("posters_per_s"), "status": detector.get("status", "measured"),
    } for detector in content["detectors"]]
    return pd.DataFrame(rows)


def targets_table(content: dict[str, Any]) -> pd.DataFrame:
    rows = [{
        "target": target["target"], "measured": target["measured"],
        "derived": bool(target.get("derived", False)),
        "met": {True: "met", False: "not met", None: "n/a"}[target["met"]], "note": target.get("note", ""),
    } for target in content.get("targets", [])]
    return pd.DataFrame(rows)


def problems_table(content: dict[str, Any]) -> pd.DataFrame:
    rows = [{"what": item["section"], "why": item["reason"]} for item in content["skipped"]]
    rows += [{"what": item["name"], "why": f"error: {item['error']}"} for item in content["errors"]]
    return pd.DataFrame(rows)


def _shape(shape: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in shape.items() if value)


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"
