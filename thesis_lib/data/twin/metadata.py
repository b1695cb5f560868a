"""The JSON fields of a twin movie that carry no evidence: title, year, people, and other real MM-IMDb keys."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TITLE_ADJECTIVES = ("Silent", "Last", "Distant", "Broken", "Golden", "Hidden", "Long", "Quiet", "Northern",
                    "Bitter", "Endless", "Pale", "Lost", "Burning", "Winter", "Crooked", "Second", "Narrow")
TITLE_NOUNS = ("Harbour", "Road", "Summer", "Station", "Letter", "River", "Promise", "Horizon", "Garden",
               "Bridge", "Season", "Window", "Tide", "Valley", "Echo", "Crossing", "Orchard", "Signal")
FIRST_NAMES = ("Ava", "Ben", "Cora", "Dev", "Elin", "Frank", "Gia", "Hal", "Ines", "Jack", "Kira", "Luis",
               "Mona", "Nils", "Olga", "Pia", "Ravi", "Sara", "Theo", "Una", "Yusuf", "Zoe", "Renée", "Søren")
SURNAMES = ("Cole", "Reed", "Novak", "Hart", "Lind", "Moreau", "Sato", "Keller", "Ortiz", "Brandt", "Quinn",
            "Dahl", "Fischer", "Ivanova", "Marsh", "Varga", "Okafor", "Rossi", "Núñez", "Weiß")
COUNTRIES = ("USA", "UK", "France", "Germany", "Italy", "Canada", "Japan", "Spain", "Sweden", "India")
LANGUAGES = ("English", "French", "German", "Italian", "Japanese", "Spanish", "Swedish", "Hindi")


@dataclass(frozen=True)
class MovieMetadata:
    title: str
    year: int
    cast: tuple[str, ...]   # billed names, also printed on the poster
    director: str
    country: str
    language: str
    runtime_minutes: int
    rating: float
    votes: int


def _person(rng: np.random.Generator) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}"


def sample_metadata(rng: np.random.Generator) -> MovieMetadata:
    """Random, evidence-free facts about one movie."""
    if rng.random() < 0.5:
        title = f"The {rng.choice(TITLE_ADJECTIVES)} {rng.choice(TITLE_NOUNS)}"
    else:
        title = f"{rng.choice(TITLE_NOUNS)} of the {rng.choice(TITLE_ADJECTIVES)} {rng.choice(TITLE_NOUNS)}"
    country = int(rng.integers(len(COUNTRIES)))
    return MovieMetadata(
        title=title,
        year=int(rng.integers(1920, 2017)),
        cast=tuple(_person(rng) for _ in range(int(rng.integers(2, 4)))),
        director=_person(rng),
        country=COUNTRIES[country],
        language=LANGUAGES[min(country, len(LANGUAGES) - 1)],
        runtime_minutes=int(rng.integers(75, 160)),
        rating=round(float(rng.uniform(3.0, 9.0)), 1),
        votes=int(rng.lognormal(8, 1.5)),
    )


def movie_json(movie_id: str, plot: tuple[str, ...], genres: list[str], outline: str, meta: MovieMetadata) -> dict:
    """One `dataset/<id>.json` document with MM-IMDb's keys (as written by IMDbPY)."""
    return {
        "imdb id": movie_id,
        "kind": "movie",
        "title": meta.title,
        "year": meta.year,
        "genres": genres,
        "plot": list(plot),
        "plot outline": outline,
        "cast": [{"name": name} for name in meta.cast],
        "director": [{"name": meta.director}],
        "countries": [meta.country],
        "languages": [meta.language],
        "runtimes": [str(meta.runtime_minutes)],
        "rating": meta.rating,
        "votes": meta.votes,
    }
