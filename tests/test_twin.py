"""Tests of the synthetic MM-IMDb twin generator (thesis_lib.data.twin).

One small twin (200 movies) is generated per module; rare paths (the dropped "News" genre, CMYK
posters, long plots) get raised rates there so they are exercised. Label-level properties at the
default size (2,000 movies) are checked through the label sampler alone, without drawing posters.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
from sklearn.metrics import f1_score

from thesis_lib.data.twin import (
    GENRE_RULES,
    TwinConfig,
    draw_labels,
    generate_twin,
    load_twin_truth,
    oracle_predict,
)
from thesis_lib.data.twin import plot as twin_plot
from thesis_lib.data.twin.plot import GENRE_WORDS
from thesis_lib.data.twin.poster import DRAWERS, GLOW_RGB, PALETTE_COLORS, PROP_RGB, ZONE_X, ZONE_Y
from thesis_lib.data.twin.rules import CLUTTER_KINDS, CUE_WORD_GENRE, NEUTRAL_PALETTES, NOIR_PALETTE, PROP_KINDS
from thesis_lib.genres import DROPPED_GENRES, GENRES, MMIMDB_GENRE_COUNTS, filter_genres

SMALL = TwinConfig(n_movies=200, seed=7, dropped_genre_rate=0.05, cmyk_rate=0.05, long_plot_rate=0.05)


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("twin") / "release"
    generate_twin(root, SMALL, workers=1)
    return root


@pytest.fixture(scope="module")
def truth(twin) -> dict:
    return load_twin_truth(twin)


@pytest.fixture(scope="module")
def split(twin) -> dict[str, list[str]]:
    return json.loads((twin / "split.json").read_text(encoding="utf-8"))


def _documents(twin: Path) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted((twin / "dataset").glob("*.json"))}


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


# --- release format -------------------------------------------------------------------------------

def test_release_has_the_mmimdb_layout_and_keys(twin, split):
    assert set(split) == {"train", "dev", "test"}
    ids = [movie_id for part in split.values() for movie_id in part]
    assert all(isinstance(i, str) and re.fullmatch(r"\d{7}", i) for i in ids)
    names = {path.name for path in (twin / "dataset").iterdir()}
    assert names == {f"{i}.json" for i in ids} | {f"{i}.jpeg" for i in ids}
    for movie_id, document in _documents(twin).items():
        assert isinstance(document["plot"], list) and document["plot"]
        assert all(isinstance(entry, str) and entry for entry in document["plot"])
        assert isinstance(document["genres"], list) and document["genres"]
        assert isinstance(document["title"], str) and isinstance(document["year"], int)
        assert document["kind"] == "movie" and document["imdb id"] == movie_id
        text = (twin / "dataset" / f"{movie_id}.json").read_text(encoding="utf-8")
        assert text == json.dumps(document, sort_keys=True, indent=4, ensure_ascii=False) + "\n"


def test_posters_decode_at_poster_size_and_some_are_cmyk(twin, truth):
    modes = []
    for movie_id in truth["movies"]:
        with Image.open(twin / "dataset" / f"{movie_id}.jpeg") as image:
            assert image.format == "JPEG"
            assert image.size == SMALL.poster_size and min(image.size) >= 224
            modes.append(image.mode)
            assert truth["movies"][movie_id]["poster_mode"] == image.mode
            image.convert("RGB").load()
    assert set(modes) == {"RGB", "CMYK"}


def test_split_is_disjoint_complete_and_proportioned(split, truth):
    parts = [set(split[name]) for name in ("train", "dev", "test")]
    assert sum(len(p) for p in parts) == len(set().union(*parts)) == SMALL.n_movies
    assert set().union(*parts) == set(truth["movies"])
    assert [len(split[name]) for name in ("train", "dev", "test")] == [120, 20, 60]


def test_same_seed_gives_identical_bytes_any_worker_count(tmp_path, twin):
    again = tmp_path / "again"
    generate_twin(again, SMALL, workers=2)  # other process count, same bytes
    assert _all_files(again) == _all_files(twin)
    other = tmp_path / "other"
    generate_twin(other, TwinConfig(n_movies=200, seed=8, dropped_genre_rate=0.05, cmyk_rate=0.05), workers=1)
    for name in ("split.json", "twin_truth.json"):
        assert (other / name).read_bytes() != (twin / name).read_bytes()


def test_refuses_a_non_empty_folder_unless_it_holds_a_twin(tmp_path):
    small = TwinConfig(n_movies=12)
    folder = tmp_path / "busy"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_twin(folder, small)
    with pytest.raises(FileExistsError, match="does not hold a synthetic twin"):
        generate_twin(folder, small, overwrite=True)
    twin_folder = tmp_path / "twin"
    generate_twin(twin_folder, small)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        generate_twin(twin_folder, small)
    calls = []
    summary = generate_twin(twin_folder, TwinConfig(n_movies=12, seed=1), overwrite=True,
                            progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (12, 12) and summary.n_movies == 12 and "12 movies" in str(summary)
    assert load_twin_truth(twin_folder)["seed"] == 1
    assert len(list((twin_folder / "dataset").glob("*.jpeg"))) == 12
    assert not (twin_folder / ".twin-incomplete").exists()


def test_load_twin_truth_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a synthetic twin"):
        load_twin_truth(tmp_path)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="poster_size"):
        TwinConfig(poster_size=(128, 192))
    with pytest.raises(ValueError, match="noise_rate"):
        TwinConfig(noise_rate=1.5)
    with pytest.raises(ValueError, match="split_fractions"):
        TwinConfig(split_fractions=(0.5, 0.1, 0.1))


# --- labels -----------------------------------------------------------------------------------------

def test_genre_frequencies_and_cooccurrence_mimic_mmimdb():
    clean = draw_labels(TwinConfig(n_movies=6000, seed=3)).clean  # (N, 23), no posters drawn
    counts = clean.sum(axis=0)
    assert GENRES[int(np.argmax(counts))] == "Drama" and counts.min() > 0
    assert clean.any(axis=1).all()
    assert 2.3 < clean.sum(axis=1).mean() < 2.8
    mmimdb_rank = np.argsort(np.argsort([-MMIMDB_GENRE_COUNTS[g] for g in GENRES]))
    twin_rank = np.argsort(np.argsort(-counts))
    assert np.corrcoef(mmimdb_rank, twin_rank)[0, 1] > 0.9  # Spearman: the order is roughly kept

    def lift(a: str, b: str) -> float:
        x, y = clean[:, GENRES.index(a)], clean[:, GENRES.index(b)]
        return (x & y).mean() / (x.mean() * y.mean())

    for pair in [("Crime", "Thriller"), ("Action", "Adventure"), ("Animation", "Family"), ("Comedy", "Romance"),
                 ("Music", "Musical"), ("Biography", "History"), ("War", "History"), ("Mystery", "Thriller")]:
        assert lift(*pair) > 1.3, pair
    assert lift("Documentary", "Drama") < 0.8


def test_every_genre_has_ten_test_movies_at_default_size():
    config = TwinConfig()
    labels = draw_labels(config)
    test = labels.split["test"]
    assert len(test) == 600
    per_genre = labels.written[test].sum(axis=0)
    assert per_genre.min() >= 10, dict(zip(GENRES, per_genre.tolist(), strict=False))
    for genre, rule in GENRE_RULES.items():
        if rule.evidence in ("interaction", "alignment"):
            assert per_genre[GENRES.index(genre)] >= 25, genre


def test_label_noise_is_at_least_five_percent_and_json_genres_are_written_labels(twin, truth):
    movies = truth["movies"]
    differ = [movie["written_genres"] != movie["clean_genres"] for movie in movies.values()]
    assert np.mean(differ) >= 0.05
    assert truth["label_noise_measured"] == pytest.approx(np.mean(differ))
    listed_extra = 0
    for movie_id, document in _documents(twin).items():
        assert list(filter_genres(document["genres"])) == movies[movie_id]["written_genres"]
        assert movies[movie_id]["written_genres"] and movies[movie_id]["clean_genres"]
        extra = [g for g in document["genres"] if g not in GENRES]
        assert set(extra) <= set(DROPPED_GENRES)
        listed_extra += bool(extra)
    assert listed_extra > 0  # loaders get a dropped genre to filter


# --- planted evidence -------------------------------------------------------------------------------

def test_evidence_kinds_cover_interaction_and_alignment(truth):
    evidence = truth["genre_evidence"]
    assert set(evidence) == set(GENRES)
    kinds = list(evidence.values())
    assert set(kinds) == {"image", "text", "both", "interaction", "alignment"}
    assert kinds.count("interaction") >= 2 and kinds.count("alignment") >= 2
    assert set(truth["rules"]) == set(GENRES)


def test_boxes_lie_inside_the_evidence_zone_and_are_neither_huge_nor_tiny(truth):
    width, height = SMALL.poster_size
    for movie in truth["movies"].values():
        assert 3 <= len(movie["objects"]) <= 12
        for obj in movie["objects"]:
            x0, y0, x1, y1 = obj["box"]
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
            assert (x1 - x0) * (y1 - y0) <= 0.15 * width * height
            assert min(x1 - x0, y1 - y0) >= 20  # still visible at 112 px input
            assert ZONE_X[0] * width - 1 <= x0 and x1 <= ZONE_X[1] * width + 1  # clear of corners and borders
            assert ZONE_Y[0] * height - 1 <= y0 and y1 <= ZONE_Y[1] * height + 1


def test_objects_survive_the_default_random_resized_crop(truth):
    """Posters are squashed to a square, then cropped with scale >= 0.7 (data/images.py defaults)."""
    import torch
    from torchvision.transforms import RandomResizedCrop

    torch.manual_seed(0)
    square = torch.zeros(1, 224, 224)
    crops = np.array([RandomResizedCrop.get_params(square, scale=(0.7, 1.0), ratio=(3 / 4, 4 / 3))
                      for _ in range(300)], dtype=float)  # (300, 4): top, left, height, width
    top, left, crop_h, crop_w = crops.T
    width, height = SMALL.poster_size
    for movie in truth["movies"].values():
        for obj in movie["objects"]:
            x0, y0, x1, y1 = np.array(obj["box"]) / [width, height, width, height] * 224  # squashed coordinates
            overlap_w = np.clip(np.minimum(x1, left + crop_w) - np.maximum(x0, left), 0, None)  # (300,)
            overlap_h = np.clip(np.minimum(y1, top + crop_h) - np.maximum(y0, top), 0, None)  # (300,)
            visible = overlap_w * overlap_h / ((x1 - x0) * (y1 - y0))  # (300,) fraction of the object kept
            assert visible.mean() > 0.85 and (visible >= 0.5).mean() > 0.85, obj


def test_every_rule_object_and_palette_can_be_drawn():
    drawable_palettes = set(PALETTE_COLORS)
    assert {NOIR_PALETTE, *NEUTRAL_PALETTES} == drawable_palettes
    for rule in GENRE_RULES.values():
        assert rule.object_kind is None or rule.object_kind in DRAWERS
    assert set(PROP_KINDS) | set(CLUTTER_KINDS) <= set(DRAWERS)


def test_poster_pixels_match_the_recorded_prop_looks(twin, truth):
    """A red prop has red pixels in its box, a glowing one its halo colour; both are rare elsewhere."""
    def share(pixels: np.ndarray, rgb: tuple[int, int, int]) -> float:
        return float((np.abs(pixels.astype(int) - rgb).sum(axis=-1) < 90).mean())

    red, not_red, glow, no_glow = [], [], [], []
    for movie_id, movie in list(truth["movies"].items())[:80]:
        with Image.open(twin / "dataset" / f"{movie_id}.jpeg") as image:
            pixels = np.asarray(image.convert("RGB"))  # (H, W, 3)
        for obj in movie["objects"]:
            if obj["role"] != "prop":
                continue
            x0, y0, x1, y1 = obj["box"]
            crop = pixels[y0:y1, x0:x1]
            (red if obj["color"] == "red" else not_red).append(share(crop, PROP_RGB["red"]))
            (glow if obj["glow"] else no_glow).append(share(crop, GLOW_RGB))
    assert min(red) > 0.08 and np.median(not_red) < 0.02
    assert min(glow) > 0.04 and np.median(no_glow) < 0.01


def test_cue_spans_point_at_the_words_in_the_longest_plot(twin, truth):
    cue_pattern = re.compile(r"\b(" + "|".join(CUE_WORD_GENRE) + r")\b", re.IGNORECASE)
    prop_pattern = re.compile(r"\b(" + "|".join(PROP_KINDS) + r")\b", re.IGNORECASE)
    for movie_id, document in _documents(twin).items():
        movie = truth["movies"][movie_id]
        plots = document["plot"]
        main_index = movie["named_object_mention"]["plot_index"]
        assert len(plots[main_index]) == max(len(p) for p in plots)
        main = plots[main_index]
        recorded = set()
        for cue in movie["cue_words"]:
            start, end = cue["char_span"]
            assert cue["plot_index"] == main_index
            assert main[start:end].lower() == cue["word"] and CUE_WORD_GENRE[cue["word"]] == cue["genre"]
            assert len(main[:start].split()) < 100  # within the first ~100 words (before BERT truncation)
            recorded.add(start)
        # No cue word appears anywhere without being recorded (the filler never leaks one).
        for index, plot in enumerate(plots):
            found = {m.start() for m in cue_pattern.finditer(plot)}
            assert found == (recorded if index == main_index else set()), (movie_id, index)
        # The plot names exactly one prop: the named object on the poster.
        mention = movie["named_object_mention"]
        start, end = mention["char_span"]
        assert main[start:end] == mention["word"] == movie["objects"][movie["named_object"]]["label"]
        assert [m.start() for p in plots for m in prop_pattern.finditer(p)] == [start]
        for mention in movie["genre_mentions"]:
            start, end = mention["char_span"]
            assert main[start:end] == mention["word"] == GENRE_WORDS[mention["genre"]]
            assert mention["genre"] in movie["clean_genres"]


def test_plot_lengths_vary_and_some_exceed_bert_length(twin, truth):
    lengths = []
    for movie_id, document in _documents(twin).items():
        main_index = truth["movies"][movie_id]["named_object_mention"]["plot_index"]
        lengths.append(len(document["plot"][main_index].split()))
    lengths = np.array(lengths)
    assert lengths.min() >= 40 and np.median(lengths) < 250
    assert (lengths > 512).any()  # > 512 words is > 512 WordPiece tokens
    assert any(len(d["plot"]) > 1 for d in _documents(twin).values())


def test_cue_words_survive_text_cleaning_and_filler_never_uses_them():
    for word in [*CUE_WORD_GENRE, *PROP_KINDS]:
        assert re.fullmatch(r"[a-z]+", word) and word not in ENGLISH_STOP_WORDS, word
    planted = set(CUE_WORD_GENRE) | set(PROP_KINDS) | set(GENRE_WORDS.values())
    assert filler_words().isdisjoint(planted)


def filler_words() -> set[str]:
    """Every lower-cased word the plot filler can produce (templates and slot values)."""
    texts = [*twin_plot.FILLER_TEMPLATES, *twin_plot.CUE_TEMPLATES, *twin_plot.CUE_LIST_TEMPLATES,
             *twin_plot.PROP_TEMPLATES, *twin_plot.GENRE_MENTION_TEMPLATES]
    texts += [value for values in twin_plot.SLOT_VALUES.values() for value in values]
    words = set()
    for text in texts:
        without_slots = re.sub(r"\{[a-z_0-9]+\}", " ", text)
        words.update(word.lower().strip("'-") for word in re.findall(r"[A-Za-zÀ-ÿ'-]+", without_slots))
    return words


def test_distractors_make_single_cues_insufficient(truth):
    movies = list(truth["movies"].values())
    for genre in ("Thriller", "Fantasy"):  # interaction: object or word alone on movies without the genre
        rule = truth["rules"][genre]
        without = [m for m in movies if genre not in m["clean_genres"]]
        has_object = [any(o["label"] in rule["objects"] for o in m["objects"]) for m in without]
        has_word = [any(c["word"] in rule["cue_words"] for c in m["cue_words"]) for m in without]
        assert any(has_object) and any(has_word)
        assert not any(o and w for o, w in zip(has_object, has_word, strict=False))
    # alignment: a red (or glowing) prop the plot does not name is common on movies without the genre
    no_crime = [m for m in movies if "Crime" not in m["clean_genres"]]
    assert np.mean([any(o["color"] == "red" for o in m["objects"] if o["role"] == "prop") for m in no_crime]) > 0.2
    no_mystery = [m for m in movies if "Mystery" not in m["clean_genres"]]
    assert np.mean([any(o["glow"] for o in m["objects"]) for m in no_mystery]) > 0.2


# --- oracle -----------------------------------------------------------------------------------------

def test_oracle_reproduces_clean_labels_and_reaches_bayes_f1(truth, split):
    ids = list(truth["movies"])
    clean = np.array([[g in truth["movies"][i]["clean_genres"] for g in GENRES] for i in ids], dtype=np.int64)
    predicted = oracle_predict(truth, ids)
    assert predicted.shape == (len(ids), 23) and set(np.unique(predicted)) <= {0, 1}
    assert (predicted == clean).all()
    test = split["test"]
    written = np.array([[g in truth["movies"][i]["written_genres"] for g in GENRES] for i in test], dtype=np.int64)
    on_test = oracle_predict(truth, test)
    assert f1_score(written, on_test, average="macro", zero_division=0) == pytest.approx(truth["bayes_macro_f1"])
    assert f1_score(written, on_test, average="micro", zero_division=0) == pytest.approx(truth["bayes_micro_f1"])
    assert truth["bayes_micro_f1"] < 1.0 and truth["bayes_macro_f1"] < 1.0  # label noise caps every model


def test_oracle_reads_primitive_facts_not_recorded_genres(truth):
    edited = copy.deepcopy(truth)
    for movie in edited["movies"].values():
        movie["clean_genres"] = []
        movie["written_genres"] = []
    ids = list(truth["movies"])
    assert (oracle_predict(edited, ids) == oracle_predict(truth, ids)).all()

    crime = next(i for i in ids if "Crime" in truth["movies"][i]["clean_genres"])
    movie = edited["movies"][crime]
    movie["objects"][movie["named_object"]]["color"] = "blue"
    assert oracle_predict(edited, [crime])[0, GENRES.index("Crime")] == 0

    horror = next(i for i in ids if "Horror" in truth["movies"][i]["clean_genres"])
    movie = edited["movies"][horror]
    named = movie["objects"][movie["named_object"]]
    movie["objects"] = [o for o in movie["objects"] if o["label"] != "ghost"]
    movie["named_object"] = next(k for k, o in enumerate(movie["objects"]) if o is named)
    before, after = oracle_predict(truth, [horror])[0], oracle_predict(edited, [horror])[0]
    assert before[GENRES.index("Horror")] == 1 and after[GENRES.index("Horror")] == 0
    assert np.delete(after, GENRES.index("Horror")).tolist() == np.delete(before, GENRES.index("Horror")).tolist()
