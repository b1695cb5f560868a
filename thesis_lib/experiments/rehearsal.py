"""A rehearsal of the full profile on CPU: every path a real full-profile run takes, run once before GPU-hours.

    thesis run --profile full --rehearse      # every run of the grid into runs-rehearsal/ (finished ones skipped)
    thesis book --profile full --rehearse     # the full-profile book from those runs, a banner on every page
    make book PROFILE=full REHEARSE=1         # both, in that order

Every run of the profile (all models, ablations, seeds and both splits) at full architecture size (BERT-base,
RoBERTa-base, ResNet-50, ViT-B/16, Faster R-CNN R50-FPN, YOLOv8n; 224 px posters, 512 tokens) reads RANDOM
stand-in weights saved under the real names, in the real formats, where the loaders read them
(`write_rehearsal_standins`), on a small synthetic twin at real poster sizes. What differs from the profile is
`REHEARSAL_CHANGES`, the only place it is stated; the run records keep the profile they ran with
(`"rehearsal": true`), and their backbones say "stand-in".

Its numbers measure nothing: they show that every run trains, evaluates, is recorded and renders.

Stand-ins live in their own cache root (`rehearsal_cache()`, default <project>/.cache/rehearsal), which
`enter_rehearsal` makes this process's THESIS_CACHE (and pretrained folder, Hugging Face, torch hub and
ultralytics homes) for the rehearsal only: a real run reads <cache>/pretrained, <cache>/torch, ... and never
looks there, and its preflight stops on any stand-in it would load. In a rehearsal the preflight reports
the stand-ins as an expected warning instead.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thesis_lib.data.mmimdb import load_release
from thesis_lib.detection import frcnn, yolo
from thesis_lib.detection.config import default_detector_config
from thesis_lib.errors import ThesisError
from thesis_lib.experiments.profile import Profile, ProfileError, profile_from_mapping
from thesis_lib.experiments.weights import PretrainedWeight, profile_weights
from thesis_lib.models.pretrained import pretrained_dir
from thesis_lib.models.standins import write_image_weights, write_text_weights
from thesis_lib.offline import configure_environment
from thesis_lib.paths import cache_dir, project_root

REHEARSAL_CACHE_VARIABLE = "THESIS_REHEARSAL_CACHE"  # overrides <project>/.cache/rehearsal

# What a rehearsal changes in a full-size profile, and nothing else (tests hold it to that). Sized for about 90
# minutes or less on 2 CPU cores (README: measured): one optimizer step of a small batch per run, and a twin
# small enough that every full pass (feature caches, detections, dev and test predictions) stays short: its
# dev and test parts are the evaluation cap. The batch only sizes that step: at the profile's 32 plots of 512
# tokens one BERT-base step took ~100 s here (the text runs took 113-149 s each), at 4 about 1/8.
REHEARSAL_CHANGES: dict[str, Any] = {
    "rehearsal": True,                   # recorded in every run record; the preflight and the book flag it
    "twin_root": "data/twin-rehearsal",  # a small twin at real poster sizes, generated on first use
    "twin_movies": 100,                  # official split 60 / 10 / 30 movies, thesis split 70 / 15 / 15
    "runs_dir": "runs-rehearsal",        # never mixed with the real runs
    "device": "cpu",
    "mixed_precision": "no",             # bf16 autocast is a GPU setting
    "lr_scales": [1.0],                  # one learning-rate trial
    "epochs": 1,
    "max_steps_per_epoch": 1,            # one optimizer step per run
    "batch_size": 4,                     # of 4 movies (also the evaluation batch): the code path is the same
}
STANDIN_NOTE = "rehearsal stand-in: {name} at full size with random weights; numbers made with it are not results"


class RehearsalError(ThesisError):
    """A profile that cannot be rehearsed, or stand-ins that could not be written."""


def rehearsal_profile(profile: Profile, overrides: Mapping[str, Any] | None = None) -> Profile:
    """`profile` with `REHEARSAL_CHANGES`, then `overrides` (`thesis run KEY=VALUE`: they win, so that e.g.
    `seeds=0 splits=thesis` rehearses a part). A full-size profile only: the smoke profile is small already."""
    if profile.model_size != "full":
        raise RehearsalError(f"--rehearse rehearses a full-size profile; {profile.profile!r} has model_size "
                             f"{profile.model_size!r} (run it as it is: it is small already)")
    try:
        return profile_from_mapping(profile.to_dict() | REHEARSAL_CHANGES, overrides=overrides,
                                    source=f"the {profile.profile} profile's rehearsal")
    except ProfileError as error:
        raise RehearsalError(str(error)) from None


def rehearsal_parameters() -> list[tuple[str, str]]:
    """`REHEARSAL_CHANGES` as `-p NAME VALUE` pairs for the book's chapters, in the text `values.typed_value`
    reads back to the same values (words as they are, anything else as JSON, which is YAML)."""
    return [(key, value if isinstance(value, str) else json.dumps(value)) for key, value in REHEARSAL_CHANGES.items()]


def rehearsal_cache() -> Path:
    """The rehearsal's own cache root: $THESIS_REHEARSAL_CACHE, else <project>/.cache/rehearsal."""
    if env := os.environ.get(REHEARSAL_CACHE_VARIABLE):
        return Path(env).expanduser().resolve()
    return project_root() / ".cache" / "rehearsal"


def rehearsal_environment() -> dict[str, str]:
    """The environment of a rehearsal: every cache and weight folder inside `rehearsal_cache()`, no downloads."""
    cache = rehearsal_cache()
    return {
        "THESIS_CACHE": str(cache),
        "THESIS_PRETRAINED_DIR": str(cache / "pretrained"),
        "HF_HOME": str(cache / "huggingface"),
        "TORCH_HOME": str(cache / "torch"),
        "YOLO_CONFIG_DIR": str(cache / "ultralytics"),
        "THESIS_ONLINE": "0",  # `thesis weights fetch` would replace the stand-ins: not here
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "YOLO_OFFLINE": "1",
    }


def enter_rehearsal() -> dict[str, str]:
    """Point this process, and every process it starts (loader workers, papermill kernels), at the rehearsal's
    cache root; returns what it set. Call it before anything loads a weight."""
    environment = rehearsal_environment()
    os.environ.update(environment)
    configure_environment()  # a huggingface_hub imported earlier is switched offline too
    return environment


def in_rehearsal() -> bool:
    """Whether this process reads the rehearsal's cache root (`enter_rehearsal` was called)."""
    return cache_dir() == rehearsal_cache()


# ------------------------------------------------------------------------------------------- stand-ins


@dataclass
class StandinsReport:
    """What `write_rehearsal_standins` found and did, one entry per pretrained weight of the profile."""

    written: list[tuple[str, Path]] = field(default_factory=list)   # (name, where)
    present: list[tuple[str, Path]] = field(default_factory=list)   # stand-ins written by an earlier rehearsal
    genuine: list[tuple[str, Path]] = field(default_factory=list)   # real weights someone put in the rehearsal cache
    seconds: float = 0.0

    def lines(self) -> list[str]:
        lines = [f"rehearsal: wrote the stand-in {name} -> {path}" for name, path in self.written]
        if self.present:
            lines.append(f"rehearsal: {len(self.present)} stand-in(s) already written "
                         f"({', '.join(name for name, _ in self.present)})")
        lines += [f"rehearsal: {name} at {path} is a genuine weight, not a stand-in: its runs record it as "
                  "pretrained" for name, path in self.genuine]
        return lines


def write_rehearsal_standins(profile: Profile, release_root: Path, models: Sequence[str] | None = None) -> StandinsReport:
    """Write a full-size random stand-in for every pretrained weight `profile`'s runs (of `models` and the runs
    they reuse, when given) load that is missing,
    where and as its loader reads it (see `models.standins`, `detection.frcnn`, `detection.yolo`), each
    marked as a stand-in. The roberta-base tokenizer is trained on the release's plots. Only inside the
    rehearsal's cache root (`enter_rehearsal` first)."""
    if not in_rehearsal():
        raise RehearsalError(f"stand-ins are written only into the rehearsal's cache root {rehearsal_cache()}, "
                             f"not {cache_dir()}: call enter_rehearsal() first")
    started = time.perf_counter()
    report = StandinsReport()
    plots: list[str] | None = None
    for weight in profile_weights(profile, models):
        if weight.status == "stand-in":
            report.present.append((weight.name, weight.path))
            continue
        if weight.status == "cached":
            report.genuine.append((weight.name, weight.path))
            continue
        if weight.source == "huggingface" and plots is None:
            plots = [movie.plot for movie in load_release(release_root, verify_posters="none").movies.values()]
        report.written.append((weight.name, _write_standin(weight, plots or [])))
    report.seconds = time.perf_counter() - started
    return report


def _write_standin(weight: PretrainedWeight, plots: list[str]) -> Path:
    note = STANDIN_NOTE.format(name=weight.name)
    if weight.source == "huggingface":
        return write_text_weights(pretrained_dir(), weight.name, plots, note)
    if weight.source == "timm":
        return write_image_weights(pretrained_dir(), weight.name, note)
    if weight.source == "torchvision":
        return frcnn.write_coco_standin(note)
    if weight.source == "ultralytics":
        config = dataclasses.replace(default_detector_config("yolo", "full"), coco_model=weight.name)
        return yolo.write_coco_standin(config, note)
    raise RehearsalError(f"no stand-in writer for {weight.name} ({weight.source}): install it ({weight.state.detail})")

