"""Three controlled token-level tasks: text tokens and image tokens whose label needs one kind of fusion.

Every sample is a short "text" of `text_length` word tokens and an "image" of `grid_cells` tokens, of which
`objects` cells hold an object (class one-hot, colour one-hot, an object flag) and the rest are empty
(zeros). Words come from one vocabulary: object names, colour names, the cue word, filler words. A text
token is contextual, as a language model's are: its word's one-hot followed by the bag of words of its
text (the mean of the text's one-hots), so every word knows the sentence it sits in.

- additive:    label = the text has the cue word OR the image has object class 0 (each side alone helps).
- interaction: label = the text has the cue word AND the image has object class 0 (a conjunction of two
  global cues: learnable from pooled vectors, as DESIGN.md says of AND/XOR).
- alignment:   the image holds `objects` objects of distinct classes and distinct colours; the text names
  one of them and a colour that one of them has; label = the named object has the named colour. Negatives
  name the colour of another object. Given the text and the two *bags* (which classes and which colours
  are in the image, all a mean over tokens keeps), both labels are equally likely by construction (the
  class-to-colour assignment is a uniform random bijection), so a pooled model cannot beat 0.5; only a
  model that reads which token has which colour can.

The test set of a task is fixed (drawn from `test_seed`); training and dev sets are drawn per seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

TASKS = ("additive", "interaction", "alignment")
SPLIT_CODES = {"train": 0, "dev": 1, "test": 2}


@dataclass(frozen=True)
class TaskConfig:
    classes: int = 8  # object classes (class 0 is the image cue of additive/interaction)
    colours: int = 8  # object colours
    fillers: int = 8  # filler words
    grid_cells: int = 25  # image tokens (a 5 x 5 grid)
    objects: int = 3  # objects per image (alignment: distinct classes and colours)
    text_length: int = 6  # word tokens per text
    absent_colour_rate: float = 0.0  # alignment: share of negatives whose named colour no object has
    cue_rate_additive: float = 0.3  # P(cue) per side: OR of two 0.3 cues is positive 51% of the time
    cue_rate_interaction: float = 0.7  # P(cue) per side: AND of two 0.7 cues is positive 49% of the time
    train_size: int = 2000
    dev_size: int = 500
    test_size: int = 1000
    test_seed: int = 12345  # the test set of every task is drawn from this seed, whatever the training seed

    @property
    def vocabulary(self) -> int:
        return self.classes + self.colours + 1 + self.fillers  # object words, colour words, the cue, fillers

    @property
    def text_dim(self) -> int:
        return 2 * self.vocabulary  # the word's one-hot, then its text's bag of words

    @property
    def image_dim(self) -> int:
        return self.classes + self.colours + 1  # class one-hot, colour one-hot, object flag

    def object_word(self, k: int) -> int:
        return k

    def colour_word(self, c: int) -> int:
        return self.classes + c

    @property
    def cue_word(self) -> int:
        return self.classes + self.colours

    @property
    def filler_words(self) -> np.ndarray:
        return np.arange(self.cue_word + 1, self.vocabulary)


@dataclass(frozen=True)
class TokenData:
    """One split of one task: all text tokens are real, all image cells are tokens (empty cells are zeros)."""

    text: Tensor  # (N, text_length, text_dim) float32
    image: Tensor  # (N, grid_cells, image_dim) float32
    labels: Tensor  # (N,) float32 0/1

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def positive_rate(self) -> float:
        return float(self.labels.mean())


def make_split(task: str, config: TaskConfig, split: str, seed: int) -> TokenData:
    """The `split` ("train" | "dev" | "test") of `task`; the test split ignores `seed` (always `test_seed`)."""
    if task not in TASKS:
        raise ValueError(f"unknown capacity task {task!r}; known: {list(TASKS)}")
    size = {"train": config.train_size, "dev": config.dev_size, "test": config.test_size}[split]
    drawn_from = config.test_seed if split == "test" else seed
    rng = np.random.default_rng([TASKS.index(task), drawn_from, SPLIT_CODES[split]])
    words = np.empty((size, config.text_length), dtype=np.int64)
    classes = np.empty((size, config.objects), dtype=np.int64)
    colours = np.empty((size, config.objects), dtype=np.int64)
    labels = np.empty(size, dtype=np.float32)
    for i in range(size):
        words[i], classes[i], colours[i], labels[i] = _sample(task, config, rng)
    cells = np.argsort(rng.random((size, config.grid_cells)), axis=1)[:, : config.objects]  # (N, objects) distinct
    return TokenData(_text_tokens(words, config), _image_tokens(cells, classes, colours, config),
                     torch.from_numpy(labels))


def _sample(task: str, config: TaskConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """One sample: (words (L,), object classes (objects,), object colours (objects,), label)."""
    if task == "alignment":
        classes = rng.choice(config.classes, config.objects, replace=False)
        colours = rng.choice(config.colours, config.objects, replace=False)  # a uniform random bijection
        named = int(rng.integers(config.objects))
        label = float(rng.random() < 0.5)
        other = (named + 1 + int(rng.integers(config.objects - 1))) % config.objects  # another object, uniform
        colour = colours[named] if label else colours[other]
        if not label and rng.random() < config.absent_colour_rate:  # a colour no object has
            colour = rng.choice(np.setdiff1d(np.arange(config.colours), colours))
        content = [config.object_word(int(classes[named])), config.colour_word(int(colour))]
        words = rng.choice(config.filler_words, config.text_length)
        words[rng.choice(config.text_length, len(content), replace=False)] = content
        return words, classes, colours, label
    rate = config.cue_rate_additive if task == "additive" else config.cue_rate_interaction
    text_cue, image_cue = rng.random() < rate, rng.random() < rate
    # Distractor words: anything but the cue; distractor objects: any class but the cue class 0.
    words = rng.choice(config.cue_word, config.text_length)
    words = np.where(rng.random(config.text_length) < 0.5, rng.choice(config.filler_words, config.text_length), words)
    if text_cue:
        words[rng.integers(config.text_length)] = config.cue_word
    classes = 1 + rng.choice(config.classes - 1, config.objects, replace=False)
    if image_cue:
        classes[rng.integers(config.objects)] = 0
    colours = rng.integers(config.colours, size=config.objects)
    label = float(text_cue or image_cue) if task == "additive" else float(text_cue and image_cue)
    return words, classes, colours, label


def _text_tokens(words: np.ndarray, config: TaskConfig) -> Tensor:
    one_hot = np.eye(config.vocabulary, dtype=np.float32)[words]  # (N, L, V)
    bag = np.broadcast_to(one_hot.mean(axis=1, keepdims=True), one_hot.shape)  # (N, L, V) the text's bag of words
    return torch.from_numpy(np.concatenate([one_hot, bag], axis=-1))  # (N, L, 2V)


def _image_tokens(cells: np.ndarray, classes: np.ndarray, colours: np.ndarray, config: TaskConfig) -> Tensor:
    size = cells.shape[0]
    tokens = np.zeros((size, config.grid_cells, config.image_dim), dtype=np.float32)  # (N, cells, K + C + 1)
    rows = np.arange(size)[:, None]  # (N, 1)
    tokens[rows, cells, classes] = 1.0  # class one-hot
    tokens[rows, cells, config.classes + colours] = 1.0  # colour one-hot
    tokens[rows, cells, -1] = 1.0  # object flag
    return torch.from_numpy(tokens)
