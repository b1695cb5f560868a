"""The model zoo: every registered model (small form) builds offline and behaves like a classifier should.

Registry-parametrised: shape and finiteness, gradient flow into every trainable parameter, padding that
changes nothing, and a safetensors round trip. Then the parts: frozen backbones, encoder contracts, the
fusions' weights, late-fusion weight fitting, the object summary, overrides and the CLI helpers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from thesis_lib.cli import main
from thesis_lib.detection import Detections, pad_detections
from thesis_lib.experiments.pipeline import SingleEncoder
from thesis_lib.genres import NUM_GENRES
from thesis_lib.models import (
    ImageEncoderConfig,
    TextEncoderConfig,
    build_model,
    combine_late,
    describe_model,
    fit_late_fusion_weights,
    list_models,
)
from thesis_lib.models.configs import ObjectEncoderConfig
from thesis_lib.models.object_encoder import ObjectEncoder
from thesis_lib.models.registry import build_encoder, default_config
from thesis_lib.train import TrainConfig
from thesis_lib.train.epoch import predict, train_one_epoch
from thesis_lib.train.features import cache_encoder_features

IMAGE_SIZE = 32  # two ViT patches a side, a 1x1 ResNet grid: enough to exercise every path, fast on CPU
REQUIRED_MODELS = {
    "text_bert", "text_roberta", "image_resnet50", "image_vit", "objects_yolo", "objects_frcnn",
    "fusion_early", "fusion_late", "fusion_attention", "fusion_cross_attention",
}


def small_model(name: str, **overrides):
    """The registry's small form, with a tiny input size wherever the model reads posters."""
    if default_has_image(name):
        overrides.setdefault("image_input_size", IMAGE_SIZE)
    return build_model(name, **overrides)


def default_has_image(name: str) -> bool:
    return default_config(name, "small").image is not None


def fake_batch(model, batch_size: int = 3, length: int = 10, regions: int = 4, seed: int = 0) -> dict:
    """A twin-like batch for `model`: right-padded token ids, random posters, detections with padding.

    Sample 0 has a padded plot and no detections; sample 1 has half its regions; the rest are full.
    """
    generator = torch.Generator().manual_seed(seed)
    batch: dict = {"labels": torch.randint(0, 2, (batch_size, NUM_GENRES), generator=generator).float()}
    if "text" in model.encoders:
        text = model.encoders["text"]
        ids = torch.randint(5, min(text.vocab_size, 2000), (batch_size, length), generator=generator)  # (B, L)
        attention_mask = torch.ones(batch_size, length, dtype=torch.long)  # (B, L)
        attention_mask[0, length // 2 :] = 0
        ids[attention_mask == 0] = text.pad_token_id
        batch |= {"input_ids": ids, "attention_mask": attention_mask}
    if "image" in model.encoders:
        batch["image"] = torch.randn(batch_size, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)  # (B, 3, S, S)
    if "objects" in model.encoders:
        classes = model.encoders["objects"].config.num_classes
        detections = []
        for row in range(batch_size):
            count = 0 if row == 0 else regions // 2 if row == 1 else regions
            corner = torch.rand(count, 2, generator=generator) * 0.5  # (R, 2)
            size = torch.rand(count, 2, generator=generator) * 0.5  # (R, 2)
            detections.append(Detections(
                boxes=torch.cat([corner, corner + size], dim=1),  # (R, 4) normalised xyxy
                classes=torch.randint(0, classes, (count,), generator=generator),
                scores=torch.rand(count, generator=generator),
            ))
        batch["objects"] = pad_detections(detections)
    return batch


# --- every registered model --------------------------------------------------------------------------


def test_registry_holds_every_planned_model():
    assert REQUIRED_MODELS <= set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_model_gives_finite_logits_per_genre(name):
    torch.manual_seed(0)
    model = small_model(name).eval()
    with torch.no_grad():
        logits = model(fake_batch(model)).logits
    assert logits.shape == (3, NUM_GENRES)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", list_models())
def test_gradients_reach_every_trainable_parameter(name):
    torch.manual_seed(0)
    model = small_model(name).train()
    batch = fake_batch(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    # Two steps: timm's ResNets zero-initialise the last BatchNorm of each residual block, so the block's
    # convolutions get their first gradient only once that BatchNorm has moved away from zero.
    for _ in range(2):
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch).logits, batch["labels"])
        loss.backward()
        optimizer.step()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    no_gradient = [n for n, p in trainable if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_gradient == []
    assert all(torch.isfinite(p.grad).all() for _, p in trainable)


@pytest.mark.parametrize("name", list_models())
def test_padding_changes_nothing(name):
    torch.manual_seed(0)
    model = small_model(name).eval()
    batch = fake_batch(model)
    changed = dict(batch)
    if "input_ids" in batch:
        padded = batch["attention_mask"] == 0  # (B, L)
        ids = batch["input_ids"].clone()
        ids[padded] = torch.randint(5, 50, (int(padded.sum()),))  # real-looking tokens where padding was
        changed["input_ids"] = ids
    if "objects" in batch:
        objects = {key: value.clone() for key, value in batch["objects"].items()}
        absent = ~objects["mask"]  # (B, R)
        # Garbage in absent slots (out-of-range class, NaN boxes): a padded region must never be read.
        objects["classes"][absent] = 10_000
        objects["boxes"][absent] = float("nan")
        objects["scores"][absent] = 7.0
        changed["objects"] = objects
    with torch.no_grad():
        reference, perturbed = model(batch).logits, model(changed).logits
    torch.testing.assert_close(perturbed, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list_models())
def test_safetensors_round_trip_reproduces_the_logits(name, tmp_path):
    torch.manual_seed(0)
    model = small_model(name).eval()
    batch = fake_batch(model)
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    torch.manual_seed(1)  # a different random init, so equal logits prove the weights were loaded
    fresh = small_model(name).eval()
    fresh.load_state_dict(load_file(tmp_path / "model.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(fresh(batch).logits, model(batch).logits)


# --- the model API ---------------------------------------------------------------------------------------


def test_cached_encoder_outputs_give_the_same_logits_as_a_full_forward():
    torch.manual_seed(0)
    model = small_model("fusion_attention").eval()
    batch = fake_batch(model)
    with torch.no_grad():
        direct = model(batch)
        cached = {m: out.detach().to("cpu") for m, out in model.encode(batch).items()}
        from_cache = model.classify(cached)
        two_step = model.forward_head(model.forward_features(batch))
    torch.testing.assert_close(from_cache.logits, direct.logits)
    torch.testing.assert_close(two_step, direct.logits)


def test_frozen_backbones_get_no_gradient_and_keep_their_batchnorm_statistics():
    torch.manual_seed(0)
    model = build_model(
        "fusion_early",
        text=TextEncoderConfig(backbone="minilm", frozen=True, max_length=128),
        image=ImageEncoderConfig(backbone="resnet18", pretrained=False, frozen=True, input_size=IMAGE_SIZE),
    ).train()
    batch = fake_batch(model)
    batchnorm = model.encoders["image"].backbone.bn1
    running_mean = batchnorm.running_mean.clone()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch).logits, batch["labels"])
    loss.backward()
    for modality in ("text", "image"):
        encoder = model.encoders[modality]
        assert not encoder.training  # eval mode inside a model in training mode: no dropout, fixed BN
        assert all(p.grad is None and not p.requires_grad for p in encoder.parameters())
    torch.testing.assert_close(batchnorm.running_mean, running_mean)
    others = [p for n, p in model.named_parameters() if not n.startswith(("encoders.text", "encoders.image"))]
    assert others and all(p.grad is not None for p in others)
    total, trainable = model.parameter_counts()
    assert trainable == sum(p.numel() for p in others) < total


def test_text_attention_maps_are_returned_and_do_not_change_the_logits():
    torch.manual_seed(0)
    sdpa = small_model("text_bert").eval()
    eager = small_model("text_bert", text_need_attentions=True).eval()
    eager.load_state_dict(sdpa.state_dict())  # same weights (the heads were drawn at random)
    batch = fake_batch(sdpa)
    with torch.no_grad():
        reference, out = sdpa(batch), eager(batch)
    torch.testing.assert_close(out.logits, reference.logits, rtol=1e-4, atol=1e-4)
    maps = out.encoder_attentions["text"]
    assert len(maps) == 6 and maps[0].shape == (3, 12, 10, 10)  # MiniLM: 6 layers, 12 heads
    torch.testing.assert_close(maps[-1].sum(-1), torch.ones(3, 12, 10))
    assert maps[-1][0, :, :, 5:].abs().max() == 0  # sample 0's padded keys get no attention


def test_vit_attention_maps_are_returned_per_block():
    torch.manual_seed(0)
    model = small_model("image_vit", image_need_attentions=True).eval()
    with torch.no_grad():
        maps = model(fake_batch(model)).encoder_attentions["image"]
    assert len(maps) == 4 and maps[0].shape == (3, 3, 5, 5)  # 4 blocks, 3 heads, CLS + 2x2 patches
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(3, 3, 5))


def test_a_cnn_asked_for_attention_maps_says_it_has_none():
    with pytest.raises(ValueError, match="no attention maps"):
        small_model("image_resnet50", image_need_attentions=True)


# --- encoders --------------------------------------------------------------------------------------------


def test_resnet_tokens_are_the_7x7_layer4_grid_and_pooled_is_their_mean():
    encoder = build_encoder("image", ImageEncoderConfig(backbone="resnet18", pretrained=False)).eval()
    with torch.no_grad():
        out = encoder({"image": torch.randn(1, 3, 224, 224)})
    assert out.tokens.shape == (1, 49, encoder.token_dim) and out.mask.all()
    torch.testing.assert_close(out.pooled, out.tokens.mean(dim=1))
    assert encoder.gradcam_target_layers() == [encoder.backbone.layer4]
    assert encoder.gradcam_reshape_transform() is None


def test_vit_tokens_are_cls_plus_patches_and_gradcam_reads_the_last_block_input():
    encoder = build_encoder("image", ImageEncoderConfig("vit_tiny_patch16_224", pretrained=False, depth=2))
    with torch.no_grad():
        out = encoder.eval()({"image": torch.randn(2, 3, 224, 224)})
    assert out.tokens.shape == (2, 1 + 14 * 14, 192) and encoder.num_prefix_tokens == 1
    assert encoder.gradcam_target_layers() == [encoder.backbone.blocks[-1].norm1]
    feature_map = encoder.gradcam_reshape_transform()(out.tokens)
    assert feature_map.shape == (2, 192, 14, 14)
    torch.testing.assert_close(feature_map[:, :, 0, 1], out.tokens[:, 2])  # patch (0, 1) follows CLS, patch (0, 0)


def test_image_encoders_report_their_own_normalisation():
    vit = build_encoder("image", ImageEncoderConfig("vit_tiny_patch16_224", pretrained=False, depth=1))
    resnet = build_encoder("image", ImageEncoderConfig("resnet18", pretrained=False))
    assert vit.normalization().mean == (0.5, 0.5, 0.5)  # timm's ViT weights were trained on [-1, 1] inputs
    assert resnet.normalization().mean == pytest.approx((0.485, 0.456, 0.406))  # ImageNet


def test_text_mean_pooling_averages_only_real_tokens():
    torch.manual_seed(0)
    encoder = build_encoder("text", TextEncoderConfig("random-bert-small", pooling="mean")).eval()
    ids = torch.tensor([[2, 7, 8, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        out = encoder({"input_ids": ids, "attention_mask": mask})
    torch.testing.assert_close(out.pooled, out.tokens[:, :4].mean(dim=1))


def test_object_summary_counts_scores_areas_and_people():
    encoder = ObjectEncoder(ObjectEncoderConfig(num_classes=3, person_class=0, max_people=10), region_tokens=False)
    objects = pad_detections([
        Detections(
            boxes=torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 0.2, 0.5]]),
            classes=torch.tensor([0, 0, 2]),
            scores=torch.tensor([0.9, 0.6, 0.3]),
        ),
        Detections(boxes=torch.zeros(0, 4), classes=torch.zeros(0, dtype=torch.long), scores=torch.zeros(0)),
    ])
    pooled = encoder({"objects": objects}).pooled  # (2, 3 * 3 + 1)
    counts, max_score, area, people = pooled[0, :3], pooled[0, 3:6], pooled[0, 6:9], pooled[0, 9]
    torch.testing.assert_close(counts, torch.log1p(torch.tensor([2.0, 0.0, 1.0])))
    torch.testing.assert_close(max_score, torch.tensor([0.9, 0.0, 0.3]))
    torch.testing.assert_close(area, torch.tensor([0.5, 0.0, 0.1]))
    torch.testing.assert_close(people, torch.tensor(0.2))
    assert pooled[1].abs().max() == 0  # a poster without detections


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.pop("image"), "needs batch keys"),
        (lambda b: b["input_ids"].__setitem__((1, 0), 10**6), "vocabulary"),
        (lambda b: b["objects"]["classes"].__setitem__((2, 0), 10**4), "outside the yolo vocabulary"),
        (lambda b: b["objects"]["boxes"].__setitem__((2, 0), torch.tensor([10.0, 20.0, 110.0, 220.0])), "normalised"),
    ],
    ids=["missing key", "foreign token id", "class id out of range", "pixel boxes"],
)
def test_bad_input_gets_a_clear_error(change, message):
    model = small_model("fusion_early").eval()
    batch = fake_batch(model)
    change(batch)
    with pytest.raises((KeyError, ValueError), match=message):
        model.check_batch(batch)  # values are checked here, once per pass; the forward pass checks shapes only


def test_a_missing_key_is_refused_by_the_forward_pass_itself():
    model = small_model("fusion_early").eval()
    batch = fake_batch(model)
    del batch["objects"]["scores"]
    with pytest.raises(KeyError, match="lacks \\['scores'\\]"):
        model(batch)


@pytest.mark.parametrize("loop", ["predict", "train_one_epoch", "extraction"])
def test_the_loops_check_the_first_batch_s_values(loop, tmp_path):
    """The product's loops run `check_batch` (the forward pass no longer reads values): a foreign token id
    stops them with the clear error, not an IndexError from inside the embedding."""
    model = small_model("text_bert")
    batch = fake_batch(model)
    batch["ids"] = [f"{i:07d}" for i in range(3)]
    batch["input_ids"][1, 0] = 10**6
    accelerator = Accelerator(cpu=True)
    loader = DataLoader([batch], batch_size=None)  # one ready batch
    with pytest.raises(ValueError, match="vocabulary"):
        if loop == "predict":
            predict(model, loader, accelerator)
        elif loop == "train_one_epoch":
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
            train_one_epoch(model, torch.nn.BCEWithLogitsLoss(), optimizer, scheduler, loader, accelerator, 0,
                            TrainConfig(epochs=1, progress_bar=False))
        else:
            items = [{"id": "0000001", "labels": batch["labels"][0], "text": "a plot"}]
            cache_encoder_features(SingleEncoder("text", model.encoders["text"]), items, backbone_id="bert",
                                   data_fingerprint="x", part="train", collate_fn=lambda _: batch,
                                   cache_root=tmp_path)


def test_a_vit_refuses_posters_of_another_size():
    model = small_model("image_vit").eval()
    with pytest.raises(ValueError, match="input_size"):
        model({"image": torch.randn(1, 3, 2 * IMAGE_SIZE, 2 * IMAGE_SIZE)})


def test_plots_longer_than_max_length_are_refused():
    model = small_model("text_roberta", text_max_length=8).eval()
    with pytest.raises(ValueError, match="max_length 8"):
        model(fake_batch(model, length=10))


# --- fusions ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gating", ["softmax", "gmu"])
def test_attention_fusion_weights_are_a_distribution_over_modalities(gating):
    torch.manual_seed(0)
    model = small_model("fusion_attention", fusion_gating=gating).eval()
    with torch.no_grad():
        out = model(fake_batch(model))
    assert out.modalities == ("text", "image", "objects")
    assert out.modality_weights.shape == (3, 3) and (out.modality_weights >= 0).all()
    torch.testing.assert_close(out.modality_weights.sum(-1), torch.ones(3))


def test_late_fusion_module_weights_each_genre_over_modalities():
    torch.manual_seed(0)
    model = small_model("fusion_late").eval()
    with torch.no_grad():
        out = model(fake_batch(model))
    assert out.genre_modality_weights.shape == (3, NUM_GENRES)
    torch.testing.assert_close(out.genre_modality_weights.sum(0), torch.ones(NUM_GENRES))
    weights = dict(zip(out.modalities, out.genre_modality_weights, strict=True))  # modality -> (23,)
    expected = sum(weights[m] * logits for m, logits in out.modality_logits.items())  # (B, 23)
    torch.testing.assert_close(out.logits, expected)


def test_fitted_late_fusion_weights_favour_the_informative_modality_per_genre():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=(400, NUM_GENRES))
    noise = rng.random((400, NUM_GENRES))
    informative = np.clip(0.7 * labels + 0.3 * noise, 0, 1)  # separates the classes
    text = np.where(np.arange(NUM_GENRES) < 12, informative, noise)  # text knows genres 0-11
    image = np.where(np.arange(NUM_GENRES) < 12, noise, informative)  # image knows genres 12-22
    weights = fit_late_fusion_weights({"text": text, "image": image}, labels)
    assert (weights["text"][:12] > 0.5).all() and (weights["image"][12:] > 0.5).all()
    np.testing.assert_allclose(weights["text"] + weights["image"], 1.0)
    combined = combine_late({"text": text, "image": image}, weights)
    assert combined.shape == (400, NUM_GENRES) and combined.min() >= 0 and combined.max() <= 1


def test_late_fusion_refuses_logits_and_mismatched_modalities():
    labels = np.zeros((4, NUM_GENRES))
    with pytest.raises(ValueError, match="sigmoid"):
        fit_late_fusion_weights({"text": np.full((4, NUM_GENRES), 3.0)}, labels)
    with pytest.raises(ValueError, match="weights are for"):
        combine_late({"text": np.zeros((4, NUM_GENRES))}, {"image": np.ones(NUM_GENRES)})


# --- configs, overrides, CLI -------------------------------------------------------------------------------


def test_overrides_are_checked_against_the_field_types_and_unknown_ones_refused():
    config = default_config("fusion_cross_attention", "small").with_overrides(
        text_frozen=True, fusion_depth=3, head_dropout=0, fusion_dropout=0.3, modalities="text,image"
    )
    assert config.text.frozen is True and config.fusion.depth == 3 and config.fusion.dropout == 0.3
    assert config.head_dropout == 0.0 and isinstance(config.head_dropout, float)  # an int is taken for a float
    assert config.modalities == ("text", "image")
    assert config.with_overrides(text_pad_token_id=None).text.pad_token_id is None  # None where allowed
    with pytest.raises(ValueError, match=r"text_frozen='true': expected bool"):  # text is typed by the profile
        config.with_overrides(text_frozen="true")
    with pytest.raises(ValueError, match="text_colour"):
        config.with_overrides(text_colour="blue")
    with pytest.raises(ValueError, match="no objects encoder"):
        config.with_overrides(objects_dim=8)


def test_full_forms_name_the_thesis_backbones():
    full = default_config("fusion_cross_attention", "full")
    assert (full.text.backbone, full.image.backbone, full.objects.source) == (
        "bert-base-uncased", "vit_base_patch16_224", "yolo"
    )
    assert default_config("text_roberta", "full").text.backbone == "roberta-base"
    assert default_config("image_resnet50", "full").image.backbone == "resnet50"


def test_describe_reports_parameters_and_expected_input(capsys):
    text = describe_model("fusion_early")
    total, trainable = build_model("fusion_early").parameter_counts()
    assert f"{trainable:,} trainable" in text
    for key in ("input_ids", "attention_mask", "image", "objects"):
        assert f"    {key} " in text
    assert main(["models", "describe", "no_such_model"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_models_list_marks_the_baselines_the_grid_runs(capsys):
    import json

    from thesis_lib.experiments.specs import BASELINES, known_models

    assert main(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == known_models()  # every name a profile may list, nothing else
    kinds = {line.split()[0]: line.split()[1] for line in lines}
    assert {name for name, kind in kinds.items() if kind == "baseline"} == set(BASELINES) == {
        "baseline_frequency", "baseline_shallow"}
    assert {kinds[name] for name in list_models()} == {"model"}
    assert main(["models", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [entry["kind"] for entry in listed if entry["name"] in BASELINES] == ["baseline", "baseline"]
    assert main(["models", "describe", "baseline_shallow", "--size", "full"]) == 0
    assert capsys.readouterr().out.startswith("baseline_shallow (baseline, no network): ")


def test_describe_shows_the_full_size_model(capsys):
    """`--size full`: the thesis's ResNet-50 (random weights: nothing is downloaded), not the small ResNet-18."""
    from thesis_lib.cli import models
    from thesis_lib.models.configs import SIZES

    assert models.SIZES == SIZES  # spelled in the CLI to keep torch off `--help`
    assert main(["models", "describe", "image_resnet50", "--size", "full"]) == 0
    full = capsys.readouterr().out
    total, _ = build_model("image_resnet50", size="full", image_pretrained=False).parameter_counts()
    assert full.startswith("image_resnet50 (full): ") and "resnet50: " in full and f"{total:,} total" in full
    assert main(["models", "describe", "image_resnet50"]) == 0
    assert capsys.readouterr().out.startswith("image_resnet50 (small): ")


def test_label_attention_gives_each_genre_its_own_distribution_over_the_real_tokens():
    torch.manual_seed(0)
    model = small_model("text_bert", fusion_kind="label_attention").eval()
    batch = fake_batch(model)
    with torch.no_grad():
        out = model(batch)
    (weights,) = out.attentions["genre_to_tokens"]  # (B, 1, 23, N)
    assert out.logits.shape == (3, NUM_GENRES) and weights.shape[:3] == (3, 1, NUM_GENRES)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 1, NUM_GENRES))
    padded = batch["attention_mask"][0] == 0  # sample 0's padding gets no weight from any genre
    assert weights[0, 0][:, padded].abs().max() == 0
    assert not torch.allclose(weights[1, 0, 0], weights[1, 0, 1])  # genres read the tokens differently


def test_label_attention_reads_the_token_that_decides_a_genre():
    """Trained on tokens where genre 0 is 'token A anywhere', its attention finds A: what a pooled vector
    of a frozen encoder need not keep."""
    from thesis_lib.models.fusion import LabelAttention
    from thesis_lib.models.outputs import EncoderOutput

    generator = torch.Generator().manual_seed(0)
    dim, length, count = 16, 12, 512
    words = torch.randn(20, dim, generator=generator)  # (V, D) word 0 is the cue
    ids = torch.randint(1, 20, (count, length), generator=generator)  # (B, N)
    labels = torch.rand(count, generator=generator) < 0.5  # (B,)
    ids[labels, torch.randint(0, length, (int(labels.sum()),), generator=generator)] = 0
    tokens = words[ids]  # (B, N, D)
    encoded = {"text": EncoderOutput(tokens=tokens, mask=torch.ones(count, length, dtype=torch.bool),
                                     pooled=tokens.mean(1))}
    readout = LabelAttention("text", dim, dropout=0.0, num_genres=1)
    optimizer = torch.optim.AdamW(readout.parameters(), lr=3e-2)
    for _ in range(150):
        loss = F.binary_cross_entropy_with_logits(readout(encoded).fused[:, 0], labels.float())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        out = readout(encoded)
    accuracy = ((out.fused[:, 0] > 0) == labels).float().mean()
    (weights,) = out.attentions["genre_to_tokens"]  # (B, 1, 1, N)
    on_cue = (weights[:, 0, 0] * (ids == 0)).sum(-1)[labels].mean()  # attention mass on the cue word
    assert accuracy > 0.95 and on_cue > 0.5
