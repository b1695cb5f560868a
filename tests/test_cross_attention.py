"""Cross-attention fusion: each stream really reads the other, padding is never attended, weights are
distributions, and the one-way ablation has no image -> text path."""

from __future__ import annotations

import pytest
import torch

from thesis_lib.detection import Detections, pad_detections
from thesis_lib.models import build_model
from thesis_lib.models.fusion.cross_attention import CrossAttentionFusion
from thesis_lib.models.outputs import EncoderOutput

DIM, HEADS, DEPTH = 16, 4, 2
N_TEXT, N_PATCHES, N_REGIONS = 6, 5, 3


def fusion(bidirectional: bool = True, modalities=("text", "image", "objects")) -> CrossAttentionFusion:
    torch.manual_seed(0)
    widths = {"text": 24, "image": 32, "objects": 12}
    return CrossAttentionFusion(
        {m: widths[m] for m in modalities}, dim=DIM, depth=DEPTH, heads=HEADS, dropout=0.0,
        bidirectional=bidirectional,
    ).eval()


def encoded(batch_size: int = 2, seed: int = 0) -> dict[str, EncoderOutput]:
    """Sample 0: two padded text tokens and no detections; sample 1: full text, two of three regions."""
    generator = torch.Generator().manual_seed(seed)
    text_mask = torch.ones(batch_size, N_TEXT, dtype=torch.bool)  # (B, Nt)
    text_mask[0, -2:] = False
    region_mask = torch.zeros(batch_size, N_REGIONS, dtype=torch.bool)  # (B, Nr)
    region_mask[1:, :2] = True

    def output(n: int, width: int, mask: torch.Tensor) -> EncoderOutput:
        tokens = torch.randn(batch_size, n, width, generator=generator)  # (B, N, D)
        return EncoderOutput(tokens=tokens, mask=mask, pooled=tokens.mean(1))

    return {
        "text": output(N_TEXT, 24, text_mask),
        "image": output(N_PATCHES, 32, torch.ones(batch_size, N_PATCHES, dtype=torch.bool)),
        "objects": output(N_REGIONS, 12, region_mask),
    }


def replaced(inputs: dict[str, EncoderOutput], modality: str, tokens: torch.Tensor) -> dict[str, EncoderOutput]:
    old = inputs[modality]
    return {**inputs, modality: EncoderOutput(tokens=tokens, mask=old.mask, pooled=old.pooled)}


def sides(fused: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return fused[:, :DIM], fused[:, DIM:]  # text half, image half


def run(module: CrossAttentionFusion, inputs: dict[str, EncoderOutput]):
    with torch.no_grad():
        return module(inputs)


def test_attention_shapes_per_layer():
    out = run(fusion(), encoded())
    n_image = N_PATCHES + N_REGIONS  # patches, then regions
    assert out.fused.shape == (2, 2 * DIM)
    assert len(out.attentions["text_to_image"]) == len(out.attentions["image_to_text"]) == DEPTH
    assert out.attentions["text_to_image"][0].shape == (2, HEADS, N_TEXT, n_image)
    assert out.attentions["image_to_text"][0].shape == (2, HEADS, n_image, N_TEXT)


def test_weights_sum_to_one_over_real_keys_and_are_zero_on_padding():
    inputs = encoded()
    out = run(fusion(), inputs)
    image_mask = torch.cat([inputs["image"].mask, inputs["objects"].mask], dim=1)  # (B, Ni)
    text_mask = inputs["text"].mask  # (B, Nt)
    for direction, key_mask in [("text_to_image", image_mask), ("image_to_text", text_mask)]:
        for layer in out.attentions[direction]:  # (B, H, Nq, Nk)
            torch.testing.assert_close(layer.sum(-1), torch.ones(layer.shape[:-1]))
            assert (layer.masked_select(~key_mask[:, None, None, :]) == 0).all()


def test_each_stream_reads_the_other():
    module, inputs = fusion(), encoded()
    text_side, image_side = sides(run(module, inputs).fused)
    blank_image = replaced(inputs, "image", torch.zeros_like(inputs["image"].tokens))
    other_text = replaced(inputs, "text", inputs["text"].tokens + 1.0)
    assert not torch.allclose(sides(run(module, blank_image).fused)[0], text_side)
    assert not torch.allclose(sides(run(module, other_text).fused)[1], image_side)


def test_patch_order_is_irrelevant_to_the_fusion_itself():
    # Attention treats keys as a set: where a patch sits must come from the encoder's position embeddings.
    module, inputs = fusion(), encoded()
    permuted = replaced(inputs, "image", inputs["image"].tokens[:, torch.randperm(N_PATCHES)])
    torch.testing.assert_close(run(module, permuted).fused, run(module, inputs).fused)


def test_padded_tokens_and_absent_regions_change_nothing():
    module, inputs = fusion(), encoded()
    reference = run(module, inputs).fused
    text = inputs["text"].tokens.clone()
    text[~inputs["text"].mask] = 100.0
    regions = inputs["objects"].tokens.clone()
    regions[~inputs["objects"].mask] = -100.0
    changed = replaced(replaced(inputs, "text", text), "objects", regions)
    torch.testing.assert_close(run(module, changed).fused, reference)


def test_one_way_variant_has_no_image_to_text_path():
    module, inputs = fusion(bidirectional=False), encoded()
    out = run(module, inputs)
    assert set(out.attentions) == {"text_to_image"}
    other_text = replaced(inputs, "text", inputs["text"].tokens + 1.0)
    blank_image = replaced(inputs, "image", torch.zeros_like(inputs["image"].tokens))
    torch.testing.assert_close(sides(run(module, other_text).fused)[1], sides(out.fused)[1])  # image side deaf
    assert not torch.allclose(sides(run(module, blank_image).fused)[0], sides(out.fused)[0])  # text still reads


def test_a_poster_without_detections_as_the_only_image_side_gives_zeros_not_nan():
    module = fusion(modalities=("text", "objects"))
    inputs = encoded()
    out = run(module, {"text": inputs["text"], "objects": inputs["objects"]})
    assert torch.isfinite(out.fused).all()
    assert (out.attentions["text_to_image"][0][0] == 0).all()  # sample 0 has no region to attend to


@pytest.mark.parametrize("change", ["permute patches", "blank poster"])
def test_in_the_full_model_the_plot_side_sees_poster_changes(change):
    torch.manual_seed(0)
    model = build_model("fusion_cross_attention", image_input_size=32).eval()  # ViT: 2 x 2 patches of 16 px
    ids = torch.randint(1000, 2000, (2, 8))  # (B, L)
    image = torch.randn(2, 3, 32, 32)  # (B, 3, S, S)
    objects = pad_detections([
        Detections(torch.tensor([[0.1, 0.1, 0.6, 0.7]]), torch.tensor([3]), torch.tensor([0.8])) for _ in range(2)
    ])
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "image": image, "objects": objects}
    if change == "permute patches":  # swap the left and right 16-px columns of patches
        changed_image = torch.cat([image[..., 16:], image[..., :16]], dim=-1)
    else:
        changed_image = torch.zeros_like(image)
    with torch.no_grad():
        half = model.fusion.out_dim // 2  # text half, then image half
        text_side = model.forward_features(batch).fused[:, :half]
        changed_side = model.forward_features({**batch, "image": changed_image}).fused[:, :half]
        image_side_other_plot = model.forward_features({**batch, "input_ids": ids.flip(1)}).fused[:, half:]
        image_side = model.forward_features(batch).fused[:, half:]
    assert not torch.allclose(changed_side, text_side, atol=1e-5)
    assert not torch.allclose(image_side_other_plot, image_side, atol=1e-5)
