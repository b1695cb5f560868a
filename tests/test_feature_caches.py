"""Feature caches at full size: pooled-only files, streamed writing, length-sorted extraction, and their
deletion after the last run of the grid that reads them (`thesis cache clean` for what stays behind)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import Dataset

from thesis_lib.cli import main
from thesis_lib.data.batch import CachedFeaturesCollator
from thesis_lib.experiments import load_profile, run_grid
from thesis_lib.experiments.caches import CacheLedger, FeatureCacheNeed, feature_caches_of
from thesis_lib.experiments.specs import config_hashes, plan_grid
from thesis_lib.logs import ProgressLog
from thesis_lib.models.encoder import Encoder
from thesis_lib.models.outputs import EncoderOutput, masked_mean
from thesis_lib.train import TrainConfig, fit, rows_file
from thesis_lib.train.features import (
    FEATURE_CACHE_FORMAT,
    CachedFeatureDataset,
    FeatureCacheConfig,
    FrozenEncodersClassifier,
    cache_encoder_features,
    extraction_batches,
)

VOCAB, DIM, CLASSES = 50, 16, 23


class Plots(Dataset):
    """Token-id plots of 3..20 tokens and random labels; `item_lengths` makes extraction sort them."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.plots = [torch.randint(1, VOCAB, (int(k),), generator=g) for k in torch.randint(3, 21, (n,), generator=g)]
        self.labels = (torch.rand(n, CLASSES, generator=g) > 0.7).float()
        self.ids = [f"{i:07d}" for i in range(n)]

    def __len__(self) -> int:
        return len(self.plots)

    def item_lengths(self) -> list[int]:
        return [len(plot) for plot in self.plots]

    def __getitem__(self, index: int) -> dict:
        return {"id": self.ids[index], "plot": self.plots[index], "labels": self.labels[index]}


def collate(items: list[dict]) -> dict:
    longest = max(len(item["plot"]) for item in items)
    input_ids = torch.zeros(len(items), longest, dtype=torch.int64)  # (B, L)
    for row, item in enumerate(items):
        input_ids[row, : len(item["plot"])] = item["plot"]
    return {"ids": [item["id"] for item in items], "input_ids": input_ids, "attention_mask": (input_ids > 0).long(),
            "labels": torch.stack([item["labels"] for item in items])}


class TextEncoder(Encoder):
    """Embedding + one transformer layer over the real tokens: padding changes the matmul shapes only."""

    def __init__(self):
        super().__init__(token_dim=DIM, pooled_dim=DIM)
        self.embed = nn.Embedding(VOCAB, DIM)
        self.layer = nn.TransformerEncoderLayer(DIM, nhead=2, dim_feedforward=32, dropout=0.0, batch_first=True)

    def forward(self, batch: dict) -> EncoderOutput:
        mask = batch["attention_mask"].bool()  # (B, L)
        tokens = self.layer(self.embed(batch["input_ids"]), src_key_padding_mask=~mask)  # (B, L, D)
        return EncoderOutput(tokens=tokens, mask=mask, pooled=masked_mean(tokens, mask))


class PooledClassifier(nn.Module):
    """A fusion that reads the pooled vector only (as early/attention fusion do)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.encoders = nn.ModuleDict({"text": TextEncoder()})
        self.head = nn.Sequential(nn.Linear(DIM, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, CLASSES))

    def encode(self, batch: dict) -> dict[str, EncoderOutput]:
        return {"text": self.encoders["text"](batch)}

    def classify(self, encoded: dict[str, EncoderOutput]):
        return type("Out", (), {"logits": self.head(encoded["text"].pooled)})()

    def forward(self, batch: dict):
        return self.classify(self.encode(batch))


def frozen(model: nn.Module) -> FrozenEncodersClassifier:
    model.encoders["text"].set_frozen(True)
    return FrozenEncodersClassifier(model, ("text",))


def cache(model, dataset, root, part, **config) -> CachedFeatureDataset:
    options = {"tokens_dtype": "float32", "batch_size": 7} | config
    return CachedFeatureDataset(cache_encoder_features(
        model, dataset, backbone_id="toy", data_fingerprint="toy", part=part, collate_fn=collate,
        config=FeatureCacheConfig(**options), cache_root=root))


TRAIN, DEV = Plots(40, seed=1), Plots(16, seed=2)


def test_a_pooled_only_cache_trains_exactly_as_the_pooled_vectors_of_a_token_cache(tmp_path):
    config = TrainConfig(epochs=2, batch_size=8, lr_head=1e-2, patience=None, seed=5, checkpoint_every_steps=0)
    trained = {}
    for tokens in (True, False):
        model = PooledClassifier()
        train, dev = (cache(model, data, tmp_path / "cache", part, tokens=tokens)
                      for data, part in ((TRAIN, "train"), (DEV, "dev")))
        assert train.has_tokens is tokens
        result = fit(frozen(model), train, dev, config, checkpoint_dir=tmp_path / str(tokens),
                     collate_fn=CachedFeaturesCollator())
        trained[tokens] = ([epoch.train_loss for epoch in result.history], model.head.state_dict())
    with safe_open(str(train.path), framework="pt") as handle:
        assert sorted(handle.keys()) == ["labels", "text.pooled"]  # N x D float32 and the labels, nothing else
    assert trained[True][0] == trained[False][0]
    for key, value in trained[True][1].items():
        assert torch.equal(value, trained[False][1][key]), key


def test_the_streamed_file_holds_what_the_in_memory_file_held(tmp_path, monkeypatch):
    monkeypatch.setattr(rows_file, "COPY_CHUNK", 100)  # many small copies: runs of items are split and merged
    model = PooledClassifier().eval()
    streamed = cache(model, TRAIN, tmp_path, "train", tokens_dtype="float16")
    # The former writer: every batch (in dataset order) concatenated in memory, ragged rows kept.
    reference = {"labels": [], "text.tokens": [], "text.mask": [], "text.pooled": [], "lengths": []}
    with torch.no_grad():
        for start in range(0, len(TRAIN), 7):
            batch = collate([TRAIN[i] for i in range(start, min(start + 7, len(TRAIN)))])
            out = model.encode(batch)["text"]
            lengths = out.mask.sum(1)  # right-padded plots: real tokens = stored rows
            kept = torch.arange(out.mask.shape[1]) < lengths[:, None]
            reference["labels"].append(batch["labels"])
            reference["text.tokens"].append(out.tokens.half()[kept])
            reference["text.mask"].append(out.mask[kept])
            reference["text.pooled"].append(out.pooled)
            reference["lengths"].append(lengths)
    lengths = torch.cat(reference.pop("lengths"))
    expected = {name: torch.cat(parts) for name, parts in reference.items()}
    expected["text.offsets"] = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
    with safe_open(str(streamed.path), framework="pt") as handle:
        assert sorted(handle.keys()) == sorted(expected)
        for name, tensor in expected.items():
            got = handle.get_tensor(name)
            assert got.dtype == tensor.dtype and got.shape == tensor.shape, name
            torch.testing.assert_close(got, tensor, rtol=0, atol=2e-3 if name == "text.tokens" else 1e-6)
        metadata = handle.metadata()
    assert json.loads(metadata["ids"]) == TRAIN.ids and metadata["format"] == str(FEATURE_CACHE_FORMAT)
    assert [p.name for p in tmp_path.joinpath("features").iterdir()] == [streamed.path.name]  # no temporary left


def test_length_sorted_extraction_gives_the_features_of_unsorted_batches(tmp_path):
    batches = extraction_batches(TRAIN, 7)
    assert batches != extraction_batches(TRAIN, 7, sort_by_length=False)
    assert [TRAIN.item_lengths()[b[0]] for b in batches] == sorted((TRAIN.item_lengths()[b[0]] for b in batches),
                                                                   reverse=True)
    model = PooledClassifier().eval()
    sorted_ = cache(model, TRAIN, tmp_path / "sorted", "train")
    unsorted = cache(model, TRAIN, tmp_path / "unsorted", "train", sort_by_length=False)
    assert sorted_.ids == unsorted.ids == TRAIN.ids
    for index in range(len(TRAIN)):
        a, b = sorted_[index]["features"]["text"], unsorted[index]["features"]["text"]
        assert torch.equal(a["mask"], b["mask"])
        torch.testing.assert_close(a["tokens"], b["tokens"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a["pooled"], b["pooled"], rtol=1e-5, atol=1e-6)


def test_extraction_says_it_started_and_when_it_ends(tmp_path, caplog):
    """A long extraction is not silent: a line after its first batch (movies done, rate, eta) and one at the
    end (this one is quicker than the 15 s between lines)."""
    with caplog.at_level("INFO", logger="thesis_lib.train.features"):
        cache(PooledClassifier().eval(), TRAIN, tmp_path, "train")
    lines = [record.getMessage() for record in caplog.records if record.name == "thesis_lib.train.features"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("features ") and ": 7/40 movies (" in lines[0] and ", eta " in lines[0]
    assert ": 40/40 movies done in " in lines[1]


def test_progress_lines_come_every_few_seconds_and_at_the_end(caplog):
    seconds = iter([0.0, 1.0, 2.0, 20.0, 21.0, 22.0])  # start, then one reading per update
    progress = ProgressLog(logging.getLogger("progress-test"), "work", total=50, unit="items", every_s=15,
                           clock=lambda: next(seconds))
    with caplog.at_level("INFO", logger="progress-test"):
        for done in (10, 20, 30, 40, 50):
            progress.update(done)
    assert [record.getMessage() for record in caplog.records] == [
        "work: 10/50 items (10.0 items/s, eta 0:00:04)",  # the first update always says something
        "work: 30/50 items (1.5 items/s, eta 0:00:13)",  # 19 s after the last line
        "work: 50/50 items done in 0:00:22 (2.3 items/s)",  # the end always
    ]


# ------------------------------------------------------------------------------- the grid and the CLI


GRID_MODELS = ["text_roberta", "image_resnet50", "fusion_early", "fusion_attention", "fusion_cross_attention"]
TWO_MODALITIES = {name: {"modalities": ["text", "image"], "fusion_dim": 16, "fusion_heads": 2}
                  for name in ("fusion_early", "fusion_attention", "fusion_cross_attention")}


def grid_changes(tiny_grid) -> dict:
    return {"models": GRID_MODELS, "seeds": [0], "splits": ["thesis"], "image_size": 32, "text_max_length": 32,
            "model_overrides": {**tiny_grid.resnet, **tiny_grid.roberta, **TWO_MODALITIES}}


def test_the_plan_says_which_caches_each_run_reads(tiny_grid, tmp_path):
    with tiny_grid(tmp_path, **grid_changes(tiny_grid)) as grid:
        profile = load_profile(grid.profile)
    plan = plan_grid(profile)
    hashes = config_hashes(plan, profile)
    needs = {spec.name: feature_caches_of(spec, profile, plan, hashes) for spec in plan}
    assert needs["text_roberta"] == needs["image_resnet50"] == ()  # fine-tuned: raw inputs
    assert len(needs["fusion_early"]) == 6 and not any(n.tokens for n in needs["fusion_early"])  # 2 modalities x 3 parts
    assert needs["fusion_attention"] == needs["fusion_early"]  # the same source encoders, pooled: shared files
    assert {n.tokens for n in needs["fusion_cross_attention"]} == {True}
    # The disk the policy needs at most: the pooled files (1 B each) are gone before the token files
    # (10 B each) come, so the six token files, not the twelve files.
    ledger = CacheLedger.of_plan(plan, profile, [spec.key for spec in plan], hashes)
    assert ledger.projected_peak_bytes(lambda need: 10 if need.tokens else 1) == 6 * 10
    keep_all = CacheLedger(ledger.needs, [])
    assert keep_all.projected_peak_bytes(lambda need: 1) == 0  # nothing left to run: nothing on disk


@pytest.mark.slow
def test_the_grid_deletes_a_cache_after_its_last_reader_and_keeps_it_for_a_later_one(tiny_grid, tmp_path,
                                                                                       monkeypatch):
    from thesis_lib.experiments import grid as grid_module

    seen = {}
    execute = grid_module.execute_run

    def recording(spec, ctx):
        features = tmp_path / "cache" / "features"
        seen[spec.name] = sorted(p.name for p in features.iterdir()) if features.is_dir() else []
        return execute(spec, ctx)

    monkeypatch.setattr(grid_module, "execute_run", recording)
    with tiny_grid(tmp_path, **grid_changes(tiny_grid)) as grid:
        report = run_grid(load_profile(grid.profile), data_root=str(grid.twin), runs_dir=str(grid.runs))
        assert report.ok, report.summary()
        left = list((tmp_path / "cache" / "features").iterdir())
    assert seen["fusion_early"] == []
    assert len(seen["fusion_attention"]) == 6  # fusion_early's pooled caches: fusion_attention reads them next
    assert seen["fusion_cross_attention"] == []  # deleted after fusion_attention, their last reader
    assert left == []  # the token caches too, after cross-attention
    assert len(report.caches_freed) == 12 and "feature caches no later run reads: 12 deleted" in report.summary()


def test_cache_clean_removes_what_no_unfinished_run_reads_and_dry_run_only_lists(tiny_grid, tmp_path, capsys):
    with tiny_grid(tmp_path, **grid_changes(tiny_grid)) as grid:
        profile = load_profile(grid.profile)
        plan = plan_grid(profile)
        need = feature_caches_of(next(s for s in plan if s.name == "fusion_early"), profile, plan)[0]
        from thesis_lib.data.mmimdb import load_release

        data = load_release(grid.twin, plot_choice=profile.plot_choice).fingerprint
        folder = tmp_path / "cache" / "features"
        folder.mkdir(parents=True)
        tensors = {"labels": torch.zeros(2, CLASSES), "text.pooled": torch.zeros(2, DIM)}
        files = {
            "needed": {"label": need.label},
            "unneeded": {"label": replace(need, encoder="run thesis/text_bert/seed0 0000").label},
            "old-format": {"label": need.label, "format": "2"},
            "other-data": {"label": need.label, "key": json.dumps({"data": "elsewhere"})},
        }
        for name, changes in files.items():
            metadata = {"format": str(FEATURE_CACHE_FORMAT), "key": json.dumps({"data": data}), "ids": "[]",
                        "modalities": '["text"]', "tokens": "none"} | changes
            save_file(tensors, str(folder / f"{name}.safetensors"), metadata=metadata)
        command = ["cache", "clean", "--profile", str(grid.profile), "--data", str(grid.twin), "--runs", str(grid.runs)]
        assert main([*command, "--dry-run"]) == 0
        listed = capsys.readouterr().out
        assert len(list(folder.iterdir())) == 4  # a dry run removes nothing
        for name in ("unneeded", "old-format", "other-data"):
            assert f"would remove {name}.safetensors" in listed
        assert "needed.safetensors" not in listed.replace("unneeded", "")
        assert main(command) == 0
        assert "removed 3 feature caches" in capsys.readouterr().out
        assert [p.name for p in folder.iterdir()] == ["needed.safetensors"]
        assert main(["cache", "clean", "--all"]) == 0
        assert list(folder.iterdir()) == []


def test_a_registry_cache_another_run_will_read_is_not_deleted(tmp_path):
    """Two runs reading a frozen pretrained encoder from the registry under different configs get the same
    file (the file is keyed by the weights); deleting it after the first would re-extract it for the second."""
    first = FeatureCacheNeed("thesis", "train", "text", "registry 1111 seed0", tokens=False)
    second = FeatureCacheNeed("thesis", "train", "text", "registry 2222 seed0", tokens=False)
    run_a, run_b, run_c = ("thesis", 0, "a"), ("thesis", 0, "b"), ("thesis", 0, "c")
    ledger = CacheLedger({run_a: (first,), run_b: (), run_c: (second,)}, [run_a, run_b, run_c])
    shared = tmp_path / "shared.safetensors"
    shared.write_bytes(b"x" * 10)
    ledger.record(first, shared)
    assert ledger.release_after(run_a) == [] and shared.is_file()  # run c may read the same file
    ledger.release_after(run_b)
    ledger.record(second, shared)
    assert ledger.release_after(run_c) == [(shared, 10)] and not shared.exists()  # its last reader is done
