"""The speed benchmark (thesis_lib.bench): FLOP counting, the tiny profile's JSON, the blocked-imports run,
and the training options it measures (fused AdamW, channels-last, length-grouped batches, pinned memory).

Nothing here asserts a speed: CI machines differ. The tiny profile runs once per session (a few seconds).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertModel

from thesis_lib.bench.config import PROFILES
from thesis_lib.bench.hardware import describe_device, peak_bf16_flops
from thesis_lib.bench.report import SCHEMA
from thesis_lib.bench.runner import run_benchmark
from thesis_lib.bench.techniques import set_attention_kernels
from thesis_lib.data.dataset import MMIMDbDataset
from thesis_lib.data.mmimdb import Movie
from thesis_lib.data.text import RAW
from thesis_lib.models.flops import QuadraticFlops, count_flops, matmul_parameters, rule_flops
from thesis_lib.train import TrainConfig, fit
from thesis_lib.train.loaders import LengthGroupedSampler, SeededLoader
from thesis_lib.train.optim import build_optimizer

ROOT = Path(__file__).resolve().parent.parent

TOP_KEYS = {"schema", "profile", "note", "created", "device", "software", "packages", "config", "cases", "loader",
            "end_to_end", "detectors", "skipped", "errors", "targets", "wall_time_s"}
CASE_KEYS = {"name", "model", "size", "task", "modality", "variant", "techniques", "shape", "overrides",
             "parameters", "timing", "samples_per_s", "flops_per_step", "flops_source", "rule_flops_per_step",
             "achieved_tflops", "mfu", "peak_memory_bytes", "peak_memory_kind", "speedup_vs_plain"}
LOADER_KEYS = {"stage", "batch_size", "workers", "pin_memory", "prefetch_factor", "items", "seconds",
               "startup_s", "items_per_s", "speedup_vs_no_workers"}
E2E_TRAIN_KEYS = {"name", "task", "model", "variant", "techniques", "group_by_length", "loader", "steps",
                  "seconds", "samples_per_s", "loader_wait_fraction", "peak_memory_bytes", "derived",
                  "text_width_mean", "padding_fraction", "flops_per_step_mean", "achieved_tflops", "mfu"}
E2E_EXTRACT_KEYS = {"name", "task", "model", "modality", "variant", "loader", "movies", "seconds",
                    "movies_per_s", "derived"}


def tiny_bert(hidden: int = 64, layers: int = 2) -> BertModel:
    config = BertConfig(vocab_size=100, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                        intermediate_size=4 * hidden, max_position_embeddings=128)
    model = BertModel(config, add_pooling_layer=False)
    set_attention_kernels(model, sdpa=False)  # eager: the attention matmuls are counted on CPU too
    return model


# ------------------------------------------------------------------------------------------- FLOPs


def test_linear_layer_flops_are_two_times_batch_in_out():
    layer = nn.Linear(7, 5)
    inputs = torch.randn(3, 7, requires_grad=True)  # backward then computes the input's gradient too
    assert count_flops(lambda: layer(inputs)) == 2 * 3 * 7 * 5
    assert count_flops(lambda: layer(inputs).sum().backward()) == 3 * (2 * 3 * 7 * 5)  # + grad input + grad weight


@pytest.mark.parametrize("training", [False, True])
def test_tiny_bert_flops_follow_the_two_and_six_n_tokens_rules(training):
    model = tiny_bert()
    ids = torch.randint(5, 100, (2, 16))  # (B, L) 32 tokens

    def run():
        output = model(input_ids=ids).last_hidden_state
        if training:
            output.sum().backward()

    counted = count_flops(run)
    rule = rule_flops(matmul_parameters(model), ids.numel(), training=training)
    # Counted = rule + self-attention (QK^T and AV: 4*L*d per token and layer, 1/3 of 4*d^2*... here ~4%).
    assert 1.0 <= counted / rule <= 1.2


def test_quadratic_flops_in_text_length_predict_an_uncounted_length_exactly():
    model = tiny_bert()

    def counted(length: int) -> int:
        ids = torch.randint(5, 100, (2, length))
        return count_flops(lambda: model(input_ids=ids).last_hidden_state.sum().backward())

    flops = QuadraticFlops((8, 24, 64), (counted(8), counted(24), counted(64)))
    assert flops(40) == pytest.approx(counted(40), rel=1e-9)


def test_peak_flops_table_and_cpu_mfu_is_not_available():
    assert peak_bf16_flops("NVIDIA H100 80GB HBM3")[0] == 989e12
    assert peak_bf16_flops("NVIDIA H100 PCIe")[0] == 756e12
    assert peak_bf16_flops("NVIDIA H200")[0] == 989e12
    assert peak_bf16_flops("Some Other GPU") is None
    cpu = describe_device(torch.device("cpu"))
    assert cpu.peak_bf16_flops is None and cpu.type == "cpu"
    assert describe_device(torch.device("cpu"), peak_tflops_override=100.0).peak_bf16_flops == 100e12


# --------------------------------------------------------------------------------- the tiny profile


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "tiny.json"
    result = run_benchmark(PROFILES["tiny"], out=out, device=torch.device("cpu"), log=lambda line: None)
    return result, json.loads(out.read_text())


@pytest.mark.slow
def test_tiny_profile_writes_the_documented_json(tiny_result):
    returned, written = tiny_result
    assert written["schema"] == SCHEMA and written["profile"] == "tiny"
    assert TOP_KEYS <= set(written)
    assert written["errors"] == [], written["errors"]
    assert {c["task"] for c in written["cases"]} == {"train", "extract"}
    for case in written["cases"]:
        assert CASE_KEYS <= set(case), CASE_KEYS - set(case)
        assert case["flops_per_step"] > 0 and case["samples_per_s"] > 0
        assert case["mfu"] is None  # CPU: no stated peak, MFU is n/a
        assert case["achieved_tflops"] == pytest.approx(
            case["flops_per_step"] / case["timing"]["seconds_per_step"] / 1e12)
    stages = {stage["stage"] for stage in written["loader"]}
    assert stages == {"decode", "decode_resize", "decode_augment"}
    assert all(LOADER_KEYS <= set(stage) for stage in written["loader"])
    trains = [e for e in written["end_to_end"] if e["task"] == "train"]
    extracts = [e for e in written["end_to_end"] if e["task"] == "extract"]
    assert len(trains) == 3 and len(extracts) == 1
    assert all(E2E_TRAIN_KEYS <= set(e) for e in trains)
    assert all(E2E_EXTRACT_KEYS <= set(e) for e in extracts)
    assert all(e["derived"]["mmimdb_train_epoch_s"] == pytest.approx(18171 / e["samples_per_s"]) for e in trains)
    assert all(target["met"] is None for target in written["targets"])  # targets are for one H100
    assert returned["wall_time_s"] == pytest.approx(written["wall_time_s"])


@pytest.mark.slow
def test_every_technique_variant_shares_the_plain_variants_flop_count(tiny_result):
    _, written = tiny_result
    ablation = [c for c in written["cases"] if c["model"] == "fusion_cross_attention"]
    assert [c["variant"] for c in ablation] == ["plain", "bf16+fused_adamw+sdpa+channels_last"]
    assert ablation[0]["flops_per_step"] == ablation[1]["flops_per_step"]
    assert ablation[0]["speedup_vs_plain"] == 1.0
    assert ablation[1]["speedup_vs_plain"] == pytest.approx(ablation[1]["samples_per_s"] / ablation[0]["samples_per_s"])


def test_a_failing_case_is_recorded_and_the_run_goes_on(tmp_path):
    config = dataclasses.replace(PROFILES["tiny"], ablation_model="no_such_model", sections=("train", "extract"))
    result = run_benchmark(config, out=tmp_path / "r.json", device=torch.device("cpu"), log=lambda line: None)
    assert {e["name"].split(" [")[0] for e in result["errors"]} == {"train no_such_model"}
    assert [c["task"] for c in result["cases"]] == ["extract"]


def test_sections_past_the_time_budget_are_skipped_not_lost(tmp_path):
    config = dataclasses.replace(PROFILES["tiny"], time_budget_s=0.0, sections=("train", "loader"))
    result = run_benchmark(config, out=tmp_path / "r.json", device=torch.device("cpu"), log=lambda line: None)
    assert [s["section"] for s in result["skipped"]] == ["train", "loader"]
    assert json.loads((tmp_path / "r.json").read_text())["skipped"] == result["skipped"]


# ------------------------------------------------------------------------------- blocked imports

BLOCKED = ("ultralytics", "pytorch_grad_cam", "papermill", "jupyter_book", "matplotlib", "seaborn",
           "sklearn", "pandas", "scipy", "iterstrat")

_BLOCKED_SCRIPT = """
import dataclasses, json, sys
from pathlib import Path
BLOCKED = {blocked!r}
for name in BLOCKED:
    sys.modules[name] = None  # exactly like a missing package: import fails, find_spec returns None
sys.path.insert(0, {root!r})
import torch
import thesis_lib.train, thesis_lib.models, thesis_lib.data.dataset, thesis_lib.data.images
from thesis_lib.bench.config import PROFILES
from thesis_lib.bench.runner import run_benchmark
from thesis_lib.bench.techniques import set_attention_kernels
config = dataclasses.replace(PROFILES["tiny"], sections=("train", "end_to_end"), text_cleaning="raw",
                             ablations=PROFILES["tiny"].ablations[1:], extract_models=())
result = run_benchmark(config, out=Path({out!r}), device=torch.device("cpu"), log=lambda line: None)
loaded = sorted(name for name in BLOCKED if sys.modules.get(name) is not None)
print(json.dumps({{"errors": result["errors"], "loaded": loaded,
                  "cases": len(result["cases"]), "end_to_end": len(result["end_to_end"])}}))
"""


@pytest.mark.slow
def test_benchmark_and_training_path_run_without_the_optional_packages(tmp_path):
    script = _BLOCKED_SCRIPT.format(blocked=BLOCKED, root=str(ROOT), out=str(tmp_path / "blocked.json"))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["errors"] == [] and report["loaded"] == []
    assert report["cases"] == 1 and report["end_to_end"] == 3  # one training step case; three loader-fed runs


# ------------------------------------------------------------------ training options the benchmark measures


def test_length_grouped_sampler_is_a_seeded_permutation_of_similar_length_batches():
    lengths = [int(x) for x in torch.randint(5, 500, (203,), generator=torch.Generator().manual_seed(1))]
    sampler = LengthGroupedSampler(lengths, batch_size=8, seed=3, group_batches=5)
    order = list(sampler)
    assert sorted(order) == list(range(203))
    assert list(sampler) == order  # the same epoch gives the same order
    sampler.set_epoch(1)
    assert list(sampler) != order
    batches = sampler.batches()
    assert [len(b) for b in batches[:-1]] == [8] * 25 and len(batches[-1]) == 3  # the partial batch comes last

    def padding(batch_order: list[list[int]]) -> int:
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batch_order)

    shuffled = torch.randperm(203, generator=torch.Generator().manual_seed(3)).tolist()
    random_batches = [shuffled[i:i + 8] for i in range(0, 203, 8)]
    assert padding(batches) < padding(random_batches) / 3


def test_seeded_loader_groups_by_length_only_when_given_lengths():
    dataset = list(range(10))
    grouped = SeededLoader(dataset, batch_size=2, shuffle=True, seed=0, num_workers=0, collate_fn=None,
                           lengths=list(range(10)))
    assert isinstance(grouped.sampler, LengthGroupedSampler)
    with pytest.raises(ValueError, match="9 lengths"):
        SeededLoader(dataset, batch_size=2, shuffle=True, seed=0, num_workers=0, collate_fn=None, lengths=[1] * 9)
    plain = SeededLoader(dataset, batch_size=2, shuffle=True, seed=0, num_workers=0, collate_fn=None)
    assert not isinstance(plain.sampler, LengthGroupedSampler)
    assert plain.loader.pin_memory == torch.cuda.is_available()


def test_dataset_item_lengths_count_the_words_of_cleaned_plots(tmp_path):
    movies = [Movie(id=f"{i:07d}", plot=plot, genres=("Drama",), poster=tmp_path / "x.jpeg")
              for i, plot in enumerate(["One two, three!", "a  b", "word"])]
    dataset = MMIMDbDataset(movies, image_transform=None, text_cleaning=RAW, modalities=("text",))
    assert dataset.item_lengths() == [3, 2, 1]


def test_fused_adamw_is_a_train_config_switch():
    model = nn.Linear(3, 2)
    assert build_optimizer(model, TrainConfig(fused_adamw=True)).defaults["fused"] is True
    assert not build_optimizer(model, TrainConfig()).defaults["fused"]


def test_checkpoints_written_before_the_speed_switches_still_resume():
    saved = TrainConfig().to_dict()
    for name in ("fused_adamw", "channels_last", "group_by_length"):
        saved.pop(name)
    assert TrainConfig().resume_mismatches(saved) == []
    assert TrainConfig(fused_adamw=True).resume_mismatches(saved) == ["fused_adamw: saved False, now True"]


class _Plots(torch.utils.data.Dataset):
    """Tiny items {"ids", "image", "labels"} with plot lengths, for `fit` with the speed switches."""

    def __init__(self, n: int):
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randn(n, 3, 8, 8, generator=generator)
        self.labels = (torch.rand(n, 23, generator=generator) < 0.3).float()
        self.lengths = torch.randint(1, 50, (n,), generator=generator).tolist()

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> dict:
        # "ids" per item: default collation turns the strings into the batch's list of ids.
        return {"ids": f"{index:07d}", "image": self.images[index], "labels": self.labels[index]}

    def item_lengths(self) -> list[int]:
        return self.lengths


class _Output:
    def __init__(self, logits: torch.Tensor):
        self.logits = logits


class _ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4, 23)

    def forward(self, batch: dict) -> _Output:
        return _Output(self.head(self.conv(batch["image"]).mean(dim=(2, 3))))  # (B, 23)


def test_fit_runs_with_fused_adamw_channels_last_and_length_grouped_batches(tmp_path):
    model = _ConvNet()
    config = TrainConfig(epochs=1, batch_size=4, patience=None, fused_adamw=True, channels_last=True,
                         group_by_length=True, log_every=100)
    result = fit(model, _Plots(16), _Plots(8), config, checkpoint_dir=tmp_path / "run")
    assert result.epochs_run == 1 and result.history[0].train_loss == result.history[0].train_loss  # not NaN
    assert model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    without_lengths = torch.utils.data.TensorDataset(torch.zeros(4, 1))
    with pytest.raises(TypeError, match="item_lengths"):
        fit(_ConvNet(), without_lengths, without_lengths, config, checkpoint_dir=tmp_path / "other")
