"""The generating rule of the synthetic twin: which evidence makes a movie belong to each genre.

Every genre gets one evidence kind (recorded as `genre_evidence` in twin_truth.json):

- image:       a poster object (Horror: ghost, Sci-Fi: rocket, War: tank, Animation: rainbow,
               Western: cactus) or the background palette (Film-Noir: the grey "noir" palette).
- text:        a cue word in the plot (Drama: "grief", Documentary: "footage", ...).
- both:        the poster object AND a cue word, always planted together, so either modality alone
               suffices (Romance, Action, Music, Sport).
- interaction: poster object X AND plot cue word Y (Thriller: knife + "paranoia"; Fantasy: castle +
               "prophecy"). Movies without the genre show X alone or Y alone as distractors, never
               both, so neither modality alone suffices; pooled vectors do (early fusion can learn AND).
- alignment:   the plot names one of the props on the poster ("the car") and the genre depends on how
               THAT prop looks; the other props are distractors with random looks, so a pooled
               "is there a red object" feature does not suffice. Crime: the named prop is red.
               Mystery: the named prop glows (a bright halo ring around it).

Alignment co-occurrence: Crime and Mystery co-occur (and are correlated in MM-IMDb), so they depend on
two independent attributes of the same named prop (colour and glow) instead of two values of one
attribute. Every combination of the two genres is therefore drawable, and the label sampler's
co-occurrence is kept untouched.

Cue words and prop names are lower-case ASCII, not English stop words, and single WordPiece tokens of
the uncased BERT vocabulary (so a token attention map can point at exactly one word).

`oracle_predict` applies these rules to the primitive facts recorded in twin_truth.json (objects and
their looks, palette, cue words, named object), never to the recorded clean genres.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from thesis_lib.genres import GENRES, NUM_GENRES

EvidenceKind = Literal["image", "text", "both", "interaction", "alignment"]
EVIDENCE_KINDS: tuple[EvidenceKind, ...] = ("image", "text", "both", "interaction", "alignment")

# Props: the objects a plot can name. Their colour and glow vary (that IS the alignment evidence).
PROP_KINDS: tuple[str, ...] = ("car", "suitcase", "lamp", "umbrella", "hat")
PROP_COLORS: tuple[str, ...] = ("red", "blue", "green", "yellow")
# Clutter: neutral objects (people, scenery) that trigger no genre.
CLUTTER_KINDS: tuple[str, ...] = ("person", "tree")
# Every other object kind keeps one colour, so small CNNs learn it quickly (DESIGN.md, Known pitfalls).
FIXED_OBJECT_COLORS: dict[str, str] = {
    "ghost": "white", "rocket": "silver", "tank": "olive", "rainbow": "multicolour", "cactus": "green",
    "heart": "pink", "explosion": "orange", "guitar": "brown", "ball": "orange",
    "knife": "silver", "castle": "grey", "person": "black", "tree": "green",
}
NOIR_PALETTE = "noir"
# Background palettes that trigger nothing; "noir" (grey) is reserved for Film-Noir.
NEUTRAL_PALETTES: tuple[str, ...] = (
    "sunset", "ocean", "sage", "dusk", "desert", "plum", "teal", "peach", "midnight", "rose",
)


@dataclass(frozen=True)
class GenreRule:
    """When a movie belongs to one genre, stated on primitive facts of its poster and plot."""

    evidence: EvidenceKind
    object_kind: str | None = None       # image/both/interaction: this object is on the poster
    palette: str | None = None           # image: the poster has this background palette
    cue_words: tuple[str, ...] = ()      # text/both/interaction: one of these words is in the plot
    attribute: str | None = None         # alignment: this attribute of the named prop ...
    value: str | bool | None = None      # ... has this value

    def to_json(self) -> dict[str, Any]:
        """Declarative form written to twin_truth.json["rules"] (and read back by `oracle_predict`)."""
        combine = {"both": "any", "interaction": "all"}.get(self.evidence)
        return {
            "evidence": self.evidence,
            "objects": [self.object_kind] if self.object_kind else [],
            "palette": self.palette,
            "cue_words": list(self.cue_words),
            "combine": combine,  # how object and cue word combine: "any" (redundant) or "all" (both needed)
            "named_object": {self.attribute: self.value} if self.attribute else None,
        }


GENRE_RULES: dict[str, GenreRule] = {
    "Drama": GenreRule("text", cue_words=("grief", "betrayal", "inheritance", "illness")),
    "Comedy": GenreRule("text", cue_words=("jokes", "laughter", "comedian")),
    "Romance": GenreRule("both", object_kind="heart", cue_words=("love", "courtship", "sweetheart")),
    "Thriller": GenreRule("interaction", object_kind="knife", cue_words=("paranoia", "stalker", "conspiracy")),
    "Crime": GenreRule("alignment", attribute="color", value="red"),
    "Action": GenreRule("both", object_kind="explosion", cue_words=("shootout", "explosions", "mercenaries")),
    "Adventure": GenreRule("text", cue_words=("expedition", "treasure", "voyage")),
    "Horror": GenreRule("image", object_kind="ghost"),
    "Documentary": GenreRule("text", cue_words=("footage", "interviews", "archives", "testimony")),
    "Mystery": GenreRule("alignment", attribute="glow", value=True),
    "Sci-Fi": GenreRule("image", object_kind="rocket"),
    "Fantasy": GenreRule("interaction", object_kind="castle", cue_words=("prophecy", "sorcerer", "dragons")),
    "Family": GenreRule("text", cue_words=("siblings", "puppy", "grandparents")),
    "Biography": GenreRule("text", cue_words=("memoir", "biographer", "upbringing")),
    "War": GenreRule("image", object_kind="tank"),
    "History": GenreRule("text", cue_words=("empire", "dynasty", "monarchy")),
    "Music": GenreRule("both", object_kind="guitar", cue_words=("concert", "guitarist", "musicians")),
    "Animation": GenreRule("image", object_kind="rainbow"),
    "Musical": GenreRule("text", cue_words=("choreography", "broadway", "dancers")),
    "Western": GenreRule("image", object_kind="cactus"),
    "Sport": GenreRule("both", object_kind="ball", cue_words=("championship", "coach", "stadium")),
    "Short": GenreRule("text", cue_words=("glimpse", "interlude")),
    "Film-Noir": GenreRule("image", palette=NOIR_PALETTE),
}
assert tuple(GENRE_RULES) == GENRES, "GENRE_RULES must list the 23 genres in canonical order"

GENRE_EVIDENCE: dict[str, EvidenceKind] = {genre: rule.evidence for genre, rule in GENRE_RULES.items()}
# Every word that is evidence for some genre, mapped to that genre.
CUE_WORD_GENRE: dict[str, str] = {word: genre for genre, rule in GENRE_RULES.items() for word in rule.cue_words}
# Genre object kinds mapped to their genre.
OBJECT_GENRE: dict[str, str] = {rule.object_kind: genre for genre, rule in GENRE_RULES.items() if rule.object_kind}


def rules_to_json() -> dict[str, dict[str, Any]]:
    """The declarative rule of every genre, as written to twin_truth.json["rules"]."""
    return {genre: rule.to_json() for genre, rule in GENRE_RULES.items()}


def rule_fires(rule: Mapping[str, Any], facts: Mapping[str, Any]) -> bool:
    """Does one declarative genre rule (a `GenreRule.to_json()` dict) hold for one movie's facts?

    `facts` is a movie entry of twin_truth.json: "objects" (label, color, glow), "palette",
    "cue_words" (word), "named_object" (index into objects).
    """
    labels = {obj["label"] for obj in facts["objects"]}
    words = {cue["word"].lower() for cue in facts["cue_words"]}
    has_object = any(kind in labels for kind in rule["objects"])
    has_palette = rule["palette"] is not None and facts["palette"] == rule["palette"]
    has_cue = any(word in words for word in rule["cue_words"])
    evidence = rule["evidence"]
    if evidence == "image":
        return has_object or has_palette
    if evidence == "text":
        return has_cue
    if evidence == "both":
        return has_object or has_cue
    if evidence == "interaction":
        return has_object and has_cue
    if evidence == "alignment":
        named = facts["objects"][facts["named_object"]]
        return all(named.get(attribute) == value for attribute, value in rule["named_object"].items())
    raise ValueError(f"unknown evidence kind {evidence!r} in a twin rule")


def oracle_predict(truth: Mapping[str, Any], ids: Iterable[str]) -> np.ndarray:
    """The noise-free generating rule applied to the recorded facts of each movie.

    Args:
        truth: the dict from `load_twin_truth(root)`.
        ids: movie ids (7-digit strings) to predict, in the order wanted.
    Returns:
        int64 array (N, 23) of 0/1 in canonical GENRES order.
    """
    rules = truth["rules"]
    movies = truth["movies"]
    ids = list(ids)
    missing = [movie_id for movie_id in ids if movie_id not in movies]
    if missing:
        raise KeyError(f"{len(missing)} ids are not in the twin truth (first: {missing[0]!r})")
    predictions = np.zeros((len(ids), NUM_GENRES), dtype=np.int64)  # (N, 23)
    for row, movie_id in enumerate(ids):
        facts = movies[movie_id]
        for column, genre in enumerate(GENRES):
            predictions[row, column] = rule_fires(rules[genre], facts)
    return predictions
