"""Plan the evidence of one movie: which objects, palette and cue words make the rule give its clean genres.

The plan is modality-free (no pixels, no sentences): `poster.py` draws it and `plot.py` writes it.
Distractors are added only where the rule stays unchanged: an interaction genre's object OR cue word
alone, props with random colour/glow that the plot does not name, neutral clutter (people, trees).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from thesis_lib.data.twin.config import TwinConfig
from thesis_lib.data.twin.rules import (
    CLUTTER_KINDS,
    FIXED_OBJECT_COLORS,
    GENRE_RULES,
    NEUTRAL_PALETTES,
    NOIR_PALETTE,
    PROP_COLORS,
    PROP_KINDS,
)
from thesis_lib.genres import GENRES

# Poster slots (see poster.evidence_grid): 9 in the usual 3x3 grid, 12 in the smaller-celled 3x4 grid that
# only crowded evidence (many object genres at once) may use; clutter never pushes a poster past 9.
USUAL_OBJECTS = 9
MAX_OBJECTS = 12

ObjectRole = Literal["evidence", "distractor", "prop", "clutter"]
CueRole = Literal["evidence", "distractor"]


@dataclass(frozen=True)
class PlannedObject:
    """One object to draw on the poster."""

    label: str                # object kind: "ghost", "car", ...
    color: str                # colour name (fixed per kind, except for props)
    role: ObjectRole          # why it is there
    genre: str | None = None  # the genre whose rule mentions this object kind (None for props, clutter)
    glow: bool = False        # props only: a bright halo ring around it (Mystery's evidence when named)


@dataclass(frozen=True)
class PlannedCue:
    """One cue word to write into the plot."""

    word: str
    genre: str       # the genre whose rule lists this word
    role: CueRole    # "distractor": an interaction genre's word on a movie without that genre


@dataclass(frozen=True)
class EvidencePlan:
    """Everything the generating rule reads, before it is drawn and written."""

    objects: tuple[PlannedObject, ...]  # in random slot order
    palette: str
    cues: tuple[PlannedCue, ...]
    named_object: int                   # index into objects: the prop the plot names (always a prop)
    genre_mention: str | None           # nuisance: a clean genre the plot names by its own word


def plan_evidence(clean_genres: frozenset[str], rng: np.random.Generator, config: TwinConfig) -> EvidencePlan:
    """Facts under which the rule yields exactly `clean_genres` (checked again by the generator)."""
    genre_objects: list[PlannedObject] = []
    distractor_objects: list[PlannedObject] = []
    cues: list[PlannedCue] = []
    for genre in GENRES:
        rule = GENRE_RULES[genre]
        present = genre in clean_genres
        if rule.evidence in ("image", "both", "interaction") and rule.object_kind and present:
            genre_objects.append(PlannedObject(rule.object_kind, FIXED_OBJECT_COLORS[rule.object_kind], "evidence", genre))
        if rule.evidence in ("text", "both") and present:
            n_words = 2 if rng.random() < config.second_cue_rate else 1
            for word in rng.choice(rule.cue_words, size=n_words, replace=False):
                cues.append(PlannedCue(str(word), genre, "evidence"))
        if rule.evidence == "interaction":
            if present:
                cues.append(PlannedCue(str(rng.choice(rule.cue_words)), genre, "evidence"))
            else:
                # Exactly one of the two halves at most, so the AND never fires without the genre.
                draw = rng.random()
                if draw < config.interaction_distractor_rate:
                    distractor_objects.append(
                        PlannedObject(rule.object_kind, FIXED_OBJECT_COLORS[rule.object_kind], "distractor", genre))
                elif draw < 2 * config.interaction_distractor_rate:
                    cues.append(PlannedCue(str(rng.choice(rule.cue_words)), genre, "distractor"))

    # Props: the named one carries the alignment evidence; the others get random looks.
    n_props = config.props_per_poster
    while len(genre_objects) + len(distractor_objects) + n_props > MAX_OBJECTS:
        if n_props > 2:
            n_props -= 1
        elif distractor_objects:
            distractor_objects.pop()
        else:
            raise RuntimeError(f"a movie with genres {sorted(clean_genres)} needs more than {MAX_OBJECTS} poster objects")
    prop_kinds = rng.choice(PROP_KINDS, size=n_props, replace=False)
    named_color = "red" if "Crime" in clean_genres else str(rng.choice([c for c in PROP_COLORS if c != "red"]))
    props = [PlannedObject(str(prop_kinds[0]), named_color, "prop", glow="Mystery" in clean_genres)]
    for kind in prop_kinds[1:]:
        props.append(PlannedObject(str(kind), str(rng.choice(PROP_COLORS)), "prop",
                                   glow=bool(rng.random() < config.distractor_glow_rate)))

    objects = genre_objects + distractor_objects + props
    n_clutter = max(0, min(int(rng.integers(0, 3)), USUAL_OBJECTS - len(objects)))
    objects += [PlannedObject(kind, FIXED_OBJECT_COLORS[kind], "clutter")
                for kind in map(str, rng.choice(CLUTTER_KINDS, size=n_clutter))]
    order = rng.permutation(len(objects))
    objects = [objects[i] for i in order]
    named_object = int(np.flatnonzero(order == len(genre_objects) + len(distractor_objects))[0])

    palette = NOIR_PALETTE if "Film-Noir" in clean_genres else str(rng.choice(NEUTRAL_PALETTES))
    genre_mention = None
    if rng.random() < config.genre_word_rate:
        genre_mention = str(rng.choice(sorted(clean_genres, key=GENRES.index)))
    return EvidencePlan(tuple(objects), palette, tuple(cues), named_object, genre_mention)
