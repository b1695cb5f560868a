"""The settings the methods prose names (its equations' symbols and the training recipe), and the twin
generator's, as glue values: the prose of 3.1 and 3.2 quotes them, so a profile change changes the text.

    glue_values(**methods.recipe_values(settings, grid[PROPOSED].config, grid[settings.fusion_text_source].config))
    glue_values(**methods.twin_values(settings, truth))
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from thesis_lib.data.twin.labels import target_frequencies
from thesis_lib.detection import default_detector_config
from thesis_lib.experiments.profile import Profile
from thesis_lib.experiments.runner import profile_train_config
from thesis_lib.genres import GENRES
from thesis_lib.metrics.thresholds import DEFAULT_THRESHOLD_GRID
from thesis_lib.models.configs import ModelConfig
from thesis_lib.models.fusion.late import WEIGHT_STEP


def recipe_values(settings: Profile, proposed: ModelConfig, text_source: ModelConfig) -> dict[str, Any]:
    """Encoders, fusions, head and training recipe of this build: `proposed` is the proposed model's config
    as the grid builds it, `text_source` the config of the run whose text encoder the fusions reuse."""
    fusion, objects = proposed.fusion, proposed.objects
    train = profile_train_config(settings, torch.device("cpu"), seed=settings.seeds[0], processes=1)
    detector = default_detector_config(objects.source, settings.model_size)
    late_step = WEIGHT_STEP  # fit_late_fusion_weights' grid
    return {
        "text_max_length": settings.text_max_length, "image_size": settings.image_size,
        "max_regions": detector.max_regions, "score_threshold": detector.score_threshold,
        "object_dim": objects.dim, "object_classes": objects.num_classes,
        "summary_width": 3 * objects.num_classes + (objects.person_class is not None),
        "max_people": objects.max_people,
        "fusion_dim": fusion.dim, "fusion_dropout": fusion.dropout, "fusion_depth": fusion.depth,
        "fusion_heads": fusion.heads, "fusion_head_dim": fusion.dim // fusion.heads,
        "fusion_ffn_ratio": fusion.ffn_ratio, "fusion_bidirectional": fusion.bidirectional,
        "fusion_gating": fusion.gating, "head_dropout": proposed.head_dropout,
        "fusion_backbones": settings.fusion_backbones, "fusion_text_source": settings.fusion_text_source,
        "fusion_image_source": settings.fusion_image_source, "fusion_text_pooling": text_source.text.pooling,
        "late_step": late_step, "late_candidates": math.comb(round(1 / late_step) + 2, 2),  # 3 modalities
        "pos_weight": settings.pos_weight, "lr_head": settings.lr_head, "lr_backbone": settings.lr_backbone,
        "weight_decay": settings.weight_decay, "grad_clip": train.grad_clip_norm,
        "warmup_ratio": settings.warmup_ratio, "lr_schedule": settings.lr_schedule,
        "plateau_factor": settings.plateau_factor, "epochs": settings.epochs, "batch_size": settings.batch_size,
        "monitor": settings.monitor, "epoch_threshold": train.threshold, "min_delta": train.min_delta,
        "patience": settings.patience, "lr_scales": ", ".join(f"{scale:g}" for scale in settings.lr_scales),
        "n_trials": len(settings.lr_scales), "grid_size": DEFAULT_THRESHOLD_GRID.size,
        "grid_min": float(DEFAULT_THRESHOLD_GRID.min()), "grid_max": float(DEFAULT_THRESHOLD_GRID.max()),
    }


def twin_values(settings: Profile, truth: Mapping[str, Any] | None) -> dict[str, Any]:
    """The twin generator's settings (the twin this profile generates) and, from `truth` (its
    twin_truth.json; None on MM-IMDb: NaN), what the generated twin measured."""
    twin = settings.twin_config()
    values = {
        "twin_movies": twin.n_movies, "twin_floor": twin.genre_frequency_floor,
        "noir_target": float(target_frequencies(twin.genre_frequency_floor)[GENRES.index("Film-Noir")]),
        "max_genres": twin.max_genres_per_movie, "twin_second_cue": twin.second_cue_rate,
        "twin_interaction_distractor": twin.interaction_distractor_rate, "twin_props": twin.props_per_poster,
        "twin_glow": twin.distractor_glow_rate, "twin_poster_w": twin.poster_size[0],
        "twin_poster_h": twin.poster_size[1], "twin_long_plot": twin.long_plot_rate,
        "twin_genre_word": twin.genre_word_rate, "twin_noise": twin.noise_rate,
    }
    if truth is None:
        return values | {"twin_noise_measured": math.nan, "noir_written": math.nan, "twin_bayes_macro_f1": math.nan}
    written = [movie["written_genres"] for movie in truth["movies"].values()]
    return values | {"twin_noise_measured": truth["label_noise_measured"],
                     "noir_written": float(np.mean(["Film-Noir" in genres for genres in written])),
                     "twin_bayes_macro_f1": truth["bayes_macro_f1"]}
