"""The speed appendix reads the committed benchmark results and shows them without inventing numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from thesis_lib.book import speed

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def results_root(tmp_path):
    """A project root holding a copy of the committed benchmark results."""
    shutil.copytree(ROOT / speed.RESULTS_DIR, tmp_path / speed.RESULTS_DIR)
    return tmp_path


def test_committed_results_load_and_every_entry_reaches_a_table(results_root):
    results = speed.load_results(results_root)
    assert results and all(result.content["schema"] == "thesis-bench/1" for result in results)
    for result in results:
        content = result.content
        tables = speed.result_tables(result)
        cases = tables["Training and extraction steps on synthetic batches"]
        assert cases["samples/s"].tolist() == [case["samples_per_s"] for case in content["cases"]]
        assert len(tables["Poster loading (decode, resize, augmentation)"]) == len(content["loader"])
        fed = tables["Fed by the real data loader (epoch and data-set times derived from throughput)"]
        assert fed["movies/s"].tolist() == [e.get("samples_per_s", e.get("movies_per_s")) for e in content["end_to_end"]]
        assert content["device"]["name"] in result.heading and result.path.name in result.heading


def test_the_technique_ladder_is_the_cross_attention_training_variants(results_root):
    result = speed.headline(speed.load_results(results_root))
    ladder = speed.technique_ladder(result)
    variants = [c["variant"] for c in result.content["cases"] if c["name"] == "train fusion_cross_attention"]
    assert list(ladder.index) == variants and "plain" in variants
    assert ladder.loc["plain", "x plain"] == pytest.approx(1.0)


def test_without_a_gpu_result_the_page_says_the_gpu_figures_are_still_to_be_measured(results_root):
    results = speed.load_results(results_root)
    assert not any(result.on_gpu for result in results)  # no GPU was lent so far: nothing may pretend otherwise
    assert "still to be measured" in speed.gpu_status(results)
    newest = json.loads(results[0].path.read_text())
    gpu = newest | {"created": "2099-01-01T00:00:00+00:00",
                    "device": newest["device"] | {"type": "cuda", "name": "Test GPU", "peak_bf16_flops": 1e15}}
    (results_root / speed.RESULTS_DIR / "gpu-test.json").write_text(json.dumps(gpu))
    again = speed.load_results(results_root)
    assert speed.headline(again).path.name == "gpu-test.json"
    assert "Test GPU" in speed.gpu_status(again) and "still to be measured" not in speed.gpu_status(again)


def test_bad_result_files_are_named(tmp_path):
    folder = tmp_path / speed.RESULTS_DIR
    folder.mkdir(parents=True)
    with pytest.raises(speed.BenchResultError, match="no benchmark results"):
        speed.load_results(tmp_path)
    (folder / "broken.json").write_text("{not json")
    with pytest.raises(speed.BenchResultError, match="broken.json"):
        speed.load_results(tmp_path)
    (folder / "broken.json").write_text(json.dumps({"schema": "other/9"}))
    with pytest.raises(speed.BenchResultError, match="broken.json.*other/9"):
        speed.load_results(tmp_path)
