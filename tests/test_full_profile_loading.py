"""The full profile's loading path, offline: tiny models saved under the very names the full profile uses.

`bert-base-uncased` and `roberta-base` become `save_pretrained` folders (model + tokenizer) and timm's
`resnet50` / `vit_base_patch16_224` become safetensors files in a temporary pretrained folder
($THESIS_PRETRAINED_DIR). Every registered model is then built with `size="full"`, pretrained=True, by the
same code the GPU run uses; only the widths are tiny (timm kwargs), so it stays fast. Each is marked as a
stand-in (`mark_standin`), as everything saved under a real weight's name must be.
"""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import load_file
from transformers import BertConfig, BertModel, RobertaConfig, RobertaModel

from thesis_lib.data.tokenizers import train_bpe_tokenizer, train_wordpiece_tokenizer
from thesis_lib.detection import Detections, pad_detections
from thesis_lib.experiments.profile import load_profile
from thesis_lib.experiments.weights import profile_weights
from thesis_lib.genres import NUM_GENRES
from thesis_lib.models import ModelConfig, build_model, list_models
from thesis_lib.models.pretrained import mark_standin, save_standin_state_dict
from thesis_lib.models.registry import default_config
from thesis_lib.models.text import load_tokenizer

PLOTS = [
    "A detective follows a red car through the rainy city at night.",
    "Two friends build a rocket and fly to the moon, laughing all the way.",
    "A ghost haunts the old castle where a family spends one long winter.",
    "The cowboy rides into town, and the sheriff waits with a silver knife.",
] * 5
TINY_TEXT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
TINY_TIMM = {
    "resnet50": (("layers", (1, 1, 1, 1)), ("channels", (8, 16, 32, 64)), ("stem_width", 8)),
    "vit_base_patch16_224": (("embed_dim", 32), ("depth", 2), ("num_heads", 2)),
}


@pytest.fixture(scope="module")
def pretrained_folder(tmp_path_factory):
    """A pretrained folder holding tiny stand-ins for the full profile's four backbones."""
    folder = tmp_path_factory.mktemp("pretrained")
    wordpiece, bpe = train_wordpiece_tokenizer(PLOTS, vocab_size=300), train_bpe_tokenizer(PLOTS, vocab_size=400)
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=len(wordpiece), pad_token_id=wordpiece.pad_token_id, **TINY_TEXT))
    roberta = RobertaModel(RobertaConfig(
        vocab_size=len(bpe), pad_token_id=bpe.pad_token_id, bos_token_id=0, eos_token_id=2,
        max_position_embeddings=514, type_vocab_size=1, **TINY_TEXT,
    ))
    for name, model, tokenizer in [("bert-base-uncased", bert, wordpiece), ("roberta-base", roberta, bpe)]:
        model.save_pretrained(folder / name)
        tokenizer.save_pretrained(folder / name)
        mark_standin(folder / name, "test stand-in: a tiny random model")
    (folder / "timm").mkdir()
    for name, kwargs in TINY_TIMM.items():
        model = timm.create_model(name, pretrained=False, num_classes=0, **dict(kwargs))
        save_standin_state_dict(model.state_dict(), folder / "timm" / f"{name}.safetensors", "test stand-in")
    return folder


@pytest.fixture
def offline_weights(pretrained_folder, monkeypatch):
    monkeypatch.setenv("THESIS_PRETRAINED_DIR", str(pretrained_folder))
    return pretrained_folder


def full_overrides(name: str) -> dict:
    image = default_config(name, "full").image
    return {} if image is None else {"image_timm_kwargs": TINY_TIMM[image.backbone]}


def batch_for(model, config: ModelConfig) -> dict:
    batch = {}
    if config.text is not None:
        tokenizer = load_tokenizer(config.text)
        batch |= dict(tokenizer(PLOTS[:2], padding=True, truncation=True, return_tensors="pt"))
        batch.pop("token_type_ids", None)
    if config.image is not None:
        batch["image"] = torch.randn(2, 3, 224, 224)
    if config.objects is not None:
        batch["objects"] = pad_detections([
            Detections(torch.tensor([[0.1, 0.2, 0.5, 0.9]]), torch.tensor([0]), torch.tensor([0.9])),
            Detections(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), torch.zeros(0)),
        ])
    return batch


@pytest.mark.parametrize("name", list_models())
def test_full_form_builds_from_local_weights_and_runs(name, offline_weights):
    config = default_config(name, "full").with_overrides(**full_overrides(name))
    model = build_model(name, config).eval()
    with torch.no_grad():
        logits = model(batch_for(model, config)).logits
    assert logits.shape == (2, NUM_GENRES) and torch.isfinite(logits).all()
    # The saved weights were loaded, not a fresh random init.
    if config.text is not None:
        saved = load_file(offline_weights / config.text.backbone / "model.safetensors")
        key = next(k for k in saved if k.endswith("word_embeddings.weight"))
        torch.testing.assert_close(model.encoders["text"].backbone.embeddings.word_embeddings.weight, saved[key])
    if config.image is not None:
        saved = load_file(offline_weights / "timm" / f"{config.image.backbone}.safetensors")
        loaded = model.encoders["image"].backbone.state_dict()
        assert saved.keys() == loaded.keys()
        for key in saved:
            torch.testing.assert_close(loaded[key], saved[key])


def test_full_tokenizers_resolve_to_the_local_folders(offline_weights):
    bert_tokenizer = load_tokenizer(default_config("text_bert", "full").text)
    roberta_tokenizer = load_tokenizer(default_config("text_roberta", "full").text)
    assert len(bert_tokenizer) == BertConfig.from_pretrained(offline_weights / "bert-base-uncased").vocab_size
    assert len(roberta_tokenizer) == RobertaConfig.from_pretrained(offline_weights / "roberta-base").vocab_size
    assert (bert_tokenizer.pad_token, roberta_tokenizer.pad_token) == ("[PAD]", "<pad>")
    assert roberta_tokenizer.model_max_length == 512


def test_missing_weights_offline_name_the_folder_to_fill(tmp_path, monkeypatch):
    monkeypatch.setenv("THESIS_PRETRAINED_DIR", str(tmp_path))
    with pytest.raises(OSError, match=str(tmp_path)):
        build_model("text_bert", size="full", text_backbone="no-such-owner/no-such-bert")
    with pytest.raises(OSError, match="THESIS_ONLINE=1"):
        build_model("image_resnet50", size="full", image_backbone="resnet10t")


def test_the_standins_are_never_taken_for_the_pretrained_weights(offline_weights):
    backbones = ("bert-base-uncased", "roberta-base", "resnet50", "vit_base_patch16_224")
    found = {weight.name: weight.status for weight in profile_weights(load_profile("full"))}
    assert {name: found[name] for name in backbones} == dict.fromkeys(backbones, "stand-in")
