"""The plan before the spend (`thesis run --plan`, experiments.forecast): runs, FLOPs, disk at peak."""

from __future__ import annotations

import json

import pytest

from thesis_lib.cli import main
from thesis_lib.data.mmimdb import load_release
from thesis_lib.experiments.forecast import CacheNeed, RunCost, disk_timeline, forecast_grid
from thesis_lib.experiments.profile import load_profile
from thesis_lib.experiments.specs import plan_grid
from thesis_lib.models import costs
from thesis_lib.models.configs import TextEncoderConfig


@pytest.fixture(scope="module")
def full_forecast(make_twin):
    """The full profile's plan over a 120-movie twin (FLOPs of the full-size architectures, counted once)."""
    profile = load_profile("full")
    release = load_release(make_twin(120), plot_choice=profile.plot_choice, verify_posters="none")
    return profile, release, forecast_grid(profile, release)


@pytest.mark.slow
def test_the_plan_lists_every_run_of_the_grid_in_order(full_forecast):
    profile, release, forecast = full_forecast
    plan = plan_grid(profile)
    assert [row.label for row in forecast.rows] == [spec.label for spec in plan]
    assert forecast.totals["runs"] == len(plan) == 114
    fine_tune = next(row for row in forecast.rows if row.name == "text_bert" and row.split == "thesis")
    assert fine_tune.epochs == profile.epochs and fine_tune.movies["train"] > 0
    assert fine_tune.steps == -(-fine_tune.movies["train"] // profile.batch_size) * profile.epochs
    assert fine_tune.flops > 0 and fine_tune.best_bytes > 4 * 100e6  # BERT-base: ~109M float32 weights


@pytest.mark.slow
def test_the_512_token_worst_case_bounds_the_release_lengths(full_forecast):
    _, _, forecast = full_forecast
    assert forecast.totals["flops_worst"] >= forecast.totals["flops"] > 0
    assert all(row.flops_worst >= row.flops for row in forecast.rows)
    assert forecast.totals["peak_disk_bytes_worst"] >= forecast.totals["peak_disk_bytes"]
    text_rows = [row for row in forecast.rows if row.name == "text_bert"]
    assert all(row.flops_worst > row.flops for row in text_rows)  # twin plots are far shorter than 512 tokens


@pytest.mark.slow
def test_frozen_fusions_read_pooled_or_token_caches_that_are_freed_after_their_last_reader(full_forecast):
    _, _, forecast = full_forecast
    layouts = {cache.layout for cache in forecast.caches}
    assert layouts == {"pooled", "tokens"}
    for cache in forecast.caches:  # one cache set per (split, seed), gone before the next seed starts
        readers = forecast.rows[cache.first:cache.last + 1]
        assert {row.seed for row in readers} == {forecast.rows[cache.first].seed}
        assert cache.key in forecast.rows[cache.last].caches_freed


def test_counted_flops_of_a_small_bert_match_the_analytic_count():
    """Per layer: Q, K, V, O projections 8*L*d^2, feed-forward 4*L*d*f, attention scores and mix 4*L^2*d;
    training (forward + backward of weights and activations) is three times the forward."""
    config = TextEncoderConfig(backbone="random-bert-small", pretrained=False, max_length=512)
    length, width, ffn, layers = 40, 128, 512, 2
    cost = costs.text_cost(config, length)
    assert cost.forward == layers * (8 * length * width**2 + 4 * length * width * ffn + 4 * length**2 * width)
    assert cost.train == 3 * cost.forward
    assert cost.tokens == length and cost.token_dim == width


def _row(label: str, best: float, last: float) -> RunCost:
    return RunCost(label, label, label, "thesis", 0, "train", "finetune", 1, 1, {"train": 1, "dev": 1, "test": 1},
                   0.0, 0.0, 0.0, 0.0, 0.0, "-", int(best), int(last), 0.0)


def _cache(key: str, size: float, first: int, last: int) -> CacheNeed:
    return CacheNeed(key, "text", "tokens", "thesis", "text_bert", size, 2 * size, 0.0, 0.0, first, last)


def test_peak_disk_is_the_largest_running_sum_of_checkpoints_caches_and_fixed_costs():
    rows = [_row("a", 10, 30), _row("b", 1, 3), _row("c", 1, 3), _row("d", 5, 15)]
    caches = [_cache("x", 100, 1, 2), _cache("y", 7, 3, 3)]
    peak = disk_timeline(rows, caches, fixed_bytes=50)
    # while each run goes: fixed + best/ of the runs before + its own best/ and last/ + caches alive
    expected = [50 + 0 + 40, 50 + 10 + 4 + 100, 50 + 11 + 4 + 100, 50 + 12 + 20 + 7]
    assert [row.disk_during for row in rows] == expected
    assert peak["peak_disk_bytes"] == max(expected) == 165
    assert peak["peak_disk_run"] == "c"
    assert peak["peak_cache_bytes"] == 100 and peak["peak_checkpoint_bytes"] == 15
    assert peak["peak_disk_bytes_worst"] == 50 + 11 + 4 + 200


@pytest.mark.slow
def test_thesis_run_plan_json_parses(make_twin, capsys, tmp_path):
    twin = make_twin(120)
    code = main(["run", "--profile", "full", "--data", str(twin), "--runs", str(tmp_path / "runs"),
                 "--models", "text_bert,image_vit", "--seeds", "0", "--plan", "--json"])
    assert code == 0
    plan = json.loads(capsys.readouterr().out)
    assert [run["name"] for run in plan["runs"]] == ["text_bert", "image_vit"] * 2  # thesis, official
    assert plan["totals"]["gpu_hours"] > 0 and plan["totals"]["peak_disk_bytes"] > 0
    assert all(run["rate_source"] == "assumed 35% MFU" for run in plan["runs"])  # no GPU benchmark here
    assert not (tmp_path / "runs").exists()  # a plan trains and writes nothing
    assert plan["gpu"].startswith("NVIDIA H100 80GB HBM3 (this machine has none")  # says why this GPU
    # planned for a slower GPU, the same FLOPs take longer
    assert main(["run", "--profile", "full", "--data", str(twin), "--runs", str(tmp_path / "runs"),
                 "--models", "text_bert,image_vit", "--seeds", "0", "--plan", "--json", "--gpu", "A100-SXM4-80GB"]) == 0
    a100 = json.loads(capsys.readouterr().out)
    assert a100["gpu"] == "A100-SXM4-80GB" and a100["totals"]["flops"] == plan["totals"]["flops"]
    assert a100["totals"]["gpu_hours"] > 2 * plan["totals"]["gpu_hours"]  # 312 vs 989 TFLOP/s dense bf16
    assert main(["run", "--profile", "full", "--gpu", "A100-SXM4-80GB"]) == 2  # --gpu only plans


def test_a_gpu_benchmark_result_replaces_the_mfu_assumption_for_its_gpu(tmp_path):
    from thesis_lib.experiments.forecast import MFU_ASSUMED, gpu_rates

    case = {"model": "text_bert", "task": "train", "size": "full", "techniques": {"bf16": True},
            "achieved_tflops": 420.0}
    small = {**case, "size": "small", "achieved_tflops": 999.0}  # small models say nothing about the full ones
    result = {"device": {"type": "cuda", "name": "NVIDIA H100 80GB HBM3"}, "cases": [case, small]}
    (tmp_path / "gpu-h100.json").write_text(json.dumps(result))
    rates = gpu_rates("NVIDIA H100 80GB HBM3", results_dir=tmp_path)
    assert rates.rate("text_bert", "train") == (420e12, "measured 420 TFLOP/s (gpu-h100.json)")
    assert rates.rate("image_vit", "train") == (MFU_ASSUMED * 989e12, "assumed 35% MFU")
    other = gpu_rates("NVIDIA A100-SXM4-80GB", results_dir=tmp_path)  # another GPU: its own peak, no measurement
    assert other.rate("text_bert", "train") == (MFU_ASSUMED * 312e12, "assumed 35% MFU")
