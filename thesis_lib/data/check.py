"""What `thesis data check ROOT` reports: load and validate a release, then say what is usable and what is not.

`check_release` returns a `CheckReport`; it raises `NotAReleaseError` when the folder is no release at all
(no split.json, no dataset/, an unreadable split.json). A release is `usable` when each of train, dev and
test keeps at least one usable movie (skipped movies are reported but do not make it unusable: the real
release may have a few, and they are left out cleanly). The command's exit codes live in
`thesis_lib.cli.data`.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from thesis_lib.data.mmimdb import (
    SPLIT_NAMES,
    PlotChoice,
    PosterCheck,
    Release,
    Skipped,
    load_release,
)
from thesis_lib.genres import GENRES


@dataclass(frozen=True)
class CheckReport:
    """What `thesis data check` reports about one release (counts are over usable movies only)."""

    root: str
    movies: int                    # usable movies
    splits: dict[str, int]         # train/dev/test -> usable ids in the official split
    genres: dict[str, int]         # all 23 genres, canonical order -> usable movies with that genre
    skipped: tuple[Skipped, ...]   # everything left out, with reasons
    warnings: tuple[str, ...]      # problems that did not cost a movie
    fingerprint: str               # content hash of the release (see thesis_lib.data.mmimdb)

    @classmethod
    def from_release(cls, release: Release) -> CheckReport:
        return cls(
            root=str(release.root),
            movies=len(release.movies),
            splits={name: len(release.official_split[name]) for name in SPLIT_NAMES},
            genres=release.genre_counts(),
            skipped=tuple(release.skipped),
            warnings=tuple(release.warnings),
            fingerprint=release.fingerprint,
        )

    @property
    def usable(self) -> bool:
        """Every official split keeps at least one usable movie."""
        return all(self.splits[name] > 0 for name in SPLIT_NAMES)

    def to_dict(self) -> dict[str, Any]:
        """One JSON-able object: movies, splits, genres, skipped, root, fingerprint, warnings.

        Each skipped entry is {"id", "reason", "detail"}: `reason` is a fixed phrase to group by, `detail`
        names the file and the error.
        """
        return {
            "movies": self.movies,
            "splits": dict(self.splits),
            "genres": dict(self.genres),
            "skipped": [{"id": s.id, "reason": s.reason, "detail": s.detail} for s in self.skipped],
            "root": self.root,
            "fingerprint": self.fingerprint,
            "warnings": list(self.warnings),
        }

    def format_text(self) -> str:
        """A readable summary: counts, the genre table, skipped movies grouped by reason, warnings."""
        lines = [
            f"MM-IMDb release at {self.root}",
            f"  usable movies: {self.movies:,}  "
            + "  ".join(f"{name} {self.splits[name]:,}" for name in SPLIT_NAMES),
            f"  fingerprint:   {self.fingerprint}",
            "",
            "Genres (usable movies):",
        ]
        width = max(map(len, GENRES))
        for genre, count in self.genres.items():
            share = count / self.movies if self.movies else 0.0
            lines.append(f"  {genre:<{width}}  {count:>6,}  {share:6.1%}")
        skipped_ids = {entry.id for entry in self.skipped}
        lines += ["", f"Skipped: {len(skipped_ids):,} ids ({len(self.skipped):,} problems)"]
        by_reason: dict[str, list[Skipped]] = defaultdict(list)
        for entry in self.skipped:
            by_reason[entry.reason].append(entry)
        for reason, entries in sorted(by_reason.items(), key=lambda item: (-len(item[1]), item[0])):
            lines.append(f"  {reason} ({len(entries):,}):")
            lines += [f"    {entry.id}  {entry.detail}".rstrip() for entry in entries]
        if self.warnings:
            lines += ["", f"Warnings ({len(self.warnings):,}):"] + [f"  {warning}" for warning in self.warnings]
        verdict = "usable" if self.usable else "NOT usable: " + ", ".join(
            f"no usable movie in {name}" for name in SPLIT_NAMES if self.splits[name] == 0
        )
        lines += ["", f"Verdict: {verdict}"]
        return "\n".join(lines)


def check_release(
    root: str | os.PathLike[str],
    plot_choice: PlotChoice = "longest",
    verify_posters: PosterCheck = "full",
    workers: int | None = None,
) -> CheckReport:
    """Load and validate the release at `root` (or `root/mmimdb`); raises NotAReleaseError if it is none."""
    release = load_release(root, plot_choice=plot_choice, verify_posters=verify_posters, workers=workers)
    return CheckReport.from_release(release)

