"""What the XAI chapter (notebooks/04_xai.ipynb) shows: explanations of the grid's trained runs and how
faithful they are.

The runs are loaded as `thesis xai check` loads them (`experiments.loaded_run.load_run`: best weights, eval
transforms, the run's tokenizer and dev-tuned thresholds), so the pictures and the faithfulness numbers
come from the same models. Which movies and genres are shown is decided here, deterministically, from
the run's saved test predictions (and, on the synthetic twin, its ground truth): a build shows the same
examples every time.

Grad-CAM reads the CNN stage `xai.gradcam.GRADCAM_STAGE` (a grid fine enough to localise the twin's
objects), poster maps are drawn only for genres whose evidence is on the poster (on the twin; every
predicted genre on MM-IMDb, which records no evidence), with the twin's ground-truth boxes outlined. The
best variant of the proposed model (`analysis.comparison.best_variant`) is explained too. The claims about
faithfulness are verdicts from intervals (`book.faithfulness`); this module hands the prose numbers and
sentences.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from thesis_lib.analysis.comparison import best_variant, evidence_of_genres
from thesis_lib.analysis.verdicts import listing
from thesis_lib.analysis.xai_check import (
    HEADLINE,
    PRIMARY_SPLIT,
)
from thesis_lib.data.images import load_poster
from thesis_lib.experiments.layout import RunsFolder
from thesis_lib.experiments.loaded_run import DetectionsCache, LoadedRun, load_run
from thesis_lib.experiments.table import results_table
from thesis_lib.genres import GENRES
from thesis_lib.paths import project_root
from thesis_lib.xai.attention import (
    explain_attention,
    modality_weights_over,
    modality_weights_per_genre,
    poster_attention_map,
    rollout_token_importance,
    word_piece_importance,
)
from thesis_lib.xai.faithfulness import POSTER_EVIDENCE_KINDS, twin_evidence_boxes
from thesis_lib.xai.figures import (
    Provenance,
    explain_predicted_genres,
    modality_weights_figure,
    overlay_grid_figure,
    side_by_side_figure,
)
from thesis_lib.xai.gradcam import GRADCAM_STAGE, cam_grid, cam_maps, gradcam_maps
from thesis_lib.xai.words import plot_word_scores, shade_plot, token_positions_of_span

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from thesis_lib.book.provenance import DataDescription
    from thesis_lib.data.mmimdb import Release
    from thesis_lib.xai.words import ShadedPlot

PROPOSED = HEADLINE[0]  # the thesis's model: the headline run of `thesis xai check`
ATTENTION_FUSION = "fusion_attention"  # the fusion with per-movie modality weights
BATCH = 32  # movies per forward pass


# ------------------------------------------------------------------------------------------ the runs


def first_seed(seeds: int | str | Sequence[int]) -> int:
    """The seed whose runs are explained: the first of the profile's `seeds` (a list, or one value as
    papermill's `-p seeds 0` or `-p seeds 0,1` gives it)."""
    if isinstance(seeds, int):
        return seeds
    if isinstance(seeds, str):
        return int(seeds.strip("[] ").split(",")[0])
    return int(list(seeds)[0])


def load_runs(runs_dir: str | Path, release: Release, names: Sequence[str], seed: int,
              optional: Sequence[str] = (), split: str = PRIMARY_SPLIT, *, device: str = "cpu",
              num_workers: int = 0) -> dict[str, LoadedRun]:
    """The named runs of one seed and split, loaded for explanation (detections shared between runs); the
    `optional` ones only when the grid produced them. A relative `runs_dir` is the project's. `device` and
    `num_workers` are the profile's settings: the models (and every explanation of them) go to
    `machine.choose_device(device)`, the GPU when there is one for "auto"."""
    root = Path(runs_dir).expanduser()
    runs_folder = RunsFolder(root if root.is_absolute() else project_root() / root)
    detections: DetectionsCache = {}
    wanted = [*dict.fromkeys(names), *(name for name in optional if name not in names)]
    return {name: load_run(runs_folder.run(split, name, seed), release, detections, device=device,
                           num_workers=num_workers) for name in wanted
            if name in names or runs_folder.run(split, name, seed).is_recorded()}


def use_threads(cpu_threads: int) -> None:
    """The profile's `cpu_threads` for this chapter's kernel (0 leaves torch's default)."""
    if cpu_threads:
        torch.set_num_threads(cpu_threads)


def feature_grid(run: LoadedRun) -> int:
    """Side of the square grid Grad-CAM weighs per poster for the run (its CNN's `GRADCAM_STAGE`, a ViT's
    patch grid): the resolution of every map in the chapter before it is resized to the poster."""
    rows, _ = cam_grid(run.model, run.make_batch([sorted(run.movies)[0]])["image"], GRADCAM_STAGE)
    return rows


def gradcam_stage_name(run: LoadedRun) -> str:
    """What the run's maps read, for the prose: e.g. "layer3 of the CNN" or "the ViT's patch grid"."""
    stages = run.model.encoders["image"].gradcam_stages()
    return f"{GRADCAM_STAGE} of the CNN" if stages else "the ViT's patch grid"


# The ranking that picks the best variant reads the runs' mean scores only, never their intervals: a few
# resamples keep results_table cheap here (its intervals are the experiments chapter's business).
RANKING_RESAMPLES = 10


def best_variant_name(runs_dir: str | Path, seeds: Sequence[int]) -> str | None:
    """The best-scoring variant of the proposed model in the finished runs (`analysis.comparison.best_variant`:
    headline macro-F1, as the experiments chapter ranks them); None when the profile has no variant."""
    root = Path(runs_dir).expanduser()
    return best_variant(results_table(root if root.is_absolute() else project_root() / root, RANKING_RESAMPLES,
                                      list(seeds)), PROPOSED)


def figure_provenance(data: DataDescription, *runs: LoadedRun) -> Provenance:
    """The line under every figure: the data (and split) and the run(s) whose weights it shows."""
    weights = " and ".join(f"run {run.model_name}/seed{run.seed}" for run in runs)
    return Provenance(data=f"{data.short}, test split", weights=f"{weights} (best dev checkpoint)")


def weights_caption(*runs: LoadedRun) -> str:
    """The caption sentence naming the weights, e.g. "Weights: run fusion_cross_attention/seed0 of this
    build (best dev checkpoint)."."""
    names = " and ".join(f"run {run.model_name}/seed{run.seed}" for run in runs)
    return f"Weights: {names} of this build (trained weights, best dev checkpoint)."


def _probabilities(run: LoadedRun, movie_id: str) -> np.ndarray:
    if run.probabilities is None:
        with torch.no_grad():
            return torch.sigmoid(run.model(run.make_batch([movie_id])).logits[0]).float().cpu().numpy()  # (23,)
    return np.asarray(run.probabilities[movie_id])  # (23,)


def predicted_genres(run: LoadedRun, movie_id: str, limit: int) -> list[int]:
    """Up to `limit` genres the run predicts for the movie (probability >= its tuned threshold), most
    probable first; if it predicts none, its single most probable genre (so every poster has a map)."""
    probs = _probabilities(run, movie_id)
    order = np.argsort(-probs, kind="stable")
    chosen = [int(g) for g in order if probs[g] >= run.thresholds[g]][:limit]
    return chosen or [int(order[0])]


def poster_evidence_hits(run: LoadedRun, truth: Mapping[str, Any] | None, movie_id: str) -> list[int]:
    """Genres of the movie that the run predicts, that are true, and (twin) whose evidence is an object
    on the poster; most probable first."""
    probs = _probabilities(run, movie_id)
    genres = run.movies[movie_id].genres
    hits = [GENRES.index(g) for g in genres if probs[GENRES.index(g)] >= run.thresholds[GENRES.index(g)]]
    if truth is not None:
        hits = [g for g in hits if twin_evidence_boxes(truth, movie_id, GENRES[g])]
    return sorted(hits, key=lambda g: -probs[g])


def poster_genres(run: LoadedRun, truth: Mapping[str, Any] | None, movie_id: str, limit: int) -> list[int]:
    """The predicted genres (`predicted_genres`) that a poster map can explain: on the twin those whose
    evidence is on the poster (`POSTER_EVIDENCE_KINDS`: an object or a palette), possibly none; on MM-IMDb,
    which records no evidence, every predicted genre."""
    evidence = evidence_of_genres(truth)
    genres = predicted_genres(run, movie_id, len(GENRES))
    if evidence is not None:
        genres = [g for g in genres if evidence[GENRES[g]] in POSTER_EVIDENCE_KINDS]
    return genres[:limit]


def grid_sentence(truth: Mapping[str, Any] | None) -> str:
    """Which genres the Grad-CAM grid maps and what its boxes are (Markdown, for the caption)."""
    if truth is None:
        return ("MM-IMDb records no evidence kinds and no boxes, so every predicted genre is mapped, whether or not "
                "its evidence is on the poster, and no box is drawn.")
    return ("Only genres whose evidence the twin plants on the poster are mapped (a genre carried by the plot "
            "alone has nothing on the poster to point at); white boxes outline the objects that carry the "
            "genre (the twin's ground truth; a palette genre has none).")


def explained_movies(run: LoadedRun, truth: Mapping[str, Any] | None, count: int) -> list[str]:
    """`count` test movies to explain: those with a correctly predicted genre whose evidence is on the
    poster first (twin; any correct genre on MM-IMDb), then any others, in id order."""
    ids = sorted(run.movies)
    with_hits = [movie_id for movie_id in ids if poster_evidence_hits(run, truth, movie_id)]
    rest = [movie_id for movie_id in ids if movie_id not in with_hits]
    return (with_hits + rest)[:count]


def choice_values(run: LoadedRun, truth: Mapping[str, Any] | None, ids: Sequence[str]) -> dict[str, Any]:
    """How the explained movies were chosen, for the prose: how many have a correct poster-evidence genre."""
    return {"n_explained": len(ids),
            "n_chosen": sum(bool(poster_evidence_hits(run, truth, movie_id)) for movie_id in ids)}


def showcase(run: LoadedRun, truth: Mapping[str, Any] | None, ids: Sequence[str]) -> tuple[str, int]:
    """The (movie, genre) of the side-by-side figures: the first of `ids` with a correct poster-evidence
    genre (prefer image-only evidence on the twin), else the first movie's most probable genre."""
    for wanted in (("image",), POSTER_EVIDENCE_KINDS):
        for movie_id in ids:
            hits = poster_evidence_hits(run, truth, movie_id)
            hits = [g for g in hits if truth is None or truth["genre_evidence"][GENRES[g]] in wanted]
            if hits:
                return movie_id, hits[0]
    return ids[0], predicted_genres(run, ids[0], 1)[0]


def showcase_values(truth: Mapping[str, Any] | None, movie_id: str, genre: int) -> dict[str, Any]:
    """What the showcased genre's evidence is and what the outlined box holds, for the prose (twin)."""
    if truth is None:
        return {"show_kind": "unknown (MM-IMDb has no planted evidence)", "show_outline": "nothing (no ground-truth boxes)"}
    kind = truth["genre_evidence"][GENRES[genre]]
    if not evidence_boxes(truth, movie_id, genre):
        return {"show_kind": kind, "show_outline": "nothing (no object carries this genre on this poster)"}
    outline = "the prop the plot names" if kind == "alignment" else "the planted " + " and ".join(
        truth["rules"][GENRES[genre]]["objects"])
    return {"show_kind": kind, "show_outline": outline}


def showcase_sentence(truth: Mapping[str, Any] | None, movie_id: str, genre: int) -> str:
    """What the showcased genre's evidence is and what the white box outlines (Markdown for the prose); on
    MM-IMDb that there is neither."""
    if truth is None:
        return "MM-IMDb records no evidence kinds and no object boxes, so no box is outlined."
    values = showcase_values(truth, movie_id, genre)
    return f"The genre's evidence kind on the twin is {values['show_kind']}; the white box outlines {values['show_outline']}."


def outline_note(truth: Mapping[str, Any] | None, movie_id: str, genre: int) -> str:
    """What the white boxes of the side-by-side figure are (Markdown, for its caption)."""
    if truth is None:
        return "none (MM-IMDb has no ground-truth boxes)."
    return f"{showcase_values(truth, movie_id, genre)['show_outline']} (the twin's ground truth)."


def evidence_boxes(truth: Mapping[str, Any] | None, movie_id: str, genre: int) -> list[list[int]]:
    """The twin's boxes of the objects that carry the genre (poster pixels); none on MM-IMDb."""
    return [] if truth is None else twin_evidence_boxes(truth, movie_id, GENRES[genre])


# ------------------------------------------------------------------------------------------ Grad-CAM


def gradcam_grid(run: LoadedRun, ids: Sequence[str], truth: Mapping[str, Any] | None, provenance: Provenance,
                 max_genres: int = 3, method: str = "gradcam") -> Figure:
    """One row per movie: its poster, then a Grad-CAM overlay per predicted genre with poster evidence (up
    to `max_genres`, `poster_genres`), each titled with the probability and whether the genre is a true
    label, the genre's ground-truth boxes outlined (twin)."""
    batch = run.make_batch(list(ids))
    maps = []
    for row, movie_id in enumerate(ids):
        genres = poster_genres(run, truth, movie_id, max_genres)
        explained = (explain_predicted_genres(run.model, batch, row, run.thresholds, method, genres=genres)
                     if genres else [])
        maps.append([dataclasses.replace(shown, boxes=tuple(map(tuple, evidence_boxes(truth, movie_id, shown.genre))))
                     for shown in explained])
    posters = [load_poster(run.movies[movie_id].poster) for movie_id in ids]
    labels = [f"{movie_id}\n{_two_lines(', '.join(run.movies[movie_id].genres))}" for movie_id in ids]
    return overlay_grid_figure(posters, maps, provenance, row_labels=labels)


def _short(name: str) -> str:
    """A run name short enough for a panel title ("fusion_cross_attention@minilm" -> "cross_attention@minilm")."""
    return name.removeprefix("fusion_")


def _two_lines(text: str, width: int = 30) -> str:
    """`text` wrapped to at most two lines of `width` characters (a title above a small poster)."""
    import textwrap

    lines = textwrap.wrap(text, width)
    return "\n".join(lines[:2]) + (" ..." if len(lines) > 2 else "")


def _gradcam(run: LoadedRun, movie_id: str, genre: int) -> np.ndarray:
    return gradcam_maps(run.model, run.make_batch([movie_id]), [(0, genre)])[0]  # (S, S)


def _attention(run: LoadedRun, movie_id: str) -> Any:
    return explain_attention(run.model, run.make_batch([movie_id]))


def side_by_side(image_run: LoadedRun, cross_run: LoadedRun, movie_id: str, genre: int,
                 truth: Mapping[str, Any] | None, provenance: Provenance, variant: LoadedRun | None = None) -> Figure:
    """One poster explained for one genre: Grad-CAM of the image-only model, of the cross-attention model
    and (when given, and it reads the poster) of its best variant, then where the plot's tokens attend on
    the poster (cross-attention averaged over blocks, heads and tokens). The twin's evidence boxes are outlined."""
    name = GENRES[genre]
    attention = poster_attention_map(_attention(cross_run, movie_id))[0].numpy()  # (rows, cols) patch grid
    models = [image_run, cross_run, *([variant] if variant is not None and "image" in variant.model.encoders else [])]
    panels = [(f"{_short(run.model_name)}\nGrad-CAM: {name}", _gradcam(run, movie_id, genre)) for run in models]
    panels.append((f"{_short(cross_run.model_name)}\nplot -> poster cells", attention))
    poster = load_poster(cross_run.movies[movie_id].poster)
    return side_by_side_figure(poster, panels, provenance, boxes=evidence_boxes(truth, movie_id, genre))


def cam_methods(run: LoadedRun, movie_id: str, genre: int, truth: Mapping[str, Any] | None,
                provenance: Provenance) -> Figure:
    """Grad-CAM, Grad-CAM++ and HiResCAM of the same model, poster and genre."""
    titles = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "hirescam": "HiResCAM"}
    maps = cam_maps(run.model, run.make_batch([movie_id]), [(0, genre)], tuple(titles))  # one pass, three methods
    panels = [(f"{title}: {GENRES[genre]}", maps[method][0]) for method, title in titles.items()]
    poster = load_poster(run.movies[movie_id].poster)
    return side_by_side_figure(poster, panels, provenance, boxes=evidence_boxes(truth, movie_id, genre))


# ------------------------------------------------------------------------------------ attention


def named_prop_movie(run: LoadedRun, truth: Mapping[str, Any] | None, fallback: str) -> str:
    """A test movie for the word-level figures: on the twin one whose true alignment genre the run
    predicts (the plot names the prop that decides it), else one with any correct poster-evidence genre;
    `fallback` otherwise (and on MM-IMDb)."""
    if truth is None:
        return fallback
    for movie_id in sorted(run.movies):
        hits = poster_evidence_hits(run, truth, movie_id)
        if any(truth["genre_evidence"][GENRES[g]] == "alignment" for g in hits):
            return movie_id
    return fallback


def _cue_spans(truth: Mapping[str, Any] | None, movie_id: str) -> list[tuple[int, int]]:
    if truth is None:
        return []
    return [tuple(cue["char_span"]) for cue in truth["movies"][movie_id]["cue_words"] if cue["role"] == "evidence"]


def _real_ids(batch: Mapping[str, Any]) -> list[int]:
    return batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()


def shaded_plots(run: LoadedRun, movie_id: str, truth: Mapping[str, Any] | None,
                 data: DataDescription) -> tuple[ShadedPlot, ShadedPlot]:
    """The movie's raw plot shaded twice: by how much the poster side attends to each word (cross-
    attention, all layers) and by attention rollout through the text encoder. The twin's planted cue
    words are underlined."""
    batch = run.make_batch([movie_id])
    plot = run.movies[movie_id].plot
    rollout = explain_attention(run.rollout_model, batch)
    read = "the [CLS] row" if rollout.text_pooling == "cls" else "mean of the real tokens' rows: it pools by mean"
    sources = {"cross-attention word importance (poster -> plot)":
               word_piece_importance(explain_attention(run.model, batch))[0],
               f"attention rollout of the text encoder ({read})": rollout_token_importance(rollout)[0]}
    shaded = []
    for label, scores in sources.items():
        words = plot_word_scores(plot, scores.numpy(), run.tokenizer, run.text_cleaning, run.max_length,
                                 input_ids=_real_ids(batch))
        underlined = "; underlined: the twin's planted cue words" if truth is not None else ""
        caption = f"{label}, movie {movie_id}{underlined}. {figure_provenance(data, run).line()}"
        shaded.append(shade_plot(words, caption, highlight=_cue_spans(truth, movie_id)))
    return shaded[0], shaded[1]


def prop_attention(run: LoadedRun, movie_id: str, truth: Mapping[str, Any] | None,
                   provenance: Provenance) -> tuple[Figure, str]:
    """The poster-side cross-attention heat map: where all plot tokens attend, and (twin) where the word
    naming the movie's prop attends, with the prop's box outlined. Returns the figure and the word."""
    explanation = _attention(run, movie_id)
    panels = [("all plot tokens -> patches", poster_attention_map(explanation)[0].numpy())]
    boxes, word = [], ""
    if truth is not None:
        movie = truth["movies"][movie_id]
        mention = movie["named_object_mention"]
        positions = token_positions_of_span(run.movies[movie_id].plot, tuple(mention["char_span"]), run.tokenizer,
                                            run.text_cleaning, run.max_length)
        if positions:
            chosen = torch.zeros_like(explanation.text_mask)  # (1, N_text)
            chosen[0, positions] = True
            word = mention["word"]
            panels.append((f"'{word}' -> patches", poster_attention_map(explanation, text_tokens=chosen)[0].numpy()))
            boxes = [movie["objects"][movie["named_object"]]["box"]]
    poster = load_poster(run.movies[movie_id].poster)
    return side_by_side_figure(poster, panels, provenance, boxes=boxes), word


def cue_sentence(truth: Mapping[str, Any] | None) -> str:
    """How the shaded plots relate to planted cue words (Markdown): underlined and scored on the twin, absent
    on MM-IMDb."""
    if truth is None:
        return "MM-IMDb has no planted cue words, so nothing is underlined and no cue recall is computed."
    return ("On the twin the planted cue words are underlined; the cue-recall numbers of the faithfulness table "
            "say how often these rankings find them.")


def prop_sentence(truth: Mapping[str, Any] | None, movie_id: str, word: str) -> str:
    """What the poster-side attention figure shows of the named prop (Markdown): on the twin the word that
    names it and its box; on MM-IMDb (no named props) the map of all plot tokens only."""
    if truth is None:
        return (f"MM-IMDb records no prop that a plot names, so the figure shows where all plot tokens of movie "
                f"{movie_id} attend, without a box.")
    if not word:
        return (f"On the twin, the plot of movie {movie_id} names one of the props on its poster, but the naming "
                "word falls outside the plot tokens the model reads, so only all plot tokens are drawn.")
    return (f"On the twin, the plot of movie {movie_id} names one of the props on its poster (**{word}**), and for "
            "the alignment genres the genre depends on how that very prop looks; the right panel keeps only the "
            "word's own tokens as queries, and the white box outlines the prop. A map that lights up the box "
            "shows the token-to-patch matching that pooled vectors cannot do.")


def plot_weight_sentence(values: Mapping[str, Any], truth: Mapping[str, Any] | None) -> str:
    """The plot's mean weight over the twin's text genres against its image genres (Markdown, from
    `modality_values`); empty on MM-IMDb, which has no evidence kinds to group the genres by."""
    if truth is None or values["plot_weight"] not in ("more", "not more"):
        return ""
    return (f"On the twin, the plot's mean weight is {values['text_weight_text_genres']:.2f} over the text genres "
            f"and {values['text_weight_image_genres']:.2f} over the image genres: {values['plot_weight']} weight "
            "where the plot carries the genre (means over test movies, a description rather than a test).")


def modality_weights(run: LoadedRun, provenance: Provenance) -> tuple[Figure, pd.DataFrame]:
    """Mean per-movie modality weights of the attention fusion over the test movies of each genre: the
    figure and the (23 x M) table."""
    ids = sorted(run.movies)
    batches = (run.make_batch(ids[start : start + BATCH]) for start in range(0, len(ids), BATCH))
    weights, labels = modality_weights_over(run.model, batches)  # (N, M), (N, 23)
    per_genre = modality_weights_per_genre(weights, labels)  # (23, M)
    modalities = list(run.model.modalities)
    table = pd.DataFrame(per_genre, index=pd.Index(GENRES, name="genre"), columns=modalities)
    return modality_weights_figure(per_genre, modalities, provenance), table


def modality_values(table: pd.DataFrame, truth: Mapping[str, Any] | None) -> dict[str, Any]:
    """Where each modality gets its largest mean weight, and (twin) the plot's mean weight over the text
    genres against the image genres, for the prose. Means over test movies: a description, not a test."""
    peaks = listing([f"{modality} for {table[modality].idxmax()} ({table[modality].max():.2f})"
                     for modality in table.columns])
    if truth is None or "text" not in table.columns:
        return {"weight_peaks": peaks, "text_weight_text_genres": float("nan"),
                "text_weight_image_genres": float("nan"), "plot_weight": "n/a (MM-IMDb has no evidence kinds)"}
    kinds = truth["genre_evidence"]
    text = table.loc[[g for g in GENRES if kinds[g] == "text"], "text"].mean()
    image = table.loc[[g for g in GENRES if kinds[g] == "image"], "text"].mean()
    return {"weight_peaks": peaks, "text_weight_text_genres": text, "text_weight_image_genres": image,
            "plot_weight": "more" if text > image else "not more"}
