"""`thesis data check ROOT [--json]`: load and validate a release, then say what is usable and what is not.

Exit codes of `main_check`:
    0  the release is usable: at least one usable movie in each of train, dev and test (skipped movies are
       reported but do not fail the check: the real release may have a few, and they are left out cleanly);
    1  the folder is a release, but some official split has no usable movie left;
    2  the folder is not a release at all (no split.json, no dataset/, an unreadable split.json): one line
       on stderr naming what is missing, no traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from thesis_lib.data.mmimdb import (
    SPLIT_NAMES,
    NotAReleaseError,
    PlotChoice,
    PosterCheck,
    Release,
    Skipped,
    load_release,
)
from thesis_lib.genres import GENRES

EXIT_USABLE, EXIT_UNUSABLE, EXIT_NOT_A_RELEASE = 0, 1, 2


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


def main_check(root: str, as_json: bool = False, plot_choice: PlotChoice = "longest") -> int:
    """Print the check of `root` (text, or one JSON object with `as_json`) and return the exit code."""
    try:
        report = check_release(root, plot_choice=plot_choice)
    except NotAReleaseError as error:
        message = " ".join(str(error).split())  # one line, whatever the path holds
        print(f"thesis data check: {message}", file=sys.stderr)
        return EXIT_NOT_A_RELEASE
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.format_text())
    return EXIT_USABLE if report.usable else EXIT_UNUSABLE
