"""The speed appendix: committed benchmark results (`benchmarks/results/*.json`) as tables for the book.

`benchmarks/run_bench.py` writes one JSON file per run (`schema: thesis-bench/2`, see benchmarks/README.md);
the appendix shows every committed file, newest first, each under a heading that names its profile, device
and date. Nothing here measures anything or computes a number the JSON does not hold, except unit changes
(bytes -> MiB); the comparisons (x product, x plain, x no workers) were added by the benchmark itself. Epoch
and data-set times in the files are derived from measured throughput, and the tables say so. With no
committed result (no GPU has been available, and the CPU result was withdrawn) the appendix says so and
shows no number.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from thesis_lib.bench.results import SCHEMA
from thesis_lib.errors import ThesisError
from thesis_lib.storage import read_json_document

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
        """What the run was: the two peaks MFU is computed against, the wall time, the load, the run's note."""
        device, content = self.content["device"], self.content
        peak, measured = device.get("peak_bf16_flops"), device.get("measured_peak_flops")
        peak_text = (f"MFU is useful (non-padding) FLOP/s over the dense bf16 peak of {peak / 1e12:.0f} TFLOP/s "
                     f"({device.get('peak_source') or 'stated peak'})" if peak else
                     "MFU is n/a (no stated bf16 peak for this device)")
        if measured:
            peak_text += f"; the MFU (measured peak) column divides by the {measured / 1e12:.0f} TFLOP/s a bf16 " \
                         "matmul reached on this device"
        load = (content.get("machine") or {}).get("load_average")
        load_text = f" Load average at the start: {load}." if load else ""
        note = f" Note recorded with the run: {content['note']}" if content.get("note") else ""
        return f"Measured {content['created']} in {content.get('wall_time_s', 0):.0f} s; {peak_text}.{load_text}{note}"


def load_results(root: Path | str) -> list[BenchResult]:
    """Every benchmark result under `root`/benchmarks/results, newest first (none: an empty list); a bad file
    is named in the error."""
    folder = Path(root) / RESULTS_DIR
    results = []
    for path in sorted(folder.glob("*.json")):
        results.append(BenchResult(path, read_json_document(path, SCHEMA, BenchResultError, "benchmark result")))
    return sorted(results, key=lambda result: result.content["created"], reverse=True)


UNMEASURED = ("No GPU was available to this work, so every GPU figure of this appendix (full-size models, MFU, "
              "the H100 targets) is still to be measured, with `bash benchmarks/gpu.sh` on one GPU.")


def gpu_status(results: list[BenchResult]) -> str:
    """A sentence or two: which GPU results exist, or plainly that the GPU figures are unmeasured."""
    gpu = [result for result in results if result.on_gpu]
    if gpu:
        return f"GPU results: {'; '.join(result.heading for result in gpu)}."
    if not results:
        return f"{UNMEASURED} No benchmark result is committed at all: no speed figure is shown below."
    return f"{UNMEASURED} The CPU results below only show that every path runs; they say nothing about a GPU."


def headline(results: list[BenchResult]) -> BenchResult | None:
    """The result the appendix's figure shows: the newest GPU result, else the newest of any kind (None: none)."""
    return next((result for result in results if result.on_gpu), results[0] if results else None)


def technique_ladder(result: BenchResult | None, model: str = "fusion_cross_attention") -> pd.DataFrame:
    """The training variants of `model` on synthetic batches (the product's mix, plain, + bf16, ...), one row
    each, indexed by variant: samples/s, x plain, MFU (empty without a result)."""
    columns = ["samples/s", "x plain", "x product", "MFU", "peak MiB"]
    if result is None:
        return pd.DataFrame(columns=columns)
    table = cases_table(result.content)
    if table.empty:
        return pd.DataFrame(columns=columns)
    ladder = table[table["case"] == f"train {model}"].set_index("variant")
    return ladder[columns]


def ladder_title(result: BenchResult | None, model: str = "fusion_cross_attention") -> str:
    return f"{model}, {result.heading}" if result is not None else f"{model}: not measured (no result committed)"


def result_tables(result: BenchResult) -> dict[str, pd.DataFrame]:
    """The run's sections as titled tables (empty sections left out)."""
    content = result.content
    tables = {
        "The machine": machine_table(content),
        "Training steps on synthetic batches (median step; spread = interquartile range / median)":
            cases_table(content),
        "Feature extraction as the grid runs it (cache_encoder_features)": extract_table(content),
        "Training fed by the real loader (epoch times derived from throughput)": training_table(content),
        "Loading (decode, resize, augmentation, the training loader)": loader_table(content),
        "The product's GPU paths": gpu_paths_table(content),
        "Detectors": detectors_table(content),
        "Targets (for one H100)": targets_table(content),
        "Skipped or failed": problems_table(content),
    }
    return {title: table for title, table in tables.items() if len(table)}


def machine_table(content: dict[str, Any]) -> pd.DataFrame:
    machine, matmul = content.get("machine") or {}, content.get("matmul") or {}
    rows = [{"what": key, "value": value} for key, value in (
        ("device", (content.get("device") or {}).get("name")), ("driver", machine.get("driver")),
        ("CPUs", machine.get("nproc")), ("/dev/shm GiB", _gib(machine.get("dev_shm_bytes"))),
        ("load average", machine.get("load_average")), ("measured bf16 matmul TFLOP/s", matmul.get("tflops")),
        ("torch", (machine.get("software") or {}).get("torch")),
        ("transformers", (machine.get("software") or {}).get("transformers"))) if value is not None]
    return pd.DataFrame(rows)


def cases_table(content: dict[str, Any]) -> pd.DataFrame:
    rows = [{
        "case": case["name"], "size": case["size"], "variant": case["variant"], "role": case.get("role"),
        "shape": _shape(case["shape"]), "parameters (M)": case["parameters"] / 1e6,
        "samples/s": case["samples_per_s"], "spread": _share(case["timing"].get("spread")),
        "TFLOP/s": case["achieved_tflops"], "MFU": _share(case["mfu"]),
        "MFU (measured peak)": _share(case.get("mfu_measured_peak")),
        "peak MiB": case["peak_memory_bytes"] / MIB, "x product": case.get("speedup_vs_product"),
        "x plain": case.get("speedup_vs_plain"), "graph breaks": case.get("graph_breaks"),
    } for case in content["cases"]]
    return pd.DataFrame(rows)


def extract_table(content: dict[str, Any]) -> pd.DataFrame:
    rows = [{
        "run": entry["name"], "setting": entry["variant"], "workers": entry["loader_workers"],
        "movies": entry["movies"], "movies/s": entry["movies_per_s"], "steady movies/s": entry["steady_movies_per_s"],
        "start-up s": entry["startup_s"], "derived: all 25,959 movies s": entry["derived"]["mmimdb_all_movies_s"],
    } for entry in content.get("extract", [])]
    return pd.DataFrame(rows)


def training_table(content: dict[str, Any]) -> pd.DataFrame:
    rows = [{
        "run": entry["name"], "setting": entry["variant"], "workers": entry["loader"]["workers"],
        "samples/s": entry["samples_per_s"], "spread": _share(entry["step_timing"].get("spread")),
        "start-up s": entry["startup_s"], "derived: MM-IMDb epoch s": entry["derived"]["mmimdb_train_epoch_s"],
        "padding": _share(entry.get("padding_fraction")), "MFU": _share(entry.get("mfu")),
    } for entry in content.get("cached_fusion", []) + content.get("end_to_end", [])]
    return pd.DataFrame(rows)


def loader_table(content: dict[str, Any]) -> pd.DataFrame:
    rows = [{
        "stage": stage["stage"], "workers": stage["workers"], "pinned": stage["pin_memory"],
        "batch": stage["batch_size"], "items/s": stage["items_per_s"], "start-up s": stage["startup_s"],
        "x no workers": stage.get("speedup_vs_no_workers"),
    } for stage in content["loader"]]
    return pd.DataFrame(rows)


def gpu_paths_table(content: dict[str, Any]) -> pd.DataFrame:
    rows = [{"check": check["check"], "result": {True: "ok", False: "failed", None: "skipped"}[check.get("ok")],
             "device": check.get("device"), "note": check.get("skipped", "")} for check in content.get("gpu_paths", [])]
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
    rows = [{"what": item["name"], "why": item["reason"]} for item in content["skipped"]]
    rows += [{"what": item["name"], "why": f"error: {item['error']}"} for item in content["errors"]]
    return pd.DataFrame(rows)


def _gib(value: int | None) -> float | None:
    return None if value is None else round(value / 2**30, 1)


def _shape(shape: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in shape.items() if value)


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"
