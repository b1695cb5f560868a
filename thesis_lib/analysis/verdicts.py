"""What a comparison may claim: `ahead`, `behind` or `undecided`, decided by an interval, never by a
point estimate alone.

A difference (model a minus model b) is `ahead` when its 95% interval lies above zero, `behind` when it
lies below, and `undecided` when it includes zero: the test split cannot tell the two apart. The book's
prose glues these words in; the tests assert them.
"""

from __future__ import annotations

import math
from enum import StrEnum


class Verdict(StrEnum):
    AHEAD = "ahead"
    BEHIND = "behind"
    UNDECIDED = "undecided"


def verdict_of(ci_low: float | None, ci_high: float | None) -> Verdict:
    """The verdict of a difference from its interval (an interval that is missing or NaN decides nothing)."""
    if ci_low is None or ci_high is None or math.isnan(ci_low) or math.isnan(ci_high):
        return Verdict.UNDECIDED
    if ci_low > 0:
        return Verdict.AHEAD
    if ci_high < 0:
        return Verdict.BEHIND
    return Verdict.UNDECIDED


def listing(items: list[str], empty: str = "none") -> str:
    """"a, b and c" for the prose; `empty` when there is nothing to list."""
    if not items:
        return empty
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
