"""Plot text for the synthetic twin: template sentences over a neutral vocabulary, plus planted words.

The JSON "plot" is a list of strings, as in MM-IMDb. The longest entry (the one loaders take by
default) carries every planted word within its first ~100 words: the cue words, the name of one
poster prop ("the car") and, rarely, the movie's own genre word ("a horror film") as a nuisance.
0-2 shorter entries hold filler only. Lengths vary from 40 to 250 words, and a few plots run past
512 BERT tokens (cues still early) to exercise truncation.

The filler vocabulary avoids every cue word, prop name and genre word (tests check this), so a word's
presence in the plot is fully described by the spans recorded here.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np

from thesis_lib.data.twin.config import TwinConfig
from thesis_lib.data.twin.evidence import EvidencePlan, PlannedCue

NAMES = ("Anna", "Marcus", "Lena", "Tomas", "Clara", "Victor", "Nora", "Elias", "Maya", "Oscar", "Ruth",
         "Jonah", "Iris", "Felix", "Hannah", "Leo", "Vera", "Samuel", "Ada", "Hugo", "Zoë", "José",
         "Amélie", "Björn", "Greta", "Daniel", "Mira", "Paul", "Selma", "Walter")
PLACES = ("a harbour town", "a mountain village", "the old quarter", "the capital", "a quiet suburb",
          "the northern coast", "a border town", "a fishing village", "the river valley", "a crowded city",
          "a farming town", "the island", "a mining town", "the lakeside")
JOBS = ("a teacher", "a nurse", "a clerk", "a baker", "a postman", "a carpenter", "a translator",
        "a mechanic", "a librarian", "a tailor", "a waiter", "an accountant", "a painter", "a ferry pilot")
PEOPLE = ("an old friend", "a neighbour", "a former teacher", "a young clerk", "a distant cousin",
          "the landlord", "a colleague", "a retired doctor", "the mayor", "a newcomer")
THINGS = ("letter", "photograph", "parcel", "postcard", "notebook", "key", "ticket", "recipe", "map")
ACTIVITIES = ("reading by the window", "walking along the river", "repairing old clocks", "playing chess",
              "cooking for the neighbours", "sketching the harbour", "listening to the radio")
BUILDINGS = ("bakery", "library", "station", "post office", "hotel", "school", "market hall", "ferry terminal")
TIMES = ("One autumn", "Years later", "That winter", "One morning", "After a long absence", "Some weeks later")
TIMES_PAST = ("long ago", "years before", "one summer", "in childhood", "before the flood")
ABSTRACTS = ("second chances", "hard choices", "old debts", "quiet courage", "unspoken rules")
ADJECTIVES = ("quiet", "restless", "stubborn", "curious", "careful", "patient", "proud")

FILLER_TEMPLATES = (
    "{name} lives in {place} and works as {job}.",
    "{time}, {name} moves to {place}.",
    "{name} spends most evenings {activity}.",
    "At first {name} ignores {person}, but the two slowly grow closer.",
    "Life in {place} follows the same slow rhythm every day.",
    "{name} receives a {thing} from {person}.",
    "Nobody in {place} talks about what happened {time_past}.",
    "{name} and {name2} disagree about almost everything.",
    "{name} tries to keep a {adjective} distance from {person}.",
    "Each morning {name} walks to the {building}.",
    "The weather turns cold and the roads close for weeks.",
    "{name} writes long letters that are never sent.",
    "A {adjective} visitor arrives in {place} with a {thing}.",
    "Old habits are hard to break for {name}.",
    "{name} owes {person} a favour.",
    "There are rumours about the old {building} near {place}.",
    "Over the following months, {name} changes in small ways.",
    "{name} counts the days until the end of the season.",
    "The council meets to discuss the new {building}.",
    "{name} finds work at the {building} and makes new friends.",
    "Neighbours begin to notice that {name} has changed.",
    "In the end, {name} must decide what matters most.",
    "{name} remembers a promise made {time_past}.",
    "{name} is {adjective} and rarely asks for help.",
)
CUE_TEMPLATES = (
    "Soon {name} is drawn into {cue}.",
    "What follows is a tale of {cue} and {abstract}.",
    "Before long, {name} can think of nothing but {cue}.",
    "Everything in {place} begins to revolve around {cue}.",
    "The story turns on {cue} and what comes after.",
    "It is {cue} that changes {name} for good.",
    "Talk of {cue} spreads quickly through {place}.",
)
# Several cue words in one sentence keep all of them within the first ~100 words.
CUE_LIST_TEMPLATES = (
    "What follows is a tale of {cues}.",
    "The story brings together {cues}.",
    "In {place}, {name} runs into {cues}.",
)
PROP_TEMPLATES = (
    "{name} is never seen without the {prop}.",
    "Everything seems to depend on the {prop}.",
    "{name} keeps coming back to the {prop}.",
    "Someone leaves the {prop} at the door of {name}.",
    "{name} cannot explain where the {prop} came from.",
    "The {prop} once belonged to {person}.",
)
GENRE_MENTION_TEMPLATES = (
    "Critics describe it as {genre_word} film.",
    "At heart it is {genre_word} story.",
)
# The word a plot would use to name each genre ("a horror film").
GENRE_WORDS: dict[str, str] = {
    "Drama": "drama", "Comedy": "comedy", "Romance": "romance", "Thriller": "thriller", "Crime": "crime",
    "Action": "action", "Adventure": "adventure", "Horror": "horror", "Documentary": "documentary",
    "Mystery": "mystery", "Sci-Fi": "sci-fi", "Fantasy": "fantasy", "Family": "family",
    "Biography": "biographical", "War": "war", "History": "historical", "Music": "music",
    "Animation": "animated", "Musical": "musical", "Western": "western", "Sport": "sports",
    "Short": "short", "Film-Noir": "noir",
}
SLOT_VALUES: dict[str, tuple[str, ...]] = {
    "name": NAMES, "name2": NAMES, "place": PLACES, "job": JOBS, "person": PEOPLE, "thing": THINGS,
    "activity": ACTIVITIES, "building": BUILDINGS, "time": TIMES, "time_past": TIMES_PAST,
    "abstract": ABSTRACTS, "adjective": ADJECTIVES,
}
MAIN_PLOT_WORDS = (40, 250)     # usual length range of the main plot, in words
LONG_PLOT_WORDS = (520, 700)    # the rare long plots (> 512 BERT tokens)
CUE_ZONE_WORDS = 100            # every planted word sits within this many words from the start


@dataclass(frozen=True)
class WordSpan:
    """A planted word and where it sits in the raw main-plot string: text[start:end] == word (up to case)."""

    word: str
    start: int
    end: int
    genre: str | None = None   # the genre it is a cue (or a nuisance mention) for
    role: str | None = None    # "evidence" | "distractor" for cue words, None otherwise


@dataclass(frozen=True)
class PlotText:
    """The JSON "plot" list and the location of every planted word in its main (longest) entry."""

    entries: tuple[str, ...]
    main_index: int                          # entries[main_index] is the longest and holds every planted word
    cue_spans: tuple[WordSpan, ...]          # cue words of the evidence plan (evidence and distractor)
    prop_span: WordSpan                      # the one prop the plot names
    genre_mention_span: WordSpan | None      # the nuisance genre word, if any
    outline: str                             # a short generic sentence for the "plot outline" key


def _fill(template: str, rng: np.random.Generator, planted: dict[str, str]) -> tuple[str, dict[str, tuple[int, int]]]:
    """Fill a template's slots; planted slots get the given text and their (start, end) is returned."""
    pieces: list[str] = []
    spans: dict[str, tuple[int, int]] = {}
    length = 0
    for literal, field, _, _ in string.Formatter().parse(template):
        pieces.append(literal)
        length += len(literal)
        if field is None:
            continue
        if field in planted:
            value = planted[field]
            spans[field] = (length, length + len(value))
        else:
            value = str(rng.choice(SLOT_VALUES[field]))
        if not pieces[-1] and length == 0:
            value = value[0].upper() + value[1:]  # slot opening the sentence
        pieces.append(value)
        length += len(value)
    return "".join(pieces), spans


def _n_words(text: str) -> int:
    return len(text.split())


class _PlotBuilder:
    """Appends sentences to one plot string and keeps planted-word spans in plot coordinates."""

    def __init__(self) -> None:
        self.text = ""
        self.spans: list[tuple[str, tuple[int, int]]] = []  # (key, span)

    def add(self, sentence: str, spans: dict[str, tuple[int, int]] | None = None, keys: dict[str, str] | None = None) -> None:
        offset = len(self.text) + (1 if self.text else 0)
        self.text = f"{self.text} {sentence}" if self.text else sentence
        for field, (start, end) in (spans or {}).items():
            self.spans.append(((keys or {}).get(field, field), (offset + start, offset + end)))

    @property
    def n_words(self) -> int:
        return _n_words(self.text)


def _cue_sentences(cues: tuple[PlannedCue, ...], rng: np.random.Generator) -> list[tuple[str, dict, dict]]:
    """Sentences carrying the cue words: one per cue when few, lists of up to three when many.

    Each sentence comes with its planted spans and, per slot, the key "cue:<index into cues>".
    """
    order = [int(i) for i in rng.permutation(len(cues))]
    groups = [[i] for i in order] if len(order) <= 4 else [order[i:i + 3] for i in range(0, len(order), 3)]
    sentences = []
    for group in groups:
        if len(group) == 1:
            text, spans = _fill(str(rng.choice(CUE_TEMPLATES)), rng, {"cue": cues[group[0]].word})
            sentences.append((text, spans, {"cue": f"cue:{group[0]}"}))
            continue
        # "{cues}" -> "{cue0}, {cue1} and {cue2}": each word is its own slot, so spans stay exact.
        slots = [f"cue{k}" for k in range(len(group))]
        listed = ", ".join("{" + slot + "}" for slot in slots[:-1]) + " and {" + slots[-1] + "}"
        template = str(rng.choice(CUE_LIST_TEMPLATES)).replace("{cues}", listed)
        text, spans = _fill(template, rng, {slot: cues[i].word for slot, i in zip(slots, group, strict=False)})
        sentences.append((text, spans, {slot: f"cue:{i}" for slot, i in zip(slots, group, strict=False)}))
    return sentences


def _target_words(rng: np.random.Generator, config: TwinConfig) -> int:
    if rng.random() < config.long_plot_rate:
        return int(rng.integers(*LONG_PLOT_WORDS))
    return int(np.clip(round(rng.lognormal(np.log(100), 0.45)), *MAIN_PLOT_WORDS))


def write_plot(plan: EvidencePlan, rng: np.random.Generator, config: TwinConfig) -> PlotText:
    """The JSON plot list for one movie, with every planted word located in the main entry."""
    prop = plan.objects[plan.named_object].label
    key_sentences = _cue_sentences(plan.cues, rng)
    text, spans = _fill(str(rng.choice(PROP_TEMPLATES)), rng, {"prop": prop})
    key_sentences.append((text, spans, {"prop": "prop"}))
    if plan.genre_mention is not None:
        word = GENRE_WORDS[plan.genre_mention]
        article = "an" if word[0] in "aeiou" else "a"
        text, spans = _fill(str(rng.choice(GENRE_MENTION_TEMPLATES)), rng, {"genre_word": f"{article} {word}"})
        start, end = spans["genre_word"]
        key_sentences.append((text, {"genre_word": (start + len(article) + 1, end)}, {"genre_word": "genre"}))
    key_sentences = [key_sentences[i] for i in rng.permutation(len(key_sentences))]

    target = _target_words(rng, config)
    main = _PlotBuilder()
    main.add(_fill(str(rng.choice(FILLER_TEMPLATES)), rng, {})[0])
    key_words = sum(_n_words(sentence) for sentence, _, _ in key_sentences)
    for sentence, spans, keys in key_sentences:
        # Filler between planted sentences only while every planted word stays in the cue zone.
        if rng.random() < 0.4:
            filler = _fill(str(rng.choice(FILLER_TEMPLATES)), rng, {})[0]
            if main.n_words + _n_words(filler) + key_words <= CUE_ZONE_WORDS:
                main.add(filler)
        main.add(sentence, spans, keys)
        key_words -= _n_words(sentence)
    while main.n_words < target:
        main.add(_fill(str(rng.choice(FILLER_TEMPLATES)), rng, {})[0])

    cue_spans, prop_span, mention_span = [], None, None
    for key, (start, end) in main.spans:
        word = main.text[start:end]
        if key.startswith("cue:"):
            cue = plan.cues[int(key[4:])]
            cue_spans.append(WordSpan(cue.word, start, end, cue.genre, cue.role))
        elif key == "prop":
            prop_span = WordSpan(word, start, end)
        else:
            mention_span = WordSpan(word, start, end, plan.genre_mention)
    cue_spans.sort(key=lambda span: span.start)

    # Shorter generic entries: filler only, strictly shorter than the main entry.
    extra = []
    for _ in range(int(rng.integers(0, 3))):
        sentences = [_fill(str(rng.choice(FILLER_TEMPLATES)), rng, {})[0] for _ in range(int(rng.integers(1, 4)))]
        entry = " ".join(sentences)
        while len(entry) >= len(main.text):
            sentences.pop()
            entry = " ".join(sentences)
        if entry:
            extra.append(entry)
    main_index = int(rng.integers(0, len(extra) + 1))
    entries = extra[:main_index] + [main.text] + extra[main_index:]
    outline = _fill(str(rng.choice(FILLER_TEMPLATES)), rng, {})[0]
    return PlotText(tuple(entries), main_index, tuple(cue_spans), prop_span, mention_span, outline)
