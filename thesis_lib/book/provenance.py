"""What produced a build of the book: profile, data, weights, code; and the words pages use to say so.

Two audiences read these:
- the front page, which states the profile, data, weights and commit of the build (`front_page_block`);
- every figure caption, which names its data (and, where it matters, its weights) through
  `DataDescription.caption` and `describe_weights`, glued into the caption by the notebook.

On the synthetic twin every page also carries a banner (`TWIN_BANNER`): results on synthetic data
validate the pipeline, they are not thesis evidence. A rehearsal's build (`experiments.rehearsal`: every run
of a full-size profile on random stand-in weights) carries `REHEARSAL_BANNER` instead, which says more.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from thesis_lib.data.mmimdb import NotAReleaseError, Release, load_release
from thesis_lib.data.twin.generate import TRUTH_FILE
from thesis_lib.detection import coco_standin
from thesis_lib.detection.config import default_detector_config
from thesis_lib.errors import ThesisError
from thesis_lib.experiments.layout import RunsFolder
from thesis_lib.experiments.profile import Profile
from thesis_lib.experiments.records import iter_records
from thesis_lib.models.registry import default_config, list_models
from thesis_lib.paths import project_root

DataKind = Literal["twin", "mmimdb"]

TWIN_BANNER = (
    "Synthetic data: every number and figure in this build comes from the synthetic MM-IMDb twin. "
    "It validates the pipeline; it is <strong>not thesis evidence</strong>."
)

REHEARSAL_BANNER = (
    "Rehearsal: every number and figure in this build comes from a CPU rehearsal of the full profile, "
    "with <strong>random stand-in weights</strong> saved under the real names, one training step per run "
    "and a small synthetic twin. It shows that every run and chapter works; <strong>no number here is a "
    "result</strong>."
)


@dataclass(frozen=True)
class DataDescription:
    """Which data a page shows, in the words captions and the front page use."""

    kind: DataKind  # "twin" (has twin_truth.json) or "mmimdb" (a real release)
    root: Path  # the release folder (holds split.json and dataset/)
    n_movies: int  # usable movies
    fingerprint: str  # the release's content hash (Release.fingerprint)
    twin_seed: int | None = None  # generator seed (twin only)

    @property
    def short(self) -> str:
        """A few words: "synthetic twin" or "MM-IMDb"."""
        return "synthetic twin" if self.kind == "twin" else "MM-IMDb"

    @property
    def long(self) -> str:
        """One phrase for prose, e.g. "the synthetic MM-IMDb twin (2,000 movies, seed 0)"."""
        if self.kind == "twin":
            return f"the synthetic MM-IMDb twin ({self.n_movies:,} movies, seed {self.twin_seed})"
        return f"the MM-IMDb release ({self.n_movies:,} usable movies)"

    @property
    def caption(self) -> str:
        """The sentence every figure caption ends with: "Data: synthetic twin (2,000 movies, seed 0)."."""
        if self.kind == "twin":
            return f"Data: synthetic twin ({self.n_movies:,} movies, seed {self.twin_seed}), not MM-IMDb."
        return f"Data: MM-IMDb ({self.n_movies:,} usable movies)."

    @property
    def korean(self) -> str:
        """The sentence that ends each chapter's Korean lead: which data, and on the twin that its numbers
        check the pipeline and are no MM-IMDb result."""
        if self.kind == "twin":
            return (f"이 빌드의 데이터는 합성 쌍둥이(영화 {self.n_movies:,}편, 시드 {self.twin_seed})이다. "
                    "여기의 수치는 파이프라인을 검증할 뿐, MM-IMDb의 결과가 아니다.")
        return f"이 빌드의 데이터는 MM-IMDb 공개본(사용 가능한 영화 {self.n_movies:,}편)이다."


class NoDataError(ThesisError, ValueError):
    """The parameters name no release, or name a synthetic twin that was never generated."""


def release_folder(data_root: str | None, twin_root: str | None, root: Path | None = None) -> Path:
    """The release a chapter reads: `data_root`, else the synthetic twin at `twin_root` (the profiles'
    convention; relative paths are taken from `root`, default the project root)."""
    folder = data_root or twin_root
    if not folder:
        raise NoDataError("no data: data_root and twin_root are both unset; pass the MM-IMDb release with "
                          "-p data_root ROOT")
    path = Path(folder).expanduser()
    path = path if path.is_absolute() else (root or project_root()) / path
    if not data_root and not (path / TRUTH_FILE).is_file():
        raise NoDataError(f"the synthetic twin {path} has not been generated: {twin_hint(folder)}")
    return path


def twin_hint(twin_root: str | None) -> str:
    """What to run when a chapter's data is missing (one clause, for the end of an error's one line)."""
    folder = twin_root or "data/twin"
    return (f"generate the twin with `make twin` or `thesis data synth {folder}`, "
            "or give the MM-IMDb release with -p data_root ROOT")


def chapter_release(settings: Profile) -> Release:
    """The release a chapter shows, read as the profile's runs read it (the same plot of each movie); a
    folder that holds no release stops the chapter with one line saying how to make or name one."""
    folder = release_folder(settings.data_root, settings.twin_root)
    try:
        return load_release(folder, plot_choice=settings.plot_choice)
    except NotAReleaseError as error:
        raise NoDataError(f"{error}; {twin_hint(settings.twin_root)}") from None


def describe_release(release: Release) -> DataDescription:
    """Describe a loaded release: a synthetic twin when it holds the generator's twin_truth.json."""
    truth_path = release.root / TRUTH_FILE
    seed = None
    if truth_path.is_file():
        import json

        seed = json.loads(truth_path.read_text(encoding="utf-8")).get("seed")
    return DataDescription(
        kind="twin" if truth_path.is_file() else "mmimdb",
        root=release.root,
        n_movies=len(release.movies),
        fingerprint=release.fingerprint,
        twin_seed=seed,
    )


def describe_data(root: Path | str) -> DataDescription:
    """Describe the release at `root` without decoding posters (fast enough to run before every build)."""
    return describe_release(load_release(root, verify_posters="none"))


def describe_weights(model_size: str) -> str:
    """The backbones and weights the registry's `model_size` recipes use, as one sentence."""
    parts: dict[str, list[str]] = {"text": [], "image": [], "objects": []}
    for name in list_models():
        config = default_config(name, model_size)
        for modality in ("text", "image"):
            part = getattr(config, modality)
            if part is None:
                continue
            blocks = f", {part.depth} blocks" if getattr(part, "depth", None) else ""
            origin = "pretrained" if part.pretrained else "random init"
            if part.backbone == "minilm":
                origin = "pretrained all-MiniLM-L6-v2, packaged"
            entry = f"{part.backbone} ({origin}{blocks})"
            if entry not in parts[modality]:
                parts[modality].append(entry)
        if config.objects is not None:
            entry = _object_source(config.objects.source, model_size)
            if entry not in parts["objects"]:
                parts["objects"].append(entry)
    return (
        f"{model_size} recipes: text {', '.join(parts['text'])}; image {', '.join(parts['image'])}; "
        f"object detections from {', '.join(parts['objects'])}"
    )


def _object_source(source: str, model_size: str) -> str:
    """"yolo (trained on the twin)", "frcnn (COCO-pretrained)", "oracle (the twin's true boxes)"."""
    if source == "oracle":
        return "oracle (the twin's true boxes)"

    config = default_detector_config(source, model_size)
    if config.weights == "twin":
        return f"{source} (trained on the twin)"
    return f"{source} ({'COCO-pretrained' if coco_standin(config) is None else 'a random COCO stand-in'})"


@dataclass(frozen=True)
class RunsSummary:
    """The finished runs a build rendered, from their records: how many, their own wall time, when made."""

    count: int
    wall_seconds: float  # the sum of the runs' wall times (each run's own training and evaluation)
    first: str  # the earliest record's creation time, as recorded
    last: str  # the latest


def runs_summary(runs_dir: Path) -> RunsSummary | None:
    """What the records under `runs_dir` say (None: no finished run there)."""
    if not Path(runs_dir).is_dir():
        return None
    records = [record for _, record in iter_records(RunsFolder(Path(runs_dir)), split=None)]
    if not records:
        return None
    created = sorted(str(record.get("created", "")) for record in records)
    return RunsSummary(len(records), sum(float(record.get("wall_time_s", 0.0)) for record in records),
                       created[0], created[-1])


@dataclass(frozen=True)
class BuildProvenance:
    """Everything the front page states about one build (also written as provenance.json)."""

    profile: str  # profile name or file
    profile_file: str | None  # the parameter file used (None: the notebooks' own defaults)
    overrides: dict[str, Any]  # `-p name value` given on the command line
    data: DataDescription | None  # None when no parameter names a data root
    weights: str  # see describe_weights
    commit: str | None  # None outside a git checkout
    dirty: bool | None
    version: str  # thesis_lib.__version__
    built_at: str  # UTC, ISO 8601, minutes
    chapter_seconds: dict[str, float] = field(default_factory=dict)  # chapter -> papermill wall time (this build's)
    rehearsal: bool = False  # the runs are a rehearsal's (random stand-in weights, `experiments.rehearsal`)
    reused: list[str] = field(default_factory=list)  # chapters whose executed copy was reused (`book.reuse`)
    runs_dir: str | None = None  # the runs folder the chapters read (None: no chapter reads runs)
    runs: RunsSummary | None = None  # the finished runs in it, when a chapter read them

    @property
    def is_twin(self) -> bool:
        return self.data is not None and self.data.kind == "twin"

    def to_json(self) -> dict[str, Any]:
        data = None
        if self.data is not None:
            data = {"kind": self.data.kind, "root": str(self.data.root), "n_movies": self.data.n_movies,
                    "fingerprint": self.data.fingerprint, "twin_seed": self.data.twin_seed}
        return {"profile": self.profile, "profile_file": self.profile_file, "overrides": self.overrides,
                "data": data, "weights": self.weights, "commit": self.commit, "dirty": self.dirty,
                "version": self.version, "built_at": self.built_at, "chapter_seconds": self.chapter_seconds,
                "rehearsal": self.rehearsal, "reused": self.reused, "runs_dir": self.runs_dir,
                "runs": None if self.runs is None else dataclasses.asdict(self.runs)}


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def front_page_block(provenance: BuildProvenance, root: Path) -> str:
    """The "What produced this build" admonition for the front page (MyST markdown)."""
    profile = f"`{provenance.profile}`"
    if provenance.profile_file:
        profile += f" ({_relative(Path(provenance.profile_file), root)})"
    else:
        profile += " (no parameter file: each chapter's own defaults, which are the smoke profile)"
    if provenance.overrides:
        profile += "; overrides " + ", ".join(f"`{k}={v!r}`" for k, v in provenance.overrides.items())
    data = "none named by the parameters"
    if provenance.data is not None:
        data = (f"{provenance.data.long} at `{_relative(provenance.data.root, root)}`, "
                f"content fingerprint `{provenance.data.fingerprint[:12]}`")
    commit = "unknown (not a git checkout)"
    if provenance.commit is not None:
        commit = f"`{provenance.commit[:12]}`" + (" with uncommitted changes" if provenance.dirty else "")
    chapters = ", ".join(f"{name} ({seconds:.0f} s)" for name, seconds in provenance.chapter_seconds.items())
    reused = ""
    if provenance.reused:
        reused = (f"; reused from an earlier build, their code, parameters, data, runs, library and lock unchanged: "
                  f"{', '.join(provenance.reused)}")
    weights = provenance.weights
    if provenance.rehearsal:
        weights += ("; **in this rehearsal every pretrained weight is a random stand-in** saved under its real name "
                    "(the run records say stand-in)")
    lines = [
        ":::{admonition} What produced this build",
        f":class: {'warning' if provenance.is_twin or provenance.rehearsal else 'note'}",
        f"- **Profile:** {profile}",
        f"- **Data:** {data}",
        f"- **Weights:** {weights}",
        f"- **Code:** thesis_lib {provenance.version}, commit {commit}",
        f"- **Built:** {provenance.built_at}; chapters run with papermill: {chapters or 'none'}{reused}",
    ]
    if provenance.runs is not None:
        runs = provenance.runs
        lines.append(f"- **Runs:** {runs.count} finished runs in `{_relative(Path(provenance.runs_dir or '.'), root)}`, "
                     f"made {runs.first} to {runs.last}; their own training and evaluation took "
                     f"{runs.wall_seconds / 60:.1f} min of wall time, not counted in the chapter times above")
    if provenance.rehearsal:
        lines += ["", "This build is a **rehearsal**: every run of the profile at full architecture size on CPU, "
                      "with random stand-in weights, one training step per run and a small synthetic twin. It shows "
                      "that every run trains, is recorded and renders; **no number in it is a result**."]
    elif provenance.is_twin:
        lines += ["", "Every number and figure of this build comes from the synthetic twin: it shows that the "
                      "pipeline works end to end, and it is **not thesis evidence**. The full profile reruns the "
                      "same chapters on the real MM-IMDb release with pretrained weights."]
    return "\n".join([*lines, ":::"])


def book_config(base: Mapping[str, Any], provenance: BuildProvenance, root: Path) -> dict[str, Any]:
    """The Jupyter Book config of one build: `base` (the repository's _config.yml) with the front-page
    block as the `build_provenance` substitution and the banner on every page: the rehearsal's in a
    rehearsal, else the twin's on the twin, else none."""
    import copy

    config = copy.deepcopy(dict(base))
    parse = config.setdefault("parse", {})
    parse.setdefault("myst_substitutions", {})["build_provenance"] = front_page_block(provenance, root)
    banner = REHEARSAL_BANNER if provenance.rehearsal else TWIN_BANNER if provenance.is_twin else ""
    config.setdefault("html", {})["announcement"] = banner
    return config


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return str(path)
