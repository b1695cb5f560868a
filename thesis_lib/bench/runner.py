"""Run a benchmark profile section by section and write its JSON (after every section, atomically).

One failing case (out of memory, a missing package) is recorded with its error and the run goes on; a
section that would start after `time_budget_s` is recorded as skipped. The JSON's keys are documented in
benchmarks/README.md; `report.summary_lines` prints the same numbers as a table.
"""

from __future__ import annotations

import datetime
import gc
import json
import logging
import os
import platform
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from thesis_lib.bench.cases import Case, FlopCache, run_case
from thesis_lib.bench.config import BenchConfig, Overrides
from thesis_lib.bench.detectors import frcnn_throughput, yolo_status
from thesis_lib.bench.end_to_end import ModelSpec, extract_with_loader, train_with_loader
from thesis_lib.bench.grid import available_packages
from thesis_lib.bench.hardware import DeviceInfo, describe_device
from thesis_lib.bench.loading import LoaderSettings, PosterDecodes, PosterTensors, make_loader, measure_loader
from thesis_lib.bench.movies import SyntheticMoviesConfig, write_synthetic_movies
from thesis_lib.bench.report import SCHEMA, add_comparisons, evaluate_targets
from thesis_lib.bench.techniques import BEST_EAGER, PLAIN
from thesis_lib.data.images import ImageTransformConfig, build_image_transform
from thesis_lib.data.mmimdb import Movie
from thesis_lib.data.text import CLEAN, RAW
from thesis_lib.models.registry import default_config
from thesis_lib.models.standins import PRETRAINED_DIR_VARIABLE, use_pretrained_dir, write_standins
from thesis_lib.storage import write_text_atomic

_log = logging.getLogger(__name__)

SOFTWARE = ("torch", "torchvision", "transformers", "tokenizers", "timm", "accelerate", "numpy", "pillow")


def run_benchmark(config: BenchConfig, *, out: Path | None, workdir: Path | None = None,
                  device: torch.device | None = None, peak_tflops: float | None = None,
                  log: Callable[[str], None] = _log.info, note: str | None = None) -> dict[str, Any]:
    """Run every section of `config`; returns the result (also written to `out` after each section).
    `note`: a remark kept in the JSON (how loaded the machine was, why the run was made). Progress lines go
    to `log` (default: this module's logger)."""
    started = time.perf_counter()
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest convolution
    info = describe_device(device, peak_tflops)
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "profile": config.profile,
        "note": note,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": info.to_dict(),
        "software": _software(),
        "packages": available_packages(),  # which optional packages this machine has
        "config": config.to_dict(),
        "cases": [],
        "loader": [],
        "end_to_end": [],
        "detectors": [],
        "skipped": [],
        "errors": [],
    }
    pretrained_before = os.environ.get(PRETRAINED_DIR_VARIABLE)  # stand-ins may point it into the scratch folder
    try:
        with tempfile.TemporaryDirectory(prefix="thesis-bench-", dir=workdir) as scratch:
            state = _RunState(config, device, info, result, Path(scratch), log, out, started)
            if config.size == "full":
                state.movies()  # also writes the text-backbone stand-ins every full-size section builds from
            sections = {"train": state.train, "extract": state.extract, "loader": state.loader,
                        "end_to_end": state.end_to_end, "detectors": state.detectors, "compile": state.compile}
            for name in config.sections:
                if name == "compile" and not config.compile:
                    continue
                if time.perf_counter() - started > config.time_budget_s:
                    reason = f"time budget of {config.time_budget_s:.0f} s spent"
                    result["skipped"].append({"section": name, "reason": reason})
                    log(f"[bench] {name}: skipped ({reason})")
                    continue
                log(f"[bench] {name} ...")
                sections[name]()
                state.save()
    finally:
        if pretrained_before is None:
            os.environ.pop(PRETRAINED_DIR_VARIABLE, None)
        else:
            os.environ[PRETRAINED_DIR_VARIABLE] = pretrained_before
    state.save()
    return result


class _RunState:
    """The sections of one run and what they share (device, FLOP counts, the synthetic movies)."""

    def __init__(self, config: BenchConfig, device: torch.device, info: DeviceInfo, result: dict[str, Any],
                 scratch: Path, log: Callable[[str], None], out: Path | None, started: float):
        self.config, self.device, self.info, self.result = config, device, info, result
        self.scratch, self.log, self.out, self.started = scratch, log, out, started
        self.flops = FlopCache()
        self._movies: list[Movie] | None = None

    def save(self) -> None:
        """Write the JSON as it stands, complete with comparisons and targets (a killed run keeps it)."""
        add_comparisons(self.result)
        self.result["targets"] = evaluate_targets(self.result)
        self.result["wall_time_s"] = time.perf_counter() - self.started
        if self.out is not None:
            write_json(self.out, self.result)

    # ------------------------------------------------------------------ helpers

    def overrides(self, model: str) -> Overrides:
        parts = (*default_config(model, self.config.size).modalities, "fusion")
        return tuple(dict(self.config.overrides_for(model, parts)).items())

    def guarded(self, what: str, section: str, run: Callable[[], dict[str, Any] | None]) -> None:
        """Run one measurement; an exception becomes an entry of "errors" and the run goes on."""
        try:
            entry = run()
        except Exception as error:  # noqa: BLE001 - a benchmark reports every failure and carries on
            message = f"{type(error).__name__}: {error}".splitlines()[0][:500]
            self.result["errors"].append({"section": section, "name": what, "error": message,
                                          "traceback": traceback.format_exc()[-4000:]})
            self.log(f"[bench]   {what}: FAILED: {message}")
            entry = None
        finally:
            gc.collect()  # the case's model and optimizer go now, not whenever the collector would run
            if self.device.type == "cuda":
                torch.cuda.empty_cache()  # each case starts from the same, unfragmented GPU memory
        if entry is not None:
            self.result["cases" if section in ("train", "extract", "compile") else section].append(entry)
            self.log(f"[bench]   {_one_line(entry)}")

    def case(self, section: str, model: str, task: str, techniques, modality: str | None = None) -> None:
        config = self.config
        shape = config.train_shape if task == "train" else config.extract_shape

        def measure() -> dict[str, Any]:
            case = Case(model=model, task=task, shape=shape, techniques=techniques, size=config.size,
                        overrides=self.overrides(model), modality=modality)
            return run_case(case, self.device, self.info, self.flops,
                            warmup=config.warmup_steps, steps=config.timed_steps).to_dict()

        label = f"{task} {model}" + (f" ({modality})" if modality else "")
        self.guarded(f"{label} [{techniques.label}]", section, measure)

    def movies(self) -> list[Movie]:
        """Synthetic movies (and stand-in text backbones trained on their plots, for the full form)."""
        if self._movies is None:
            config = self.config
            needed = max(config.loader_movies,
                         (config.e2e_warmup_steps + config.e2e_steps) * config.e2e_batch_size,
                         config.e2e_extract_batches * config.e2e_extract_batch_size)
            self._movies = write_synthetic_movies(
                self.scratch / "movies", SyntheticMoviesConfig(movies=needed, posters=config.loader_posters))
            if config.size == "full" and PRETRAINED_DIR_VARIABLE not in os.environ:
                plots = [movie.plot for movie in self._movies[:2000]]
                use_pretrained_dir(write_standins(self.scratch / "pretrained", plots))
                self.result["standins"] = ("bert-base-uncased and roberta-base: published architectures with "
                                           "tokenizers trained on the synthetic plots (no weights)")
        return self._movies

    @property
    def cleaning(self):
        return CLEAN if self.config.text_cleaning == "clean" else RAW

    # ------------------------------------------------------------------ sections

    def train(self) -> None:
        config = self.config
        for techniques in config.ablations:
            self.case("train", config.ablation_model, "train", techniques)
        if config.channels_last_model:
            for channels_last in (False, True):
                self.case("train", config.channels_last_model, "train", BEST_EAGER.with_(channels_last=channels_last))
        for model in config.train_models:
            if model != config.channels_last_model:
                self.case("train", model, "train", BEST_EAGER)

    def extract(self) -> None:
        for model, modality in self.config.extract_models:
            self.case("extract", model, "extract", BEST_EAGER, modality)

    def compile(self) -> None:
        self.case("compile", self.config.ablation_model, "train", BEST_EAGER.with_(compile=True))

    def loader(self) -> None:
        config = self.config
        movies = self.movies()[:config.loader_movies]
        posters = [movie.poster for movie in movies]
        stats = ImageTransformConfig(size=config.train_shape.image_size)
        transforms = {"decode_resize": build_image_transform(stats, train=False),
                      "decode_augment": build_image_transform(stats, train=True)}
        for workers in sorted({0, config.loader_workers}):
            pin = self.device.type == "cuda" and workers > 0
            settings = LoaderSettings(config.loader_batch_size, workers, pin_memory=pin)
            files = posters if workers else posters[:config.loader_plain_movies]
            self.guarded(f"decode ({workers} workers)", "loader", lambda s=settings, f=files: measure_loader(
                "decode", make_loader(PosterDecodes(f), s), s).to_dict())
            for stage, transform in transforms.items():
                self.guarded(f"{stage} ({workers} workers)", "loader", lambda s=settings, st=stage, t=transform, f=files:
                             measure_loader(st, make_loader(PosterTensors(f, t), s), s).to_dict())

    def end_to_end(self) -> None:
        config = self.config
        movies = self.movies()
        pin = self.device.type == "cuda"
        fast = LoaderSettings(config.e2e_batch_size, config.loader_workers, pin_memory=pin)
        plain = LoaderSettings(config.e2e_batch_size, 0, pin_memory=False)
        spec = ModelSpec(config.e2e_model, config.size, self.overrides(config.e2e_model) + config.e2e_overrides)
        runs = [(plain, PLAIN, False, config.e2e_plain_warmup_steps, config.e2e_plain_steps),
                (fast, BEST_EAGER, False, config.e2e_warmup_steps, config.e2e_steps),
                (fast, BEST_EAGER, True, config.e2e_warmup_steps, config.e2e_steps)]
        for settings, techniques, grouped, warmup, steps in runs:
            self.guarded(f"train {spec.name} real loader ({settings.workers} workers, grouped={grouped})",
                         "end_to_end", lambda s=settings, t=techniques, g=grouped, w=warmup, n=steps: train_with_loader(
                             spec, movies, techniques=t, settings=s, group_by_length=g, cleaning=self.cleaning,
                             warmup=w, steps=n, device=self.device, info=self.info))
        extract_movies = movies[:config.e2e_extract_batches * config.e2e_extract_batch_size]
        extract_settings = replace(fast, batch_size=config.e2e_extract_batch_size)
        for model, modality in config.extract_models:
            model_spec = ModelSpec(model, config.size, self.overrides(model))
            self.guarded(f"extract {model} real loader", "end_to_end", lambda m=model_spec, mo=modality:
                         extract_with_loader(m, mo, extract_movies, techniques=BEST_EAGER, settings=extract_settings,
                                             sort_by_length=True, cleaning=self.cleaning, device=self.device))

    def detectors(self) -> None:
        config = self.config
        self.guarded("frcnn", "detectors", lambda: frcnn_throughput(
            config.size, batch_size=config.detector_batch_size, image_size=config.detector_image_size,
            warmup=config.warmup_steps, steps=config.timed_steps, device=self.device))
        self.result["detectors"].append(yolo_status())


def _software() -> dict[str, Any]:
    versions: dict[str, Any] = {"python": platform.python_version()}
    for package in SOFTWARE:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    versions["cuda"] = torch.version.cuda
    versions["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return versions


def _one_line(entry: dict[str, Any]) -> str:
    rate = next((f"{entry[k]:.1f} {k.removesuffix('_per_s')}/s" for k in
                 ("samples_per_s", "movies_per_s", "items_per_s", "posters_per_s") if k in entry), "")
    mfu = f", MFU {entry['mfu']:.1%}" if entry.get("mfu") is not None else ""
    name = entry.get("name") or entry.get("stage")
    return f"{name} [{entry.get('variant', '')}]: {rate}{mfu}"


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write `payload` as indented JSON via a temporary file and a rename (never a half-written file)."""
    write_text_atomic(path, json.dumps(payload, indent=2, default=str) + "\n")
