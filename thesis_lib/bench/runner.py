"""Run benchmark sections and write their JSON after every case (atomically).

`run_benchmark(config, out=..., sections=...)` runs the given sections of `config` in `SECTIONS` order in
this process, continuing the JSON at `out` when an earlier process of the same run wrote it (benchmarks/gpu.sh
gives each group of sections its own process and time limit). One failing case (out of memory, a missing
package) is recorded with its error and the run goes on; a case that would start after `time_budget_s` is
recorded as skipped. The JSON's keys are documented in benchmarks/README.md.
"""

from __future__ import annotations

import datetime
import gc
import logging
import os
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from thesis_lib.bench.batches import BatchShape
from thesis_lib.bench.cases import Case, FlopCache, run_case
from thesis_lib.bench.config import SECTIONS, TEXT_IMAGE, BenchConfig, Overrides
from thesis_lib.bench.detectors import frcnn_throughput, yolo_status
from thesis_lib.bench.end_to_end import cached_fusion, extract_features, random_detection_table, train_epoch
from thesis_lib.bench.gpu_paths import (
    check_attention,
    check_detector,
    check_device,
    check_extraction,
    check_gradcam,
    sample_posters,
)
from thesis_lib.bench.grid import available_packages
from thesis_lib.bench.hardware import describe_device, machine_record
from thesis_lib.bench.loading import LoaderSettings, PosterDecodes, PosterTensors, make_loader, measure_loader
from thesis_lib.bench.movies import SyntheticMoviesConfig, plot_token_lengths, write_synthetic_movies
from thesis_lib.bench.product import Product
from thesis_lib.bench.report import add_comparisons, evaluate_targets
from thesis_lib.bench.results import open_result, save_result
from thesis_lib.bench.techniques import Techniques
from thesis_lib.bench.timing import matmul_peak
from thesis_lib.data.images import ImageTransformConfig, build_image_transform
from thesis_lib.data.mmimdb import Movie
from thesis_lib.detection import DetectorConfig
from thesis_lib.experiments.pipeline import BuiltModel, image_transforms, multimodal_collator, raw_dataset
from thesis_lib.machine import load_average
from thesis_lib.models.standins import PRETRAINED_DIR_VARIABLE, use_pretrained_dir, write_standins
from thesis_lib.train.loaders import SeededLoader, item_lengths

_log = logging.getLogger(__name__)

TOKENIZER_MOVIES = 512  # plots a random text backbone's tokenizer is trained on (a run trains it on its train part)

CASE_LISTS = {"train": "cases", "compile": "cases", "extract": "extract", "cached_fusion": "cached_fusion",
              "loader": "loader", "end_to_end": "end_to_end", "gpu_paths": "gpu_paths", "detectors": "detectors",
              "no_workers": "loader"}


def run_benchmark(config: BenchConfig, *, out: Path | None, sections: Sequence[str] | None = None,
                  workdir: Path | None = None, device: torch.device | None = None, peak_tflops: float | None = None,
                  log: Callable[[str], None] = _log.info, note: str | None = None) -> dict[str, Any]:
    """Run `sections` (default: the config's) of `config`; returns the result, also written to `out` after
    every case. `note`: a remark kept in the JSON (why the run was made, how loaded the machine was)."""
    wanted = [name for name in SECTIONS if name in (config.sections if sections is None else sections)]
    started = time.perf_counter()
    result = open_result(out, config.profile, note)
    product = Product.load(config, device)
    if product.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest convolution
    # The measured peak is a GPU's: a CPU's bf16 matmul says nothing about its float32 work.
    measured = (result.get("matmul") or {}).get("tflops") if product.device.type == "cuda" else None
    result |= {"device": describe_device(product.device, peak_tflops, measured and measured * 1e12).to_dict(),
               "config": config.to_dict(), "product": product.settings(), "packages": available_packages()}
    process = {"sections": wanted, "pid": os.getpid(), "load_average_before": load_average(),
               "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    result["processes"].append(process)
    pretrained_before = os.environ.get(PRETRAINED_DIR_VARIABLE)  # stand-ins point it into the scratch folder
    try:
        with tempfile.TemporaryDirectory(prefix="thesis-bench-", dir=workdir) as scratch:
            state = _RunState(config, product, result, Path(scratch), log, out, started, peak_tflops, workdir)
            for name in wanted:
                log(f"[bench] {name} ...")
                state.section(name)
                process |= {"wall_s": time.perf_counter() - started, "load_average_after": load_average()}
                state.save()
    finally:
        if pretrained_before is None:
            os.environ.pop(PRETRAINED_DIR_VARIABLE, None)
        else:
            os.environ[PRETRAINED_DIR_VARIABLE] = pretrained_before
    process |= {"wall_s": time.perf_counter() - started, "load_average_after": load_average()}
    state.save()
    return result


class _RunState:
    """The sections of one process and what they share (product, FLOP counts, synthetic movies)."""

    def __init__(self, config: BenchConfig, product: Product, result: dict[str, Any], scratch: Path,
                 log: Callable[[str], None], out: Path | None, started: float, peak_tflops: float | None,
                 workdir: Path | None = None):
        self.config, self.product, self.result = config, product, result
        self.scratch, self.log, self.out, self.started = scratch, log, out, started
        self.shared = workdir or scratch  # what the processes of one gpu.sh run share (the stand-ins)
        self.peak_tflops = peak_tflops
        self.flops = FlopCache()
        self._movies: list[Movie] | None = None

    @property
    def device(self) -> torch.device:
        return self.product.device

    @property
    def info(self):
        return describe_device(self.device, self.peak_tflops, self.result["device"].get("measured_peak_flops"))

    def save(self) -> None:
        """Write the JSON as it stands, complete with comparisons and targets (a killed run keeps it)."""
        add_comparisons(self.result)
        self.result["targets"] = evaluate_targets(self.result)
        self.result["wall_time_s"] = sum(p.get("wall_s", 0.0) for p in self.result["processes"])
        save_result(self.out, self.result)

    # ------------------------------------------------------------------ helpers

    def guarded(self, what: str, section: str, run: Callable[[], dict[str, Any] | None]) -> dict[str, Any] | None:
        """Run one measurement unless the time budget is spent; an exception becomes an entry of "errors" and
        the run goes on; the JSON is written after it either way."""
        elapsed = time.perf_counter() - self.started
        if elapsed > self.config.time_budget_s:
            reason = f"time budget of {self.config.time_budget_s:.0f} s spent ({elapsed:.0f} s)"
            self.result["skipped"].append({"section": section, "name": what, "reason": reason})
            self.log(f"[bench]   {what}: skipped ({reason})")
            self.save()
            return None
        load = load_average()
        entry = None
        try:
            entry = run()
        except Exception as error:  # noqa: BLE001 - a benchmark reports every failure and carries on
            message = f"{type(error).__name__}: {error}".splitlines()[0][:500]
            self.result["errors"].append({"section": section, "name": what, "error": message,
                                          "traceback": traceback.format_exc()[-4000:]})
            self.log(f"[bench]   {what}: FAILED: {message}")
        finally:
            gc.collect()  # the case's model and optimizer go now, not whenever the collector would run
            if self.device.type == "cuda":
                torch.cuda.empty_cache()  # each case starts from the same, unfragmented GPU memory
        if entry is not None:
            entry |= {"load_average_before": load, "load_average_after": load_average()}
            if section in CASE_LISTS:  # the machine section keeps its entries under their own keys
                self.result[CASE_LISTS[section]].append(entry)
            self.log(f"[bench]   {what}: done")
        self.save()
        return entry

    def movies(self, count: int) -> list[Movie]:
        """The first `count` synthetic movies (and stand-in text backbones trained on their plots, full size)."""
        if self._movies is None or len(self._movies) < count:
            config = self.config
            needed = max(count, config.extract_movies, config.loader_movies, config.no_workers_movies)
            self._movies = write_synthetic_movies(
                self.scratch / "movies", SyntheticMoviesConfig(movies=needed, posters=config.posters))
            if self.product.profile.model_size == "full" and PRETRAINED_DIR_VARIABLE not in os.environ:
                folder = self.shared / "standins"  # written by the run's first process, read by the others
                if not (folder / "done").is_file():
                    write_standins(folder, [movie.plot for movie in self._movies[:2000]])
                    (folder / "done").touch()
                use_pretrained_dir(folder)
                self.result["standins"] = ("bert-base-uncased and roberta-base: published architectures with "
                                           "tokenizers trained on the synthetic plots (no weights)")
        return self._movies[:count]

    def shape(self) -> BatchShape:
        profile = self.product.profile
        return BatchShape(profile.batch_size, profile.text_max_length, profile.image_size, DetectorConfig().max_regions)

    def case(self, section: str, model: str, techniques: Techniques, role: str, overrides: Overrides = (),
             lengths: tuple[int, ...] | None = None, label: str = "") -> None:
        config = self.config
        case = Case(model=model, shape=self.shape(), techniques=techniques, overrides=overrides, lengths=lengths,
                    label=label)

        def measure() -> dict[str, Any]:
            entry = run_case(case, self.product, self.info, self.flops, self.movies(TOKENIZER_MOVIES),
                             warmup=config.warmup_steps, steps=config.timed_steps,
                             compile_backend=config.compile_backend).to_dict()
            return entry | {"role": role}

        self.guarded(f"{case.name} [{techniques.label}]", section, measure)

    def built(self, model: str, overrides: Overrides = (), backbones: str = "finetune") -> BuiltModel:
        """`model` as the grid builds it; a random text backbone's tokenizer trained on synthetic plots."""
        return self.product.build(self.product.model_config(model, overrides, backbones), self.movies(TOKENIZER_MOVIES))

    def section(self, name: str) -> None:
        """Run one section; a failure outside its cases (building the shared model) is recorded, not raised."""
        try:
            getattr(self, name)()
        except Exception as error:  # noqa: BLE001 - the next section still runs
            message = f"{type(error).__name__}: {error}".splitlines()[0][:500]
            self.result["errors"].append({"section": name, "name": f"section {name}", "error": message,
                                          "traceback": traceback.format_exc()[-4000:]})
            self.log(f"[bench] {name}: FAILED: {message}")

    # ------------------------------------------------------------------ sections

    def machine(self) -> None:
        self.result["machine"] = machine_record(self.device)
        matmul = self.guarded("bf16 matmul peak", "machine", lambda: matmul_peak(self.device, self.config.matmul_size))
        if matmul is not None:
            self.result["matmul"] = matmul
            if self.device.type == "cuda":  # a CPU's bf16 matmul is no peak for its float32 work
                self.result["device"]["measured_peak_flops"] = matmul["tflops"] * 1e12

    def train(self) -> None:
        """The eager fine-tuning steps with the product's techniques first, then the comparisons."""
        config, product = self.config, self.product
        best = product.techniques
        self.case("train", config.ablation_model, best, "product", TEXT_IMAGE)
        for model in config.train_models:
            self.case("train", model, best, "product")
        for techniques in config.ablations:
            if techniques != best:
                self.case("train", config.ablation_model, techniques, "comparison", TEXT_IMAGE)
        if config.channels_last_model:
            self.case("train", config.channels_last_model, best, "product")
            self.case("train", config.channels_last_model, best.with_(channels_last=not best.channels_last),
                      "comparison")

    def compile(self) -> None:
        """Eager and compiled on the same padded batch (the same attention kernel, see `cases`)."""
        config, product = self.config, self.product
        shape = self.shape()
        lengths = plot_token_lengths(shape.batch_size, shape.text_length, seed=1)
        # At least one plot shorter than the width: a batch with padding (at 512 tokens nearly every batch has it).
        lengths = tuple(lengths[:-1] + [min(lengths[-1], shape.text_length - 1)])
        label = f"train {config.ablation_model} (padded batch)"
        self.case("compile", config.ablation_model, product.techniques, "product", TEXT_IMAGE, lengths, label)
        self.case("compile", config.ablation_model, product.techniques.with_(compile=True), "comparison", TEXT_IMAGE,
                  lengths, label)

    def extract(self) -> None:
        """The feature-cache pass of the default fusion's encoders, then that fusion trained on the caches."""
        config = self.config
        movies = self.movies(config.extract_movies)
        fusion = self.built(config.cached_fusion_model, backbones="frozen")
        paths = {}
        for modality in ("text", "image"):
            entry = self.guarded(f"extract {modality}", "extract", lambda m=modality: self._extract(fusion, m, movies, paths))
            if entry is None:
                return
        self.guarded(f"train {config.cached_fusion_model} on cached features", "cached_fusion",
                     lambda: self._cached(fusion, paths, movies))

    def _extract(self, fusion: BuiltModel, modality: str, movies: list[Movie], paths: dict[str, Path]) -> dict[str, Any]:
        entry, paths[modality] = extract_features(self.product, fusion, modality, movies, self.scratch / "cache")
        return entry

    def _cached(self, fusion: BuiltModel, paths: dict[str, Path], movies: list[Movie]) -> dict[str, Any]:
        objects = None
        if "objects" in fusion.model.encoders:
            objects = random_detection_table([m.id for m in movies], fusion.config.objects.num_classes,
                                             DetectorConfig().max_regions)
        trainable, dataset, collate = cached_fusion(fusion, paths, objects)
        parts = "+".join(fusion.model.modalities)
        return train_epoch(self.product, trainable, fusion.model, dataset, collate,
                           warmup=self.config.cached_warmup_steps, steps=self.config.cached_steps,
                           scratch=self.scratch / "cached", info=self.info, text_flops=False,
                           name=f"train {fusion.config.name} ({parts}) on cached features")

    def loader(self) -> None:
        """The real training loader alone, the poster stages, then fine-tuning fed by the loader."""
        config = self.config
        first, overrides = config.e2e_models[0]
        built = self.built(first, overrides)
        workers = self.product.workers
        self.guarded(f"training loader ({workers} workers)", "loader",
                     lambda: self._training_loader(built, self.movies(config.loader_movies), workers))
        self._poster_stages(workers, self.movies(config.loader_movies))
        for index, (model, overrides) in enumerate(config.e2e_models):
            self.guarded(f"fine-tune {model} with the real loader", "end_to_end",
                         lambda b=(built if index == 0 else None), m=model, o=overrides: self._fine_tune(b, m, o))

    def _training_loader(self, built: BuiltModel, movies: list[Movie], workers: int) -> dict[str, Any]:
        profile = self.product.profile
        augment = image_transforms(built.model, profile.image_augment)[True]
        dataset = raw_dataset(movies, [m for m in ("image", "text") if m in built.model.encoders], built, augment)
        lengths = item_lengths(dataset) if profile.group_by_length else None
        source = SeededLoader(dataset, batch_size=profile.batch_size, shuffle=True, seed=0, num_workers=workers,
                              collate_fn=multimodal_collator(built), lengths=lengths)
        settings = LoaderSettings(profile.batch_size, workers, pin_memory=source.loader.pin_memory)
        source.set_epoch(0)
        throughput = measure_loader("training_loader", source.loader, settings).to_dict()
        return throughput | {"persistent_workers": source.loader.persistent_workers, "group_by_length": bool(lengths),
                             "what": "SeededLoader over MMIMDbDataset + MultimodalCollator (decode, augmentation, "
                                     "cleaning, tokenisation), as fit builds it"}

    def _poster_stages(self, workers: int, movies: list[Movie]) -> None:
        profile = self.product.profile
        posters = [movie.poster for movie in movies]
        stats = ImageTransformConfig(size=profile.image_size)
        transforms = {"decode_resize": build_image_transform(stats, train=False),
                      "decode_augment": build_image_transform(stats, train=True)}
        settings = LoaderSettings(profile.batch_size, workers, pin_memory=self.device.type == "cuda" and workers > 0)
        section = "loader" if workers else "no_workers"
        self.guarded(f"decode ({workers} workers)", section, lambda: measure_loader(
            "decode", make_loader(PosterDecodes(posters), settings), settings).to_dict())
        for stage, transform in transforms.items():
            self.guarded(f"{stage} ({workers} workers)", section, lambda st=stage, t=transform: measure_loader(
                st, make_loader(PosterTensors(posters, t), settings), settings).to_dict())

    def _fine_tune(self, built: BuiltModel | None, model: str, overrides: Overrides) -> dict[str, Any]:
        config, profile = self.config, self.product.profile
        movies = self.movies((config.e2e_warmup_steps + config.e2e_steps) * profile.batch_size)
        built = built or self.built(model, overrides)
        modalities = [m for m in ("image", "text") if m in built.model.encoders]
        augment = image_transforms(built.model, profile.image_augment)[True] if "image" in modalities else None
        dataset = raw_dataset(movies, modalities, built, augment)
        parts = "+".join(built.model.modalities)
        return train_epoch(self.product, built.model, built.model, dataset, multimodal_collator(built),
                           warmup=config.e2e_warmup_steps, steps=config.e2e_steps, scratch=self.scratch / "fine-tune",
                           info=self.info, text_flops=True,
                           name=f"fine-tune {model} ({parts}) with the real loader")

    def gpu_paths(self) -> None:
        product, movies = self.product, self.movies(8)
        self.guarded("device", "gpu_paths", lambda: check_device(product))
        posters = sample_posters(self.config.check_posters)
        for name in self.config.check_detectors:
            self.guarded(f"detect {name}", "gpu_paths", lambda n=name: check_detector(n, product, posters))
        self.guarded("extract image features", "gpu_paths",
                     lambda: check_extraction(product, movies, self.scratch / "gpu-check-cache"))
        self.guarded("explain attention", "gpu_paths", lambda: check_attention(product, movies))
        self.guarded("explain Grad-CAM", "gpu_paths", lambda: check_gradcam(product, movies))

    def detectors(self) -> None:
        config = self.config
        self.guarded("frcnn", "detectors", lambda: frcnn_throughput(
            self.product.profile.model_size, batch_size=config.detector_batch_size,
            image_size=config.detector_image_size, warmup=config.warmup_steps, steps=config.timed_steps,
            device=self.device))
        self.guarded("yolo", "detectors", yolo_status)

    def no_workers(self) -> None:
        """The 0-worker loader versions (the main process decodes: its torch threads compete with the decode)."""
        config = self.config
        movies = self.movies(config.no_workers_movies)
        first, overrides = config.e2e_models[0]
        built = self.built(first, overrides)
        self.guarded("training loader (0 workers)", "no_workers", lambda: self._training_loader(built, movies, 0) | {
            "torch_threads": torch.get_num_threads()})
        self._poster_stages(0, movies)

