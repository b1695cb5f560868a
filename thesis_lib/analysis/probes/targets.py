"""What the probes predict, read from the twin's ground truth (twin_truth.json): which prop a plot names,
how props look, and the genre controls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from thesis_lib.analysis.probes.scores import NAMED_PROP, ProbeError

# ------------------------------------------------------------------------------------------- targets


def named_prop_labels(truth: Mapping[str, Any], ids: Sequence[str]) -> np.ndarray:
    """(N,) str: the label of the prop each movie's plot names (twin_truth.json)."""
    movies = _truth_movies(truth, ids)
    return np.array([movie["objects"][movie["named_object"]]["label"] for movie in movies])


def named_prop_has(truth: Mapping[str, Any], ids: Sequence[str], attribute: str, value: Any) -> np.ndarray:
    """(N,) int: 1 where the named prop's `attribute` equals `value` (e.g. "color" == "red")."""
    movies = _truth_movies(truth, ids)
    return np.array([int(movie["objects"][movie["named_object"]].get(attribute) == value) for movie in movies])


def props_with(truth: Mapping[str, Any], ids: Sequence[str], attribute: str, value: Any) -> np.ndarray:
    """(N,) int: how many props on the poster have `attribute` == `value` (whichever the plot names)."""
    movies = _truth_movies(truth, ids)
    return np.array([sum(obj.get(attribute) == value for obj in movie["objects"] if obj["role"] == "prop")
                     for movie in movies])


def some_prop_has(truth: Mapping[str, Any], ids: Sequence[str], attribute: str, value: Any) -> np.ndarray:
    """(N,) int: 1 where any prop on the poster has `attribute` == `value`."""
    return (props_with(truth, ids, attribute, value) > 0).astype(int)


def genre_targets(truth: Mapping[str, Any], ids: Sequence[str], genre: str) -> np.ndarray:
    """(N,) int: 1 where `genre` is among the movie's clean (noise-free) genres."""
    return np.array([int(genre in movie["clean_genres"]) for movie in _truth_movies(truth, ids)])


def alignment_rules(truth: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """(genre, attribute, value) of every alignment genre, from the truth's declared rules."""
    rules = []
    for genre, kind in truth["genre_evidence"].items():
        if kind == "alignment":
            for attribute, value in truth["rules"][genre]["named_object"].items():
                rules.append((genre, attribute, value))
    return rules


def describe_count(attribute: str, value: Any) -> str:
    """"number of red props", "number of glowing props": the binding-free reference of a rule."""
    if attribute == "glow":
        return f"number of {'glowing' if value else 'unlit'} props"
    if attribute == "color":
        return f"number of {value} props"
    return f"number of props with {attribute} {value}"


def describe_rule(attribute: str, value: Any, subject: str = NAMED_PROP) -> str:
    """"named prop is red", "named prop glows", "some prop glows"."""
    if attribute == "glow":
        return f"{subject} {'glows' if value else 'does not glow'}"
    if attribute == "color":
        return f"{subject} is {value}"
    return f"{subject} has {attribute} {value}"


def control_genre(truth: Mapping[str, Any], ids: Sequence[str], kind: str) -> str:
    """The most frequent genre among `ids` whose evidence is `kind` ("image" or "text") alone."""
    genres = [genre for genre, evidence in truth["genre_evidence"].items() if evidence == kind]
    if not genres:
        raise ProbeError(f"twin_truth.json declares no genre with {kind} evidence: no control for that encoder")
    counts = {genre: int(genre_targets(truth, ids, genre).sum()) for genre in genres}
    return max(genres, key=lambda genre: counts[genre])


def _truth_movies(truth: Mapping[str, Any], ids: Sequence[str]) -> list[Mapping[str, Any]]:
    missing = [movie_id for movie_id in ids if movie_id not in truth["movies"]]
    if missing:
        raise ProbeError(f"twin_truth.json has no entry for {len(missing)} movie(s) of the split, e.g. "
                         f"{', '.join(missing[:3])}: is it the truth of this release?")
    return [truth["movies"][movie_id] for movie_id in ids]


