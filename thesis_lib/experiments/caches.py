"""Which feature caches each run of a grid reads, read from the plan alone (no model is built), so the
grid can delete a cache once no remaining run reads it and `thesis cache clean` can tell live caches from
stale ones.

A run reads feature caches when every heavy encoder it trains with is frozen: one cache per heavy
modality (text, image; the object encoder reads detections) and split part. Whose weights the encoder has
decides which cache it is: a fusion with `encoders: runs` reads the encoder of its source run (same split
and seed), so every fusion of one (split, seed) reusing `text_bert` shares its caches; an encoder from the
registry is identified by its config and the run's seed. A fusion that reads only pooled vectors
(`Fusion.reads_tokens` False: early, attention, late) gets a pooled-only cache (N x D float32); one that
reads tokens (cross-attention) a ragged float16 token cache. The two kinds are separate files.

`feature_cache_bytes` is the size formula of `train.features` (headers aside), for disk projections.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from safetensors import safe_open

from thesis_lib.experiments.locks import live_cache_reads
from thesis_lib.experiments.profile import Profile
from thesis_lib.experiments.specs import RunSpec, config_hashes, resolve_model_config
from thesis_lib.genres import NUM_GENRES
from thesis_lib.models.fusion import FUSIONS
from thesis_lib.paths import cache_dir
from thesis_lib.storage import canonical_json, stable_hash
from thesis_lib.train.features import FEATURE_CACHE_FORMAT, FEATURES_FOLDER

PARTS = ("train", "dev", "test")
CACHED_MODALITIES = ("text", "image")  # the object encoder is never cached: it reads cached detections


@dataclass(frozen=True)
class FeatureCacheNeed:
    """One feature cache a run reads: the features of one encoder over one split part."""

    split: str      # "thesis" | "official"
    part: str       # "train" | "dev" | "test"
    modality: str   # "text" | "image"
    encoder: str    # whose weights: "run <split>/<name>/seed<k> <config hash>" or "registry <hash> seed<k>"
    tokens: bool    # token rows too (a fusion that reads tokens); False: pooled vectors only

    @property
    def file_group(self) -> tuple[str, ...]:
        """Needs that one cache file may serve. A source run's encoder is known by its run; encoders from the
        registry are told apart by their weights, which only the extraction sees (a pretrained encoder
        gives the same file for every run and seed that reads it frozen), so any two registry needs of one
        split part, modality and layout may share a file."""
        encoder = self.encoder if self.encoder.startswith("run ") else "registry"
        return (self.split, self.part, self.modality, str(self.tokens), encoder)

    @property
    def label(self) -> str:
        """The need as one string: stored in the cache file's metadata and compared by `thesis cache clean`."""
        return canonical_json(asdict(self))


def feature_caches_of(spec: RunSpec, profile: Profile, plan: Mapping[tuple[str, int, str], RunSpec] | Sequence[RunSpec],
                      hashes: Mapping[tuple[str, int, str], tuple[str, object]] | None = None,
                      ) -> tuple[FeatureCacheNeed, ...]:
    """The feature caches `spec` reads (none unless it trains on frozen encoders), from the plan alone.

    `plan`: the grid's runs (a fusion's source runs must be in it); `hashes`: `specs.config_hashes` of the
    plan when the caller has them (computed otherwise)."""
    if spec.kind != "train":
        return ()
    by_key = plan if isinstance(plan, Mapping) else {s.key: s for s in plan}
    config = resolve_model_config(spec.model, spec.overrides, profile, spec.backbones)
    modalities = [m for m in config.modalities if m in CACHED_MODALITIES]
    # Source encoders come frozen exactly when the run's backbones are (pipeline.prepare_config); a
    # registry encoder may be frozen by an override (e.g. text_frozen: true) whatever the backbone mode.
    if spec.encoders == "runs":
        frozen = spec.backbones == "frozen"
    else:
        frozen = all(getattr(config, m).frozen for m in modalities)
    if not modalities or not frozen:
        return ()
    tokens = FUSIONS[config.fusion.kind].reads_tokens
    if hashes is None:
        hashes = config_hashes(list(by_key.values()), profile)
    encoders = {}
    for modality in modalities:
        source = by_key[(spec.split, spec.seed, spec.source(modality))] if spec.encoders == "runs" else None
        if source is not None and not _keeps_registry_weights(source, modality, profile):
            encoders[modality] = f"run {source.label} {hashes[source.key][0]}"
        else:  # the registry's encoder, or a source run that kept it frozen (the same weights, the same file)
            part_config = {"config": asdict(getattr(config, modality)), "cleaning": spec.text_cleaning}
            encoders[modality] = f"registry {stable_hash(part_config, length=16)} seed{spec.seed}"
    # In the order the pipeline builds them (part by part), which the disk projection follows.
    return tuple(FeatureCacheNeed(spec.split, part, m, encoders[m], tokens) for part in PARTS for m in modalities)


def _keeps_registry_weights(source: RunSpec, modality: str, profile: Profile) -> bool:
    """A source run whose `modality` encoder stayed frozen (e.g. a linear probe on a pretrained encoder) hands
    on the registry's weights: its features are the registry encoder's."""
    config = resolve_model_config(source.model, source.overrides, profile, source.backbones)
    part = getattr(config, modality, None)
    return source.encoders != "runs" and part is not None and part.frozen


def feature_cache_bytes(movies: int, pooled_dim: int, *, tokens: int = 0, token_dim: int = 0,
                        tokens_bytes: int = 2, labels: int = NUM_GENRES) -> int:
    """Bytes of one single-modality cache file of `movies` items (header aside): labels and pooled vectors
    in float32, and for a token cache `tokens` stored rows in total (sum of each movie's length up to its
    last real token) of `token_dim` values of `tokens_bytes` each (2: float16), a bool mask per row and
    N + 1 int64 offsets. E.g. BERT-base over 18,171 plots of mean 200 tokens:
    feature_cache_bytes(18171, 768, tokens=18171 * 200, token_dim=768) = 5.64e9."""
    size = movies * labels * 4 + movies * pooled_dim * 4
    if tokens:
        size += tokens * token_dim * tokens_bytes + tokens + (movies + 1) * 8
    return size


# ------------------------------------------------------------------------------------ grid bookkeeping


@dataclass
class CacheLedger:
    """What the grid knows about feature caches while it runs: every run's needs (from the plan), the runs
    still to come, and the files each need was served from. `release_after` deletes the files no remaining
    run needs."""

    needs: dict[tuple[str, int, str], tuple[FeatureCacheNeed, ...]]
    remaining: list[tuple[str, int, str]]                       # keys of the unfinished runs still to run, in order
    files: dict[FeatureCacheNeed, set[Path]] = field(default_factory=dict)  # recorded by the pipeline
    freed: list[tuple[Path, int]] = field(default_factory=list)  # (file, bytes) deleted so far

    @classmethod
    def of_plan(cls, plan: Sequence[RunSpec], profile: Profile, pending: Iterable[tuple[str, int, str]],
                hashes: Mapping[tuple[str, int, str], tuple[str, object]] | None = None) -> CacheLedger:
        hashes = hashes if hashes is not None else config_hashes(plan, profile)
        by_key = {spec.key: spec for spec in plan}
        needs = {spec.key: feature_caches_of(spec, profile, by_key, hashes) for spec in plan}
        return cls(needs, list(pending))

    def record(self, need: FeatureCacheNeed, path: Path) -> None:
        self.files.setdefault(need, set()).add(Path(path))

    def still_needed(self) -> set[FeatureCacheNeed]:
        return {need for key in self.remaining for need in self.needs.get(key, ())}

    def projected_peak_bytes(self, size_of: Callable[[FeatureCacheNeed], int]) -> int:
        """The most disk the feature caches of the remaining runs will take at once under this ledger's
        policy (`release_after`), `size_of(need)` bytes each (a file being assembled moves its temporary
        rows into place, `train.rows_file`: it counts once). For `thesis run --plan`'s disk projection."""
        replay = CacheLedger(self.needs, list(self.remaining))
        present: dict[FeatureCacheNeed, int] = {}
        peak = 0
        for key in self.remaining:
            for need in self.needs.get(key, ()):
                if need not in present:
                    present[need] = size_of(need)
                    peak = max(peak, sum(present.values()))
            replay.release_after(key, delete=False)
            keep = replay.still_needed()
            present = {need: size for need, size in present.items() if need in keep}
        return peak

    def release_after(self, key: tuple[str, int, str], delete: bool = True,
                      busy: Iterable[str] = ()) -> list[tuple[Path, int]]:
        """Mark run `key` done (finished or failed) and delete the cache files no remaining run reads, nor a
        running run of another grid (`busy`: need labels, `locks.live_cache_reads`); returns what was
        deleted, with sizes. `delete=False` (other processes than the main one) only forgets them."""
        if key in self.remaining:
            self.remaining.remove(key)
        keep = {need.file_group for need in self.still_needed()}  # a file a later need may share stays
        keep |= busy_file_groups(busy)
        deleted = []
        for need in [need for need in self.files if need.file_group not in keep]:
            for path in sorted(self.files.pop(need)):
                if delete and path.is_file():
                    size = path.stat().st_size
                    path.unlink()
                    deleted.append((path, size))
        self.freed += deleted
        return deleted


# ------------------------------------------------------------------------------------ cleaning


@dataclass
class CacheCleaning:
    """What `clean_feature_caches` removed (or would remove, on a dry run) and kept."""

    folder: Path
    dry_run: bool
    removed: list[tuple[Path, int, str]] = field(default_factory=list)  # (file, bytes, why)
    kept: list[tuple[Path, int]] = field(default_factory=list)
    busy_runs: tuple[str, ...] = ()  # runs that held read marks on caches (what they read is kept)

    @property
    def bytes_freed(self) -> int:
        return sum(size for _, size, _ in self.removed)

    def lines(self) -> list[str]:
        verb = "would remove" if self.dry_run else "removed"
        lines = [f"{verb} {path.name} ({size / 1e6:.1f} MB): {why}" for path, size, why in self.removed]
        kept = sum(size for _, size in self.kept)
        lines.append(f"{verb} {len(self.removed)} feature caches, {self.bytes_freed / 1e9:.2f} GB "
                     f"{'to free' if self.dry_run else 'freed'}; kept {len(self.kept)} ({kept / 1e9:.2f} GB) "
                     f"in {self.folder}")
        if self.busy_runs:
            lines.append(f"kept what {len(self.busy_runs)} running run(s) read: {', '.join(self.busy_runs)}")
        return lines


def busy_file_groups(labels: Iterable[str]) -> set[tuple[str, ...]]:
    """The file groups (`FeatureCacheNeed.file_group`) of need labels; labels that do not parse are skipped."""
    groups = set()
    for label in labels:
        try:
            groups.add(FeatureCacheNeed(**json.loads(label)).file_group)
        except (TypeError, ValueError):
            continue
    return groups


def cache_files(cache_root: Path | None = None) -> list[Path]:
    """Every feature cache file and leftover temporary file under `<cache>/features/`."""
    folder = Path(cache_root or cache_dir()) / FEATURES_FOLDER
    return sorted(p for p in folder.iterdir()) if folder.is_dir() else []


def clean_feature_caches(needed: set[str] | None, *, data_fingerprint: str | None = None,
                         cache_root: Path | None = None, dry_run: bool = False) -> CacheCleaning:
    """Remove the feature caches no planned, unfinished run reads: files of another format, of other data,
    whose need (`FeatureCacheNeed.label` in their metadata) is not in `needed`, and older duplicates of a
    need. `needed=None` (--all) removes every cache, and the temporary files of writes (never touched
    otherwise: a grid running now may be writing them). Whatever a run holding its folder reads now (its
    read mark, `locks.live_cache_reads`) is kept in every case, and with such a run --all keeps the
    temporary files too."""
    folder = Path(cache_root or cache_dir()) / FEATURES_FOLDER
    result = CacheCleaning(folder, dry_run)
    live = live_cache_reads(Path(cache_root or cache_dir()))  # caches that runs holding their folders read now
    result.busy_runs = live.runs
    busy = busy_file_groups(live.needs)
    # Temporary files of a write may belong to a grid running now: only --all removes them, and not while runs
    # hold read marks (one of them may be writing).
    verdicts = {path: "--all" if needed is None else _stale_reason(path, needed, data_fingerprint)
                for path in cache_files(cache_root)
                if not path.name.startswith(".") or (needed is None and not live)}
    read_now = {path for path in verdicts if busy and _file_group(path) in busy}  # a running run reads them
    verdicts |= dict.fromkeys(read_now)
    by_need: dict[str, list[Path]] = {}
    for path in (p for p, why in verdicts.items() if why is None and p not in read_now):
        by_need.setdefault(_metadata(path).get("label", ""), []).append(path)
    for copies in by_need.values():  # the same need twice (e.g. a source run retrained): keep the newest
        for older in sorted(copies, key=lambda p: p.stat().st_mtime)[:-1]:
            verdicts[older] = "an older copy of a cache that exists"
    for path, why in verdicts.items():
        size = _size(path)
        if why is None:
            result.kept.append((path, size))
            continue
        result.removed.append((path, size, why))
        if not dry_run:
            _remove(path)
    return result


def _stale_reason(path: Path, needed: set[str], data_fingerprint: str | None) -> str | None:
    if path.is_dir() or not path.name.endswith(".safetensors"):
        return "not a feature cache"
    try:
        metadata = _metadata(path)
    except Exception:  # noqa: BLE001 - an unreadable file is stale by definition
        return "unreadable"
    if metadata.get("format") != str(FEATURE_CACHE_FORMAT):
        return f"format {metadata.get('format')} (current: {FEATURE_CACHE_FORMAT})"
    key = json.loads(metadata.get("key", "{}"))
    if data_fingerprint is not None and key.get("data") != data_fingerprint:
        return "built from other data"
    if metadata.get("label") not in needed:
        return "no unfinished run of the grid reads it"
    return None


def _file_group(path: Path) -> tuple[str, ...] | None:
    """The file group of the need a cache file was made for (from its metadata); None when unreadable."""
    try:
        groups = busy_file_groups([_metadata(path).get("label", "")])
    except Exception:  # noqa: BLE001 - an unreadable file serves no running run
        return None
    return next(iter(groups), None)


def _metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
