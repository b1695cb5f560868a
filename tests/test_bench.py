"""The speed benchmark (thesis_lib.bench): FLOP counting, measurement hygiene (per-step timing, the loader's
clock, per-case peaks, cut-off runs), the product's settings, and the training options it measures (fused
AdamW, channels-last, length-grouped batches, pinned memory). The whole of benchmarks/gpu.sh runs in
tests/test_gpu_script.py.

Nothing here asserts a speed: CI machines differ.
"""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertModel

from thesis_lib.bench.config import PROFILES
from thesis_lib.bench.grid import GRID_CHECKS, GRID_MODELS, grid_overrides
from thesis_lib.bench.hardware import PeakMemory, describe_device, peak_bf16_flops
from thesis_lib.bench.loading import LoaderSettings, measure_loader
from thesis_lib.bench.product import Product
from thesis_lib.bench.results import (
    BenchJsonError,
    new_result,
    open_result,
    problem_lines,
    read_result,
    record_timeout,
    save_result,
)
from thesis_lib.bench.runner import run_benchmark
from thesis_lib.bench.techniques import set_attention_kernels
from thesis_lib.bench.timing import time_steps
from thesis_lib.data.dataset import MMIMDbDataset
from thesis_lib.data.mmimdb import Movie
from thesis_lib.data.text import RAW
from thesis_lib.experiments.profile import load_profile
from thesis_lib.models.flops import QuadraticFlops, count_flops, matmul_parameters, rule_flops
from thesis_lib.train import TrainConfig, fit
from thesis_lib.train.loaders import LengthGroupedSampler, SeededLoader
from thesis_lib.train.optim import build_optimizer


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


# ------------------------------------------------------------------------------ measurement hygiene


def test_each_step_is_timed_and_the_median_and_spread_are_reported():
    durations = iter([0.01, 0.01, 0.03, 0.01, 0.02])  # two warm-up steps, then three timed ones

    timing = time_steps(lambda: time.sleep(next(durations)), warmup=2, steps=3, device=torch.device("cpu"))
    assert timing.steps == 3 and timing.warmup_steps == 2
    assert timing.seconds_per_step == pytest.approx(0.02, abs=0.008)  # the median of 0.01, 0.02, 0.03 (+ noise)
    stats = timing.to_dict()
    assert stats["min_s"] <= stats["p25_s"] <= stats["seconds_per_step"] <= stats["p75_s"] <= stats["max_s"]
    with pytest.raises(ValueError, match="median"):
        time_steps(lambda: None, warmup=0, steps=1, device=torch.device("cpu"))


class _SlowStart:
    """A loader whose first batch takes 0.2 s (worker start-up) and the others 0.01 s each."""

    def __iter__(self):
        time.sleep(0.2)
        yield torch.zeros(4, 1)
        for _ in range(4):
            time.sleep(0.01)
            yield torch.zeros(4, 1)


def test_the_loader_clock_starts_before_batch_zero():
    throughput = measure_loader("decode", _SlowStart(), LoaderSettings(batch_size=4, workers=2))
    assert throughput.items == 20 and throughput.batches == 5  # batch 0 is counted
    assert throughput.startup_s >= 0.2 and throughput.seconds >= 0.24  # and so is the time it took
    assert throughput.items_per_s < 20 / 0.24


def test_host_peak_memory_is_reset_per_case():
    memory = PeakMemory(torch.device("cpu"))
    block = bytearray(200 * 2**20)  # 200 MiB touched
    block[::4096] = b"x" * len(block[::4096])
    high = memory.host_peak_bytes()
    del block
    memory.reset()
    if memory.host_kind != "main_process_vmhwm_since_reset":
        pytest.skip("this kernel refuses to reset the peak (the JSON then says process_max_rss)")
    assert memory.host_peak_bytes() < high - 100 * 2**20


def test_a_cut_off_step_is_recorded_and_the_saved_cases_stay(tmp_path):
    path = tmp_path / "run.json"
    result = new_result("dry")
    result["cases"].append({"name": "train x"})
    save_result(path, result)
    record_timeout(path, "compile", 55, 124, "dry")
    record_timeout(path, "grid", 50, 1, "dry")
    again = read_result(path)
    assert again["cases"] == [{"name": "train x"}]
    assert [item["section"] for item in again["skipped"]] == ["compile"] and "55 s" in again["skipped"][0]["reason"]
    assert [item["section"] for item in again["errors"]] == ["grid"]
    assert problem_lines(again)[0].startswith("skipped: compile")
    with pytest.raises(BenchJsonError, match="not 'gpu'"):
        open_result(path, "gpu")  # a run of another profile writes its own file


def test_a_failing_case_is_recorded_and_the_run_goes_on(tmp_path):
    config = dataclasses.replace(PROFILES["dry"], ablation_model="no_such_model", train_models=(), ablations=())
    out = tmp_path / "r.json"
    result = run_benchmark(config, out=out, sections=["train"], log=lambda line: None)
    assert [e["name"].split(" [")[0] for e in result["errors"]] == ["train no_such_model"]
    assert json.loads(out.read_text())["errors"][0]["section"] == "train"  # written as it happened


def test_cases_past_the_time_budget_are_skipped_not_lost(tmp_path):
    config = dataclasses.replace(PROFILES["dry"], time_budget_s=0.0)
    result = run_benchmark(config, out=tmp_path / "r.json", sections=["train"], log=lambda line: None)
    assert [s["section"] for s in result["skipped"]] == ["train"] * 2 and result["cases"] == []  # product, plain
    assert "time budget" in result["skipped"][0]["reason"]


def test_the_product_settings_are_the_full_profiles():
    product = Product.load(PROFILES["gpu"], torch.device("cpu"))
    full = load_profile("full")
    assert product.profile.batch_size == full.batch_size and product.profile.text_max_length == full.text_max_length
    assert product.feature_cache_config(tokens=True).mixed_precision == full.mixed_precision
    config = product.train_config(lengths_known=True)
    assert (config.fused_adamw, config.channels_last, config.group_by_length) == (
        full.fused_adamw, full.channels_last, full.group_by_length)
    assert product.techniques.bf16 is False  # the CPU: the product does not autocast there
    grid = load_profile("full", grid_overrides(GRID_CHECKS["dry"]))  # the grid check's profile is a valid one
    assert grid.models == list(GRID_MODELS) and grid.splits == ["official"] and grid.model_size == "small"


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
