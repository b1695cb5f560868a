"""`thesis results table`: its JSON schema and numbers, on run folders written with the records API
(no training: predictions are drawn at random around the labels, records scored like the runner does)."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from thesis_lib.cli import main
from thesis_lib.experiments.layout import RunsFolder
from thesis_lib.experiments.records import RecordError, finish_run
from thesis_lib.experiments.table import TABLE_METRICS, paired_difference, results_table
from thesis_lib.genres import GENRES, NUM_GENRES
from thesis_lib.metrics import bootstrap_distribution, evaluate_threshold_policies
from thesis_lib.train.results import Predictions

N_DEV, N_TEST = 60, 80
ENTRY_KEYS = {"mean", "std", "ci_low", "ci_high"}


def labels(rng, n):
    y = (rng.random((n, NUM_GENRES)) < 0.3).astype(np.float32)  # (n, 23)
    y[:, 0] = np.arange(n) % 2  # every genre column has both classes
    return y


def noisy_probs(rng, y, noise):
    return np.clip(y * 0.6 + 0.2 + rng.normal(0, noise, y.shape), 0, 1).astype(np.float32)  # (n, 23)


def write_run(runs, name, seed, stage, *, noise=0.25, split_hash="s" * 64, truth_seed=0):
    """One run folder as the runner writes it; the same truth (truth_seed) for every run of a table."""
    truth = np.random.default_rng(truth_seed)
    dev_y, test_y = labels(truth, N_DEV), labels(truth, N_TEST)
    rng = np.random.default_rng(zlib.crc32(f"{name}/{seed}".encode()))
    dev = Predictions(np.array([f"{i:07d}" for i in range(N_DEV)]), noisy_probs(rng, dev_y, noise), dev_y)
    test = Predictions(np.array([f"{i + 5000000:07d}" for i in range(N_TEST)]), noisy_probs(rng, test_y, noise), test_y)
    reports = evaluate_threshold_policies(dev.labels, dev.probs, test.labels, test.probs)
    record = {"name": name, "seed": seed, "stage": stage, "split": {"name": "thesis", "hash": split_hash},
              "data": {"fingerprint": "f" * 64}, "metrics": {p: r.to_dict() for p, r in reports.items()}}
    folder = RunsFolder(runs).run("thesis", name, seed)
    folder.path.mkdir(parents=True)
    finish_run(folder, record, dev, test)
    return folder, record, test


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    written = {}
    for seed in (0, 1):
        written[("fusion_x", seed)] = write_run(root, "fusion_x", seed, "fusion", noise=0.2)
    written[("baseline_frequency", 0)] = write_run(root, "baseline_frequency", 0, "baseline", noise=0.6)
    written[("text_y", 3)] = write_run(root, "text_y", 3, "unimodal", noise=0.3)
    return root, written


def test_json_rows_have_exactly_the_documented_schema(runs, capsys):
    root, _ = runs
    assert main(["results", "table", "--runs", str(root), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["model"] for row in rows] == ["baseline_frequency", "text_y", "fusion_x"]  # baselines first
    for row in rows:
        assert set(row) == {"model", "seeds", "metrics", "metrics_tuned", "per_genre_f1"}
        for key in ("metrics", "metrics_tuned"):
            assert list(row[key]) == list(TABLE_METRICS)
            assert all(set(entry) == ENTRY_KEYS for entry in row[key].values())
        assert list(row["per_genre_f1"]) == list(GENRES)
    assert set(TABLE_METRICS) == {"macro_f1", "micro_f1", "weighted_f1", "samples_f1", "subset_accuracy",
                                  "hamming_accuracy", "macro_precision", "macro_recall", "roc_auc_macro",
                                  "roc_auc_micro", "map_macro"}


def test_numbers_are_the_records_over_seeds(runs):
    root, written = runs
    row = next(r for r in results_table(root, n_resamples=300) if r["model"] == "fusion_x")
    assert row["seeds"] == [0, 1]
    records = [written[("fusion_x", seed)][1] for seed in (0, 1)]
    for key, policy in (("metrics", "fixed_0.5"), ("metrics_tuned", "tuned_per_genre")):
        for metric in TABLE_METRICS:
            values = [record["metrics"][policy]["summary"][metric] for record in records]
            assert row[key][metric]["mean"] == pytest.approx(np.mean(values))
            assert row[key][metric]["std"] == pytest.approx(np.std(values, ddof=1))
    genre_f1 = [record["metrics"]["fixed_0.5"]["per_genre"]["Comedy"]["f1"] for record in records]
    assert row["per_genre_f1"]["Comedy"] == pytest.approx(np.mean(genre_f1))


def test_interval_is_the_bootstrap_of_the_seed_average(runs):
    root, written = runs
    row = next(r for r in results_table(root, n_resamples=300) if r["model"] == "fusion_x")
    tests = [written[("fusion_x", seed)][2] for seed in (0, 1)]
    per_seed = [bootstrap_distribution(t.labels, t.probs, 0.5, ["macro_f1"], n_resamples=300, seed=0)["macro_f1"]
                for t in tests]  # the same resampled movies for both seeds
    low, high = np.percentile(np.mean(per_seed, axis=0), [2.5, 97.5])
    assert (row["metrics"]["macro_f1"]["ci_low"], row["metrics"]["macro_f1"]["ci_high"]) == pytest.approx((low, high))
    assert low < row["metrics"]["macro_f1"]["mean"] < high


def test_one_seed_has_no_std(runs):
    root, written = runs
    row = next(r for r in results_table(root, n_resamples=100) if r["model"] == "text_y")
    assert row["seeds"] == [3]
    entry = row["metrics"]["micro_f1"]
    assert entry["std"] is None
    assert entry["mean"] == pytest.approx(written[("text_y", 3)][1]["metrics"]["fixed_0.5"]["summary"]["micro_f1"])


def test_text_table_lists_every_run(runs, capsys):
    root, _ = runs
    assert main(["results", "table", "--runs", str(root)]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("baseline_frequency", "text_y", "fusion_x")) and "macro_f1" in out


def test_the_runs_folder_is_the_profiles_unless_given_and_the_positional_form_still_works(runs, tmp_path, capsys):
    """One convention: --runs DIR, else the --profile's runs_dir; `results table DIR` (deprecated) warns."""
    import yaml

    from thesis_lib.experiments.profile import profile_path

    root, _ = runs
    assert main(["results", "table", "--runs", str(root), "--json", "--seeds", "0"]) == 0
    given = capsys.readouterr().out
    profile = yaml.safe_load(profile_path("smoke").read_text(encoding="utf-8")) | {"runs_dir": str(root)}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(profile, sort_keys=False), encoding="utf-8")
    assert main(["results", "table", "--profile", str(tmp_path / "p.yaml"), "--json", "--seeds", "0"]) == 0
    assert capsys.readouterr().out == given
    assert main(["results", "table", str(root), "--json", "--seeds", "0"]) == 0
    deprecated = capsys.readouterr()
    assert deprecated.out == given and "deprecated; use `thesis results table --runs DIR`" in deprecated.err
    assert main(["results", "compare", str(root), "fusion_x", "baseline_frequency", "--resamples", "50"]) == 0
    assert capsys.readouterr().out.startswith("fusion_x minus baseline_frequency: ")
    assert main(["results", "table", str(root), "--runs", str(root)]) == 2  # given twice
    assert "given twice" in capsys.readouterr().err


def test_runs_of_another_split_are_refused(runs):
    root, _ = runs
    write_run(root, "other", 0, "fusion", split_hash="t" * 64)
    with pytest.raises(RecordError, match="mix splits"):
        results_table(root, n_resamples=50)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(RecordError, match="no such runs folder"):
        results_table(tmp_path / "nowhere")


def test_paired_difference_on_some_genres(runs):
    root, written = runs
    same = paired_difference(root, "fusion_x", "fusion_x", genres=["Crime", "Mystery"], n_resamples=200)
    assert same["delta"] == 0 and same["ci_low"] == same["ci_high"] == 0 and same["p_value"] == 1
    better = paired_difference(root, "fusion_x", "baseline_frequency", n_resamples=200, policy="fixed_0.5")
    assert better["seeds"] == [0] and better["delta"] > 0 and better["ci_low"] > 0 and better["p_value"] < 0.05
    record_a, record_b = written[("fusion_x", 0)][1], written[("baseline_frequency", 0)][1]
    scores = [record["metrics"]["fixed_0.5"]["summary"]["macro_f1"] for record in (record_a, record_b)]
    expected = scores[0] - scores[1]
    assert better["delta"] == pytest.approx(expected)


def test_seeds_select_the_runs_a_table_reads(runs, capsys):
    root, written = runs
    only_zero = {row["model"]: row for row in results_table(root, n_resamples=100, seeds=[0])}
    assert set(only_zero) == {"baseline_frequency", "fusion_x"}  # text_y ran on seed 3 only
    assert only_zero["fusion_x"]["seeds"] == [0]
    summary = written[("fusion_x", 0)][1]["metrics"]["fixed_0.5"]["summary"]
    assert only_zero["fusion_x"]["metrics"]["macro_f1"]["mean"] == pytest.approx(summary["macro_f1"])
    both = paired_difference(root, "fusion_x", "baseline_frequency", n_resamples=100, seeds=[0, 1])
    assert both["seeds"] == [0]  # the pair shares seed 0 only
    with pytest.raises(RecordError, match="no finished seed in common"):
        paired_difference(root, "fusion_x", "text_y", n_resamples=100, seeds=[0, 1])
    assert main(["results", "table", "--runs", str(root), "--json", "--seeds", "3"]) == 0
    assert [row["model"] for row in json.loads(capsys.readouterr().out)] == ["text_y"]


@pytest.mark.parametrize("format_name", ["csv", "latex", "markdown", "text"])
def test_every_format_gives_the_numbers_of_the_json_rows(runs, capsys, format_name):
    """`--format csv` keeps every digit; latex (booktabs), markdown and text show the same means rounded."""
    root, _ = runs
    assert main(["results", "table", "--runs", str(root), "--format", "json"]) == 0
    rows = {row["model"]: row for row in json.loads(capsys.readouterr().out)}
    assert main(["results", "table", "--runs", str(root), "--format", format_name]) == 0
    out = capsys.readouterr().out
    fusion = rows["fusion_x"]["metrics"]["macro_f1"]
    if format_name == "csv":
        import io

        import pandas as pd

        table = pd.read_csv(io.StringIO(out), index_col="model")
        assert list(table.index) == list(rows)
        assert table.loc["fusion_x", "macro_f1 mean"] == pytest.approx(fusion["mean"], abs=1e-12)
        assert table.loc["fusion_x", "macro_f1 ci_high"] == pytest.approx(fusion["ci_high"], abs=1e-12)
        assert table.loc["fusion_x", "macro_f1 (tuned) mean"] == pytest.approx(
            rows["fusion_x"]["metrics_tuned"]["macro_f1"]["mean"], abs=1e-12)
        return
    shown = f"{fusion['mean']:.3f} ±{fusion['std']:.3f} [{fusion['ci_low']:.3f}, {fusion['ci_high']:.3f}]"
    line = next(line for line in out.splitlines() if "fusion" in line)
    assert shown in line
    if format_name == "latex":
        assert out.startswith("\\begin{tabular}") and "\\toprule" in out and "fusion\\_x" in line
