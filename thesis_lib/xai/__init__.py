"""Explainability: Grad-CAM on posters, attention maps on plots, and their faithfulness on the twin.

- `gradcam`: `gradcam_maps(model, batch, [(row, genre), ...], method)` for any image-reading model
  (the plot and objects held fixed by `PosterOnlyModel`), at the CNN stage `GRADCAM_STAGE` (layer3: an
  8 x 8 grid at 128 px; a ViT reads its patch grid), `cam_maps` (several methods from one pass),
  `cam_grid`, `to_poster_frame`, `randomized_copy`.
- `attention`: `explain_attention(model, batch)`, then `word_piece_importance` (cross-attention,
  poster -> plot), `poster_attention_map` (plot -> patches), `rollout_token_importance` (text encoder,
  read as it pools: the CLS row or the mean of the real tokens' rows),
  `modality_weights_per_genre` (attention fusion).
- `words`: word pieces -> words of the raw plot (`plot_word_scores`), shaded as HTML (`shade_plot`).
- `faithfulness`: pointing game, deletion AUC, cue recall@k, bootstrap intervals of means and differences.
- `figures`: overlays, grids, side-by-side and modality-weight figures (matplotlib, imported lazily).
- `check`: the faithfulness numbers of one trained run (`evaluate_run`; `analysis.xai_check` runs it over a
  runs folder: `thesis xai check`).

pytorch-grad-cam and matplotlib are imported only inside the functions that use them.

In a notebook (a batch from the run's collator, the movie's poster and plot at hand):

    maps = explain_predicted_genres(model, batch, row=0, thresholds=run_thresholds)
    overlay_grid_figure([load_poster(movie.poster)], [maps], Provenance("synthetic twin, test", "run image_vit/seed0"))
    explanation = explain_attention(cross_model, batch)
    words = plot_word_scores(movie.plot, word_piece_importance(explanation)[0].numpy(), tokenizer, CLEAN, 64)
    shade_plot(words, caption="Data: synthetic twin, test | Weights: run fusion_cross_attention/seed0")
    side_by_side_figure(poster, [("image_vit Grad-CAM: Horror", maps[0].cam),
                                 ("cross-attention, plot -> patches", poster_attention_map(explanation)[0])], ...)
"""

from thesis_lib.xai.attention import (
    AttentionExplanation,
    attention_rollout,
    explain_attention,
    modality_weights_per_genre,
    poster_attention_map,
    region_attention,
    rollout_token_importance,
    word_piece_importance,
)
from thesis_lib.xai.faithfulness import (
    Estimate,
    cue_recall_at_k,
    deletion_auc,
    deletion_curve,
    difference_with_ci,
    mean_with_ci,
    pointing_hit,
    random_cue_recall_at_k,
    twin_evidence_boxes,
)
from thesis_lib.xai.gradcam import (
    CAM_METHODS,
    GRADCAM_STAGE,
    PosterOnlyModel,
    cam_grid,
    cam_maps,
    gradcam_maps,
    point_to_poster_frame,
    randomized_copy,
    select_rows,
    to_poster_frame,
)
from thesis_lib.xai.words import PlotWords, ShadedPlot, merge_piece_scores, plot_word_scores, shade_plot

__all__ = [
    "CAM_METHODS",
    "GRADCAM_STAGE",
    "AttentionExplanation",
    "Estimate",
    "PlotWords",
    "PosterOnlyModel",
    "ShadedPlot",
    "attention_rollout",
    "cam_grid",
    "cam_maps",
    "cue_recall_at_k",
    "deletion_auc",
    "deletion_curve",
    "difference_with_ci",
    "explain_attention",
    "gradcam_maps",
    "mean_with_ci",
    "merge_piece_scores",
    "modality_weights_per_genre",
    "plot_word_scores",
    "point_to_poster_frame",
    "pointing_hit",
    "poster_attention_map",
    "random_cue_recall_at_k",
    "randomized_copy",
    "region_attention",
    "rollout_token_importance",
    "select_rows",
    "shade_plot",
    "to_poster_frame",
    "twin_evidence_boxes",
    "word_piece_importance",
]
