"""The synthetic twin's generator config: every knob that changes what gets written, with its default.

The config is recorded verbatim in `twin_truth.json`, so a twin on disk always says how it was made.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TwinConfig:
    """How to generate one synthetic MM-IMDb twin. Same config -> byte-identical release."""

    n_movies: int = 2000                    # movies in the release (the real one has 25,959)
    seed: int = 0                           # root seed; movie i draws from default_rng([seed, i])
    poster_size: tuple[int, int] = (224, 336)  # (width, height) in pixels; 2:3 like real posters
    # Probability that a movie's written genre list differs from its clean (rule-generated) one.
    # A noisy movie gets exactly one edit: with probability 1/2 one of its clean genres is removed
    # (only if it has two or more, so no movie ends up without a genre), otherwise one genre it
    # lacks is added, drawn in proportion to the genre frequencies. The fraction of movies whose
    # written labels differ from the clean ones is therefore noise_rate in expectation.
    noise_rate: float = 0.10
    split_fractions: tuple[float, float, float] = (0.6, 0.1, 0.3)  # train/dev/test, like 15,552/2,608/7,799
    # Minimum genre frequency: the rare tail (Film-Noir is 1.3% in MM-IMDb) is lifted into
    # [floor, floor + 0.01] keeping its order, so every genre has >= 10 test movies at 2,000 movies.
    genre_frequency_floor: float = 0.04
    max_genres_per_movie: int = 8           # label draws with more genres are redrawn (poster space)
    interaction_distractor_rate: float = 0.25  # P(a movie without an interaction genre shows its object alone), same for its cue word alone
    distractor_glow_rate: float = 0.35      # P(a poster prop that the plot does not name glows)
    props_per_poster: int = 3               # props (car, lamp, ...) drawn per poster; the plot names one
    second_cue_rate: float = 0.3            # P(a text/both genre plants two cue words instead of one)
    genre_word_rate: float = 0.04           # P(the plot names one of its own genres: "a horror film"), a nuisance
    long_plot_rate: float = 0.02            # P(a plot of 520-700 words, longer than 512 BERT tokens)
    dropped_genre_rate: float = 0.01        # P("News" is listed among the genres; loaders must drop it)
    cmyk_rate: float = 0.005                # P(the poster JPEG is saved in CMYK, as some real ones are)
    jpeg_quality: int = 90                  # fixed JPEG settings keep the output byte-identical

    def __post_init__(self) -> None:
        width, height = self.poster_size
        if self.n_movies < 10:
            raise ValueError(f"TwinConfig.n_movies must be at least 10, got {self.n_movies}")
        if width < 224 or height < width:
            raise ValueError(f"TwinConfig.poster_size must be portrait with width >= 224, got {self.poster_size}")
        if len(self.split_fractions) != 3 or min(self.split_fractions) <= 0 or abs(sum(self.split_fractions) - 1) > 1e-9:
            raise ValueError(f"TwinConfig.split_fractions must be three positive numbers summing to 1, got {self.split_fractions}")
        if self.props_per_poster < 2:
            raise ValueError("TwinConfig.props_per_poster must be at least 2 (the named prop and a distractor)")
        for name in ("noise_rate", "interaction_distractor_rate", "distractor_glow_rate", "second_cue_rate",
                     "genre_word_rate", "long_plot_rate", "dropped_genre_rate", "cmyk_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"TwinConfig.{name} must lie in [0, 1], got {value}")
        if self.interaction_distractor_rate > 0.5:
            raise ValueError("TwinConfig.interaction_distractor_rate must be <= 0.5 (object-alone and cue-alone exclude each other)")
        if not 0.0 < self.genre_frequency_floor < 0.2:
            raise ValueError(f"TwinConfig.genre_frequency_floor must lie in (0, 0.2), got {self.genre_frequency_floor}")

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}
