"""The speed appendix reads the committed benchmark results and shows them without inventing numbers; with
none committed (no GPU was available) it says plainly that the GPU figures are unmeasured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thesis_lib import plots
from thesis_lib.bench.report import add_comparisons, evaluate_targets
from thesis_lib.bench.results import new_result
from thesis_lib.bench.timing import step_statistics
from thesis_lib.book import speed

ROOT = Path(__file__).resolve().parents[1]


def _case(variant: str, role: str, rate: float, bf16: bool) -> dict:
    techniques = {"bf16": bf16, "fused_adamw": bf16, "sdpa": bf16, "channels_last": bf16, "compile": False}
    return {"name": "train fusion_cross_attention", "model": "fusion_cross_attention", "size": "small",
            "task": "train", "modality": None, "variant": variant, "role": role, "techniques": techniques,
            "shape": {"batch_size": 4, "text_length": 16, "image_size": 32, "regions": 16},
            "overrides": {"modalities": ["text", "image"]}, "parameters": 1_000_000,
            "timing": {"warmup_steps": 1, "warmup_s": 0.1, "wall_s": 0.4, **step_statistics([4 / rate] * 3)},
            "samples_per_s": rate, "flops_per_step": 10**9, "padded_flops_per_step": 10**9,
            "achieved_tflops": rate / 4 * 1e-3, "mfu": None, "mfu_measured_peak": None,
            "peak_memory_bytes": 2**24, "peak_memory_kind": "main_process_vmhwm_since_reset"}


def _result(created: str, device: dict) -> dict:
    """A result as the benchmark writes it (comparisons and targets added by its own functions)."""
    result = new_result("dry") | {"created": created, "device": device, "wall_time_s": 12.0,
                                  "machine": {"load_average": [0.5, 0.6, 0.7], "nproc": 2}}
    result["cases"] = [_case("bf16+fused_adamw+sdpa+channels_last", "product", 40.0, True),
                       _case("plain", "comparison", 10.0, False)]
    result["loader"] = [{"stage": "decode", "batch_size": 4, "workers": 1, "pin_memory": False, "prefetch_factor": 4,
                         "items": 24, "batches": 6, "seconds": 0.5, "startup_s": 0.2, "items_per_s": 48.0},
                        {"stage": "decode", "batch_size": 4, "workers": 0, "pin_memory": False, "prefetch_factor": None,
                         "items": 8, "batches": 2, "seconds": 0.4, "startup_s": 0.1, "items_per_s": 20.0}]
    add_comparisons(result)
    result["targets"] = evaluate_targets(result)
    return result


CPU = {"type": "cpu", "name": "Test CPU", "peak_bf16_flops": None, "measured_peak_flops": 1e11}


@pytest.fixture
def results_root(tmp_path):
    """A project root holding one CPU benchmark result."""
    folder = tmp_path / speed.RESULTS_DIR
    folder.mkdir(parents=True)
    (folder / "dry-test.json").write_text(json.dumps(_result("2026-12-01T00:00:00+00:00", CPU)))
    return tmp_path


def test_every_entry_of_a_result_reaches_a_table(results_root):
    (result,) = speed.load_results(results_root)
    content = result.content
    tables = speed.result_tables(result)
    cases = tables["Training steps on synthetic batches (median step; spread = interquartile range / median)"]
    assert cases["samples/s"].tolist() == [case["samples_per_s"] for case in content["cases"]]
    assert cases["x plain"].tolist() == [4.0, 1.0]  # added by the benchmark's own comparison
    loading = tables["Loading (decode, resize, augmentation, the training loader)"]
    assert loading["x no workers"].tolist() == [pytest.approx(2.4), 1.0]
    assert "Test CPU" in result.heading and result.path.name in result.heading
    assert "[0.5, 0.6, 0.7]" in result.description  # the load is shown with the numbers


def test_the_technique_ladder_is_the_cross_attention_training_variants(results_root):
    result = speed.headline(speed.load_results(results_root))
    ladder = speed.technique_ladder(result)
    assert list(ladder.index) == ["bf16+fused_adamw+sdpa+channels_last", "plain"]
    assert ladder.loc["plain", "x plain"] == pytest.approx(1.0)
    assert ladder.loc["plain", "x product"] == pytest.approx(0.25)


def test_without_any_result_the_appendix_says_the_gpu_figures_are_unmeasured(tmp_path):
    results = speed.load_results(tmp_path)  # no folder, no file: no result, no error
    assert results == [] and speed.headline(results) is None
    status = speed.gpu_status(results)
    assert "still to be measured" in status and "No benchmark result is committed" in status
    assert speed.technique_ladder(None).empty
    figure = plots.throughput_bars(speed.technique_ladder(None), speed.ladder_title(None))
    assert "not measured" in figure.axes[0].texts[0].get_text()


def test_the_committed_results_hold_no_gpu_figure_yet():
    results = speed.load_results(ROOT)
    assert not any(result.on_gpu for result in results)  # no GPU was lent so far: nothing may pretend otherwise
    assert "still to be measured" in speed.gpu_status(results)


def test_a_gpu_result_becomes_the_headline(results_root):
    gpu = _result("2099-01-01T00:00:00+00:00", {"type": "cuda", "name": "Test GPU", "peak_bf16_flops": 1e15})
    (results_root / speed.RESULTS_DIR / "gpu-test.json").write_text(json.dumps(gpu))
    again = speed.load_results(results_root)
    assert speed.headline(again).path.name == "gpu-test.json"
    assert "Test GPU" in speed.gpu_status(again) and "still to be measured" not in speed.gpu_status(again)


def test_bad_result_files_are_named(tmp_path):
    folder = tmp_path / speed.RESULTS_DIR
    folder.mkdir(parents=True)
    (folder / "broken.json").write_text("{not json")
    with pytest.raises(speed.BenchResultError, match="broken.json"):
        speed.load_results(tmp_path)
    (folder / "broken.json").write_text(json.dumps({"schema": "other/9"}))
    with pytest.raises(speed.BenchResultError, match="broken.json.*other/9"):
        speed.load_results(tmp_path)
