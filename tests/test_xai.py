"""The XAI library on tiny models: Grad-CAM maps (shapes, ranges, one target per image and genre), the
fusion wrapper that holds the plot fixed, model randomisation, attention maps and rollout, word-piece
merging (WordPiece and byte-level BPE) with HTML shading, and the figures' provenance lines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerFast

from thesis_lib.data.text import CLEAN, RAW, clean_words
from thesis_lib.data.tokenizers import train_bpe_tokenizer
from thesis_lib.genres import NUM_GENRES
from thesis_lib.models import build_model
from thesis_lib.xai.attention import (
    attention_rollout,
    explain_attention,
    modality_weights_over,
    modality_weights_per_genre,
    poster_attention_map,
    region_attention,
    rollout_token_importance,
    word_piece_importance,
)
from thesis_lib.xai.faithfulness import cam_peak
from thesis_lib.xai.gradcam import PosterOnlyModel, gradcam_maps, randomized_copy, select_rows
from thesis_lib.xai.words import (
    merge_piece_scores,
    piece_word_index,
    plot_word_scores,
    shade_plot,
    token_positions_of_span,
)

SIZE = 64  # posters for the untrained models: 4 x 4 ViT patches, a 2 x 2 ResNet grid; enough for every path
TINY_TEXT = dict(text_backbone="random-bert-small", text_pretrained=False, text_vocab_size=200, text_max_length=32)
TINY_RESNET = (("channels", (8, 16, 32, 64)),)


def tiny_model(name: str, **overrides):
    torch.manual_seed(0)
    if name.startswith("fusion") or name.startswith("text"):
        overrides = {**TINY_TEXT, **overrides}
    if "resnet" in name:
        overrides.setdefault("image_timm_kwargs", TINY_RESNET)
    if not name.startswith("text"):
        overrides.setdefault("image_input_size", SIZE)
    return build_model(name, **overrides).eval()


def tiny_batch(model, batch_size: int = 3, length: int = 8, seed: int = 0) -> dict:
    """Posters, plots (the first one padded) and detections (the first poster has none)."""
    generator = torch.Generator().manual_seed(seed)
    batch: dict = {"ids": [f"{i:07d}" for i in range(batch_size)]}
    batch["image"] = torch.randn(batch_size, 3, SIZE, SIZE, generator=generator)  # (B, 3, S, S)
    if "text" in model.encoders:
        ids = torch.randint(5, 200, (batch_size, length), generator=generator)  # (B, L)
        mask = torch.ones(batch_size, length, dtype=torch.long)  # (B, L)
        mask[0, length // 2 :] = 0
        batch["input_ids"], batch["attention_mask"] = ids.masked_fill(mask == 0, 0), mask
    if "objects" in model.encoders:
        regions = 3
        corner = torch.rand(batch_size, regions, 2, generator=generator) * 0.5  # (B, R, 2)
        mask = torch.ones(batch_size, regions, dtype=torch.bool)  # (B, R)
        mask[0] = False
        batch["objects"] = {
            "boxes": torch.cat([corner, corner + 0.3], dim=-1),  # (B, R, 4)
            "classes": torch.randint(0, 10, (batch_size, regions), generator=generator),
            "scores": torch.rand(batch_size, regions, generator=generator),
            "mask": mask,
        }
    return batch


# ------------------------------------------------------------------------------------------- Grad-CAM


@pytest.mark.parametrize(
    ("name", "method"),
    [("image_resnet50", "gradcam"), ("image_vit", "gradcam++"), ("fusion_cross_attention", "hirescam"),
     ("fusion_late", "gradcam"), ("fusion_early", "gradcam")],
)
def test_maps_are_one_per_pair_in_the_input_frame_and_in_unit_range(name, method):
    model = tiny_model(name)
    batch = tiny_batch(model)
    pairs = [(0, 3), (1, 7), (2, 7), (1, 0)]
    maps = gradcam_maps(model, batch, pairs, method=method, chunk_size=3)  # two chunks
    assert maps.shape == (len(pairs), SIZE, SIZE) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0 + 1e-6
    assert np.isfinite(maps).all()
    assert any(m.max() == pytest.approx(1.0, abs=1e-4) for m in maps)  # min-max scaled, not all flat


def test_explaining_touches_no_parameter_and_works_on_a_frozen_image_encoder():
    model = tiny_model("fusion_attention", image_frozen=True)
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    assert not any(flags[n] for n in flags if n.startswith("encoders.image."))
    maps = gradcam_maps(model, tiny_batch(model), [(0, 1), (2, 5)])
    assert maps.shape == (2, SIZE, SIZE) and maps.max() > 0  # gradients reached the frozen backbone's activations
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags  # restored
    assert all(p.grad is None for p in model.parameters())  # no parameter gradient was written


def test_the_fusion_wrapper_holds_the_plot_fixed_and_lets_the_gradient_reach_the_poster():
    model = tiny_model("fusion_cross_attention")
    batch = tiny_batch(model)
    text_calls = []
    model.encoders["text"].register_forward_hook(lambda *args: text_calls.append(1))
    wrapper = PosterOnlyModel(model, batch)
    assert len(text_calls) == 1  # encoded once, at construction
    images = batch["image"].clone().requires_grad_(True)
    logits = wrapper(images)  # (B, 23)
    assert len(text_calls) == 1  # ... and never again: the plot is held, not re-read
    torch.testing.assert_close(logits, model(batch).logits)  # the same movies, the same answer
    logits[:, 4].sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0  # the poster gets the gradient
    text = model.encoders["text"]
    assert all(p.grad is None for p in text.parameters())  # text embeddings and layers get none
    assert not wrapper.held["text"].tokens.requires_grad
    assert any(p.grad is not None for p in model.encoders["image"].parameters())
    # A different plot in the batch does not change what the wrapper computes: it holds the first one.
    other = dict(batch, input_ids=torch.randint(5, 200, batch["input_ids"].shape))
    torch.testing.assert_close(PosterOnlyModel(model, batch)(batch["image"]), wrapper(batch["image"]).detach())
    assert not torch.allclose(PosterOnlyModel(model, other)(batch["image"]), logits.detach())


def test_select_rows_repeats_rows_of_every_part_of_the_batch():
    model = tiny_model("fusion_cross_attention")
    batch = tiny_batch(model)
    chosen = select_rows(batch, [2, 0, 2])
    assert chosen["ids"] == ["0000002", "0000000", "0000002"]
    torch.testing.assert_close(chosen["image"][1], batch["image"][0])
    torch.testing.assert_close(chosen["objects"]["mask"], batch["objects"]["mask"][[2, 0, 2]])


# A trained toy: a red square means genre 0, a blue square genre 1, anywhere on the poster.
TOY, OBJECT = 96, 24
RED, BLUE = (1.5, -1.0, -1.0), (-1.0, -1.0, 1.5)


def toy_posters(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.rand(count, 3, TOY, TOY, generator=generator) * 0.3 - 0.15  # (N, 3, S, S) dim noise
    labels = torch.zeros(count, NUM_GENRES)  # (N, 23)
    for row in range(count):
        for genre, colour in enumerate((RED, BLUE)):
            if torch.rand(1, generator=generator) < 0.5:
                y, x = torch.randint(0, TOY - OBJECT, (2,), generator=generator).tolist()
                images[row, :, y : y + OBJECT, x : x + OBJECT] = torch.tensor(colour)[:, None, None]
                labels[row, genre] = 1.0
    return images, labels


@pytest.fixture(scope="module")
def toy_model():
    """A tiny ResNet trained for ~7 s to find red and blue squares (BatchNorm makes this quick)."""
    torch.manual_seed(0)
    model = build_model("image_resnet50", image_input_size=TOY, image_timm_kwargs=TINY_RESNET)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(60):
        images, labels = toy_posters(16, generator)
        loss = F.binary_cross_entropy_with_logits(model({"image": images}).logits[:, :2], labels[:, :2])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    images, labels = toy_posters(64, generator)
    with torch.no_grad():
        accuracy = ((model({"image": images}).logits[:, :2] > 0) == labels[:, :2].bool()).float().mean()
    assert accuracy > 0.9, f"the toy model did not learn its squares (accuracy {accuracy:.2f})"
    return model


@pytest.mark.slow
def test_every_poster_and_genre_is_explained_by_its_own_target(toy_model):
    images = torch.rand(2, 3, TOY, TOY, generator=torch.Generator().manual_seed(1)) * 0.3 - 0.15
    top_left, bottom_right = (slice(8, 32), slice(8, 32)), (slice(64, 88), slice(64, 88))
    places = {(0, 0): top_left, (0, 1): bottom_right, (1, 0): bottom_right, (1, 1): top_left}  # (row, genre)
    for (row, genre), (ys, xs) in places.items():
        images[row, :, ys, xs] = torch.tensor((RED, BLUE)[genre])[:, None, None]
    pairs = list(places)
    maps = gradcam_maps(toy_model, {"image": images}, pairs)
    for (row, genre), cam in zip(pairs, maps, strict=True):
        ys, xs = places[(row, genre)]
        peak = np.array(cam_peak(cam))
        own = np.array([(ys.start + ys.stop) / 2, (xs.start + xs.stop) / 2])
        other = TOY - own  # the other square sits mirrored through the centre
        assert np.linalg.norm(peak - own) < np.linalg.norm(peak - other), (row, genre, peak)


def test_randomized_copy_redraws_every_weight_and_leaves_the_model_alone():
    model = tiny_model("fusion_cross_attention")
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    randomized = randomized_copy(model, seed=0)
    for name, param in randomized.named_parameters():
        torch.testing.assert_close(model.get_parameter(name), before[name])  # the original is untouched
        if param.numel() > 1 and before[name].std() > 0:
            assert not torch.equal(param, before[name]), f"{name} was not re-initialised"
    again = randomized_copy(model, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(again.parameters(), randomized.parameters(), strict=True))


# ------------------------------------------------------------------------------------------ attention


def test_cross_attention_word_importance_and_poster_map():
    model = tiny_model("fusion_cross_attention")
    batch = tiny_batch(model)
    explanation = explain_attention(model, batch)
    importance = word_piece_importance(explanation)  # (B, L) mean over layers
    text_mask = batch["attention_mask"].bool()
    torch.testing.assert_close(importance.sum(-1), torch.ones(3))  # a distribution over the real tokens
    assert (importance[~text_mask] == 0).all()
    per_layer = word_piece_importance(explanation, layer=0, queries="objects")
    assert per_layer.shape == importance.shape
    assert (per_layer[0] == 0).all()  # the first poster has no detected regions to ask with
    poster_map = poster_attention_map(explanation)  # (B, 4, 4) ViT patches, CLS left out
    assert poster_map.shape == (3, 4, 4) and (poster_map >= 0).all()
    regions = region_attention(explanation)
    assert regions.shape == (3, 3) and (regions[0] == 0).all()
    total = poster_map.flatten(1).sum(-1) + regions.sum(-1)  # what went neither to patches nor regions went to CLS
    assert (total <= 1 + 1e-5).all()
    with pytest.raises(ValueError, match="text_need_attentions"):
        rollout_token_importance(explanation)


def test_attention_rollout_matches_a_hand_computation_and_reads_the_text_encoder():
    identity = torch.eye(3).expand(1, 2, 3, 3)  # (B, H, L, L) each token attends to itself
    torch.testing.assert_close(attention_rollout([identity, identity]), torch.eye(3).expand(1, 3, 3))
    uniform = torch.full((1, 1, 2, 2), 0.5)  # (B, H, L, L)
    mixed = 0.5 * torch.eye(2) + 0.5 * uniform[0, 0]  # [[.75, .25], [.25, .75]]
    torch.testing.assert_close(attention_rollout([uniform, uniform])[0], mixed @ mixed)
    # A padded key gets no flow, and rows still sum to 1.
    masked = attention_rollout([uniform], mask=torch.tensor([[True, False]]))[0]
    torch.testing.assert_close(masked[0], torch.tensor([1.0, 0.0]))
    model = tiny_model("text_bert", text_need_attentions=True)
    batch = tiny_batch(model)
    importance = rollout_token_importance(explain_attention(model, batch))  # (B, L)
    assert importance.shape == batch["input_ids"].shape
    torch.testing.assert_close(importance.sum(-1), torch.ones(3))
    assert (importance[0, 4:] == 0).all()  # padding


def test_modality_weights_per_genre_average_the_genres_movies():
    weights = np.array([[0.8, 0.2], [0.4, 0.6], [0.1, 0.9]])  # (N, M)
    labels = np.zeros((3, NUM_GENRES))
    labels[[0, 1], 0] = 1  # genre 0: movies 0 and 1
    labels[2, 5] = 1
    per_genre = modality_weights_per_genre(weights, labels)
    assert per_genre.shape == (NUM_GENRES, 2)
    np.testing.assert_allclose(per_genre[0], [0.6, 0.4])
    np.testing.assert_allclose(per_genre[5], [0.1, 0.9])
    assert np.isnan(per_genre[1]).all()


def test_modality_weights_are_collected_over_batches_of_an_attention_fusion():
    model = tiny_model("fusion_attention")
    batches = [dict(tiny_batch(model, seed=s), labels=torch.eye(NUM_GENRES)[s : s + 3]) for s in (0, 1)]
    weights, labels = modality_weights_over(model, batches)
    assert weights.shape == (6, 3) and labels.shape == (6, NUM_GENRES)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="genre_modality_weights"):
        modality_weights_over(tiny_model("fusion_late"), batches)


# ------------------------------------------------------------------------------------- word pieces


def test_pieces_merge_into_words_from_hand_made_offsets():
    cleaned = "stalkerish ghost unbelievable"
    spans = [(0, 10), (11, 16), (17, 29)]
    wordpiece = [(0, 0), (0, 7), (7, 10), (11, 16), (17, 19), (19, 25), (25, 29), (0, 0)]  # [CLS] ... [SEP]
    assert piece_word_index(wordpiece, spans).tolist() == [-1, 0, 0, 1, 2, 2, 2, -1]
    # Byte-level BPE without trimmed offsets: a piece "Ġghost" starts on the joining space.
    bpe = [(0, 0), (0, 7), (7, 8), (8, 10), (10, 16), (16, 19), (19, 29), (0, 0)]
    assert piece_word_index(bpe, spans).tolist() == [-1, 0, 0, 0, 1, 2, 2, -1]
    assert cleaned[10:16] == " ghost"
    scores = [9.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 9.0]
    np.testing.assert_allclose(merge_piece_scores(scores, wordpiece, spans), [1.5, 3, 5])  # mean: the default
    np.testing.assert_allclose(merge_piece_scores(scores, wordpiece, spans, reduce="sum"), [1 + 2, 3, 4 + 5 + 6])
    np.testing.assert_allclose(merge_piece_scores(scores, wordpiece, spans, reduce="max"), [2, 3, 6])
    np.testing.assert_allclose(merge_piece_scores(scores, bpe, spans, reduce="mean"), [2, 4, 5.5])
    truncated = merge_piece_scores([9.0, 1.0, 9.0], [(0, 0), (0, 7), (0, 0)], spans)
    assert truncated[0] == 1.0 and np.isnan(truncated[1:]).all()


def wordpiece_tokenizer() -> PreTrainedTokenizerFast:
    """A hand-made WordPiece vocabulary: "stalkerish" must split into stalker + ##ish."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "stalker", "##ish", "ghost", "un", "##believ", "##able", "old"]
    tokenizer = Tokenizer(models.WordPiece({piece: i for i, piece in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", model_max_length=16)


RAW_PLOT = "The stalkerish Ghost -- unbelievable!  The OLD ghost."


def test_wordpiece_scores_land_on_the_raw_plot_words():
    tokenizer = wordpiece_tokenizer()
    words = clean_words(RAW_PLOT, CLEAN)
    assert [w.text for w in words] == ["stalkerish", "ghost", "unbelievable", "old", "ghost"]
    encoded = tokenizer(" ".join(w.text for w in words))
    assert tokenizer.convert_ids_to_tokens(encoded["input_ids"]) == [
        "[CLS]", "stalker", "##ish", "ghost", "un", "##believ", "##able", "old", "ghost", "[SEP]"
    ]
    token_scores = np.array([100, 1, 2, 4, 8, 16, 32, 64, 128, 100, 0, 0], dtype=float)  # padded to 12
    result = plot_word_scores(RAW_PLOT, token_scores, tokenizer, CLEAN, input_ids=encoded["input_ids"], reduce="sum")
    np.testing.assert_allclose(result.scores, [3, 4, 56, 64, 128])
    means = plot_word_scores(RAW_PLOT, token_scores, tokenizer, CLEAN).scores
    np.testing.assert_allclose(means, [1.5, 4, 56 / 3, 64, 128])
    assert [RAW_PLOT[w.start : w.end] for w in result.words] == ["stalkerish", "Ghost", "unbelievable", "OLD", "ghost"]
    assert result.top(2) == [4, 3]
    truncated = plot_word_scores(RAW_PLOT, token_scores, tokenizer, CLEAN, max_length=5, reduce="sum")
    np.testing.assert_allclose(truncated.scores[:2], [3, 4])  # [CLS] stalker ##ish ghost [SEP]
    assert np.isnan(truncated.scores[2:]).all()  # cut off: not read, not "unimportant"
    ghost = RAW_PLOT.index("Ghost")
    assert token_positions_of_span(RAW_PLOT, (ghost, ghost + 5), tokenizer) == [3]
    assert token_positions_of_span(RAW_PLOT, (ghost, ghost + 25), tokenizer) == [3, 4, 5, 6]  # Ghost -- unbelievable
    with pytest.raises(ValueError, match="tokenizer and text cleaning"):
        plot_word_scores(RAW_PLOT, token_scores, tokenizer, RAW, input_ids=encoded["input_ids"])


def test_byte_level_bpe_scores_land_on_the_raw_plot_words():
    corpus = ["the stalker saw a ghost", "ghost stories and old castles", "a stalker in the old house"] * 20
    tokenizer = train_bpe_tokenizer(corpus, vocab_size=300)
    plot = "A STALKERISH, ghost-like figure."
    encoded = tokenizer(" ".join(w.text for w in clean_words(plot, RAW)), return_offsets_mapping=True)
    pieces = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    assert any(p.startswith("Ġ") for p in pieces) and len(pieces) > 6  # real Ġ-style pieces, words split
    token_scores = np.ones(len(pieces))
    result = plot_word_scores(plot, token_scores, tokenizer, RAW, input_ids=encoded["input_ids"], reduce="sum")
    assert [plot[w.start : w.end] for w in result.words] == ["A", "STALKERISH,", "ghost-like", "figure."]
    # Each word's score counts its pieces: together they are every piece with characters (a lone "Ġ"
    # piece has an empty trimmed offset, like the specials, and belongs to no word).
    with_characters = sum(end > start for start, end in encoded["offset_mapping"])
    assert result.scores.sum() == with_characters
    assert (result.scores >= 1).all() and result.scores[1] > 1  # "STALKERISH," came in several pieces


def test_shaded_plot_is_html_with_the_raw_text_and_a_caption():
    tokenizer = wordpiece_tokenizer()
    token_scores = np.array([0, 1, 1, 2, 0, 0, 0, 4, 0, 0], dtype=float)
    words = plot_word_scores(RAW_PLOT, token_scores, tokenizer, CLEAN, max_length=9)
    shaded = shade_plot(words, caption="Data: twin <test> | Weights: random", highlight=[(15, 20)])
    html = shaded._repr_html_()
    assert "The " in html and "--" in html and "&lt;test&gt;" in html  # raw text kept, escaped
    assert html.index("stalkerish") < html.index("Ghost") < html.index("unbelievable")
    assert "rgba(214, 39, 40, 1.000)" in html  # "old" has the top score
    assert "text-decoration: underline" in html  # the highlighted "Ghost"
    assert 'title="not seen (truncated)">ghost<' in html  # the last word is past max_length


# -------------------------------------------------------------------------------------------- figures


def test_figures_carry_the_data_and_weights_line():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from thesis_lib.xai.figures import (
        GenreMap,
        Provenance,
        modality_weights_figure,
        overlay_grid_figure,
        side_by_side_figure,
    )

    poster = Image.new("RGB", (224, 336), (90, 60, 30))
    cam = np.zeros((32, 32), dtype=np.float32)
    cam[4:8, 4:8] = 1.0
    maps = [GenreMap(7, cam, 0.91, True), GenreMap(10, cam, 0.55, False)]
    provenance = Provenance(data="synthetic twin, test split", weights="run image_vit/seed0")
    figures = [
        overlay_grid_figure([poster, poster], [maps, maps[:1]], provenance),
        side_by_side_figure(poster, [("Grad-CAM", cam), ("cross-attention", np.random.rand(2, 2))], provenance,
                            boxes=[[10, 20, 60, 80]]),
        modality_weights_figure(np.full((NUM_GENRES, 3), 1 / 3), ("text", "image", "objects"), provenance),
    ]
    for figure in figures:
        texts = [t.get_text() for t in figure.texts]
        assert any("synthetic twin, test split" in t and "run image_vit/seed0" in t for t in texts)
        plt.close(figure)
    assert "Horror  p=0.91" in maps[0].title and "true label" in maps[0].title
    with pytest.raises(ValueError, match="data and the weights"):
        Provenance(data="twin", weights=" ")


@pytest.mark.slow
def test_predicted_genres_are_explained_with_their_probability_and_truth(toy_model):
    from thesis_lib.xai.figures import explain_predicted_genres

    images = torch.rand(1, 3, TOY, TOY, generator=torch.Generator().manual_seed(2)) * 0.3 - 0.15
    images[0, :, 40:64, 40:64] = torch.tensor(RED)[:, None, None]
    labels = torch.zeros(1, NUM_GENRES)
    labels[0, 1] = 1.0  # labelled with the other genre: the figure must say the predicted one is not a label
    thresholds = np.r_[0.5, 0.5, np.full(NUM_GENRES - 2, 1.01)]  # the toy learned genres 0 and 1 only
    maps = explain_predicted_genres(toy_model, {"image": images, "labels": labels}, row=0, thresholds=thresholds)
    assert [m.genre for m in maps] == [0]
    assert maps[0].probability > 0.5 and not maps[0].is_true
    assert maps[0].cam.shape == (TOY, TOY)
    forced = explain_predicted_genres(toy_model, {"image": images, "labels": labels}, row=0, genres=[1])
    assert forced[0].is_true and forced[0].probability < 0.5


# ------------------------------------------------------------------------- Grad-CAM stage and resolution

SMOKE_RESNET = (("channels", (16, 32, 64, 128)), ("stem_width", 16), ("layers", (1, 1, 1, 1)))  # the smoke profile's
CORNERS = (32, 64, 96)  # the corners of a 4 x 4 grid's cells at 128 px: 3 x 3 object positions, as on the twin
HALF = 12  # the planted squares are 24 x 24 px (3.5% of the poster, like the twin's objects)


def planted_posters(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int, int, int]]]:
    """Noise posters (B, 3, 128, 128), half of them with a red square centred on a corner of the 4 x 4 grid's
    cells; the labels (B,) and each positive's box."""
    generator = torch.Generator().manual_seed(seed)
    images = 0.3 * torch.randn(count, 3, 128, 128, generator=generator)  # (B, 3, S, S)
    labels = (torch.arange(count) % 2).float()  # (B,)
    centres = torch.randint(0, len(CORNERS), (count, 2), generator=generator)  # (B, 2)
    boxes = []
    for row in range(count):
        y, x = CORNERS[int(centres[row, 0])], CORNERS[int(centres[row, 1])]
        boxes.append((x - HALF, y - HALF, x + HALF, y + HALF))
        if labels[row]:
            images[row, :, y - HALF : y + HALF, x - HALF : x + HALF] = torch.tensor([2.0, -1.0, -1.0])[:, None, None]
    return images, labels, boxes


TOY_RESNET = (("channels", (8, 16, 32, 64)), ("stem_width", 8), ("layers", (1, 1, 1, 1)))  # the smoke one, halved


@pytest.fixture(scope="module")
def planted_object_model():
    """A small ResNet trained to say genre 0 when a planted object is on the poster (about 5 s on one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: threads only contend on shared cores
    try:
        model = tiny_model("image_resnet50", image_input_size=128, image_timm_kwargs=TOY_RESNET).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
        for step in range(25):
            images, labels, _ = planted_posters(16, seed=step)
            loss = F.binary_cross_entropy_with_logits(model({"image": images}).logits[:, 0], labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def test_an_earlier_stage_localises_a_planted_object_that_the_last_stage_cannot(planted_object_model):
    from thesis_lib.xai.faithfulness import pointing_hit, random_point_hit_rate

    images, labels, boxes = planted_posters(40, seed=1000)
    positives = [row for row in range(len(labels)) if labels[row]]
    with torch.no_grad():
        accuracy = ((planted_object_model({"image": images}).logits[:, 0] > 0).float() == labels).float().mean()
    assert accuracy > 0.9  # the toy model found the object
    batch = {"image": images}
    targets = [(row, 0) for row in positives]
    hits = {}
    for stage in ("layer4", "layer3"):
        maps = gradcam_maps(planted_object_model, batch, targets, stage=stage)  # (P, 128, 128)
        hits[stage] = np.mean([pointing_hit(cam, [boxes[row]], (128, 128))
                               for cam, (row, _) in zip(maps, targets, strict=True)])
    assert hits["layer4"] == 0.0  # its cell centres (16 + 32k) are 16 px from every box centre: never inside
    chance = random_point_hit_rate([boxes[0]], (128, 128))
    assert hits["layer3"] >= 0.8 > 10 * chance  # an 8 x 8 grid puts the maximum inside the 24 px box


def test_the_stage_is_a_named_setting_with_the_grid_it_gives():
    from thesis_lib.xai.gradcam import GRADCAM_STAGE, cam_grid

    model = tiny_model("image_resnet50", image_input_size=128, image_timm_kwargs=SMOKE_RESNET)
    encoder = model.encoders["image"]
    images = torch.randn(1, 3, 128, 128)
    assert encoder.gradcam_stages()[:3] == ("layer4", "layer3", "layer2") and GRADCAM_STAGE in encoder.gradcam_stages()
    assert encoder.gradcam_target_layers("layer2") == [encoder.backbone.layer2]
    assert encoder.gradcam_target_layers() == [encoder.backbone.layer4]
    assert [cam_grid(model, images, stage) for stage in ("layer4", "layer3", "layer2")] == [(4, 4), (8, 8), (16, 16)]
    with pytest.raises(ValueError, match="stage 'block9'"):
        encoder.gradcam_target_layers("block9")
    vit = tiny_model("image_vit")  # 64 px, 16 px patches: the patch grid whatever the stage
    assert vit.encoders["image"].gradcam_stages() == ()
    assert cam_grid(vit, torch.randn(1, 3, SIZE, SIZE), "layer3") == (4, 4)


# --------------------------------------------------------------------------- rollout and the pooling


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_rollout_reads_what_flows_into_the_pooled_vector(pooling):
    model = tiny_model("text_bert", text_need_attentions=True, text_pooling=pooling)
    batch = tiny_batch(model)  # row 0 is padded after 4 tokens
    explanation = explain_attention(model, batch)
    assert explanation.text_pooling == pooling
    rollout = attention_rollout(explanation.text_self_attention, explanation.text_mask)  # (B, L, L)
    importance = rollout_token_importance(explanation)  # (B, L)
    for row in range(3):
        real = explanation.text_mask[row]
        expected = rollout[row][real].mean(dim=0) if pooling == "mean" else rollout[row, 0]
        torch.testing.assert_close(importance[row], expected)
    torch.testing.assert_close(importance.sum(-1), torch.ones(3))
    assert (importance[0, 4:] == 0).all()  # padding receives nothing
    if pooling == "mean":
        assert not torch.allclose(importance, rollout[:, 0])  # the CLS row would say something else


# ------------------------------------------------------------------------------- boxes and genres drawn


def test_ground_truth_boxes_are_drawn_on_every_map():
    from matplotlib.patches import Rectangle
    from PIL import Image

    from thesis_lib.xai.figures import GenreMap, Provenance, overlay_grid_figure, side_by_side_figure

    poster = Image.new("RGB", (60, 90))
    cam = np.zeros((16, 16), dtype=np.float32)
    provenance = Provenance("synthetic twin, test split", "random init")
    maps = [[GenreMap(0, cam, 0.9, True, boxes=((5, 5, 20, 20), (30, 40, 50, 60))), GenreMap(1, cam, 0.8, False)]]
    figure = overlay_grid_figure([poster], maps, provenance)
    counts = [sum(isinstance(p, Rectangle) for p in ax.patches) for ax in figure.axes[:3]]
    assert counts == [0, 2, 0]  # the poster, the genre with two objects, a genre without boxes
    figure = side_by_side_figure(poster, [("a", cam), ("b", cam)], provenance, boxes=[(5, 5, 20, 20)])
    assert [sum(isinstance(p, Rectangle) for p in ax.patches) for ax in figure.axes[:3]] == [1, 1, 1]


@pytest.mark.parametrize("name", ["image_resnet50", "image_vit"])
def test_methods_sharing_one_pass_give_the_maps_each_gives_alone(name):
    from thesis_lib.xai.gradcam import CAM_METHODS, cam_maps

    model = tiny_model(name)
    batch = tiny_batch(model)
    targets = [(0, 3), (1, 5), (2, 3)]
    together = cam_maps(model, batch, targets, CAM_METHODS, chunk_size=2, stage="layer2")
    for method in CAM_METHODS:
        alone = gradcam_maps(model, batch, targets, method, chunk_size=2, stage="layer2")
        np.testing.assert_allclose(together[method], alone, atol=1e-5, err_msg=method)
    assert not np.allclose(together["gradcam"], together["hirescam"])  # the formulas do differ here
