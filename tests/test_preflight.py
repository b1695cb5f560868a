"""The preflight (`thesis run --check`, and before every full-size `thesis run`): what stops a run, found
before anything is trained."""

from __future__ import annotations

import json
import shutil
from collections import namedtuple

import pytest
import torch

from thesis_lib import machine
from thesis_lib.cli import main
from thesis_lib.experiments import preflight as preflight_module
from thesis_lib.experiments.preflight import preflight
from thesis_lib.experiments.profile import load_profile

Usage = namedtuple("Usage", "total used free")


@pytest.fixture
def no_gpu(monkeypatch):
    """This machine as the tests see it everywhere: a CUDA build of torch, no NVIDIA driver, no device."""
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(machine, "_nvidia_driver_version", lambda: None)


@pytest.fixture
def weights_cached(monkeypatch):
    """As on a machine where `thesis weights fetch` ran: no weight is missing."""
    monkeypatch.setattr(preflight_module, "weight_problems", lambda profile, weights=None: [])


@pytest.fixture
def roomy(monkeypatch):
    """Plenty of memory and disk, so only the item under test can stop the run."""
    monkeypatch.setattr(preflight_module, "memory_available_bytes", lambda: 512e9)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10e12, 0, 10e12))


def lines_of(output: str) -> dict[str, str]:
    """item -> "STATUS message" of each preflight line."""
    found = {}
    for line in output.splitlines():
        status, _, rest = line.partition(" ")
        if status in ("OK", "WARNING", "STOP"):
            item, _, message = rest.strip().partition(" ")
            found[item] = f"{status} {message.strip()}"
    return found


@pytest.mark.slow
def test_full_profile_without_a_gpu_stops_with_exit_2_naming_the_reason(make_twin, tmp_path, capsys, no_gpu, roomy):
    code = main(["run", "--profile", "full", "--data", str(make_twin(120)), "--runs", str(tmp_path / "runs"),
                 "--check"])
    lines = lines_of(capsys.readouterr().out)
    assert code == 2
    assert lines["device"].startswith("STOP no usable GPU: no CUDA device")
    assert "device=cpu" in lines["device"]  # says how to go on anyway
    assert lines["release"].startswith("OK 120 movies")
    assert lines["weights"].startswith("STOP 6 pretrained weight(s) missing")  # this machine has none of them
    assert lines["disk"].startswith("OK") and lines["memory"].startswith("OK")
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing written


@pytest.mark.slow
def test_a_full_size_thesis_run_runs_the_preflight_first_and_stops(make_twin, tmp_path, capsys, no_gpu, roomy):
    code = main(["run", "--profile", "full", "--data", str(make_twin(120)), "--runs", str(tmp_path / "runs")])
    assert code == 2
    assert "STOP    device" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_device_cpu_turns_the_gpu_line_into_a_warning(make_twin, tmp_path, capsys, no_gpu, roomy, weights_cached):
    code = main(["run", "--profile", "full", "--data", str(make_twin(120)), "--runs", str(tmp_path / "runs"),
                 "--check", "device=cpu"])
    lines = lines_of(capsys.readouterr().out)
    assert code == 0
    assert lines["device"].startswith("WARNING device: cpu with full-size models")


@pytest.mark.slow
def test_a_tiny_disk_stops_the_run(make_twin, tmp_path, monkeypatch, no_gpu):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10e9, 10e9 - 1e6, 1e6))  # 1 MB free
    report = preflight(load_profile("full", {"device": "cpu"}), data_root=make_twin(120), runs_dir=tmp_path)
    (disk,) = [line for line in report.lines if line.item == "disk"]
    assert disk.status == "stop" and "0.0 GB free" in disk.message
    assert report.forecast is not None and f"{report.forecast.peak_disk_bytes / 1e9:.1f} GB" in disk.message
    assert not report.ok


def test_a_missing_release_names_the_folder(tmp_path, no_gpu, roomy):
    missing = tmp_path / "mmimdb"
    report = preflight(load_profile("full", {"device": "cpu"}), data_root=missing, runs_dir=tmp_path / "runs")
    (release,) = [line for line in report.lines if line.item == "release"]
    assert release.status == "stop" and str(missing) in release.message
    (disk,) = [line for line in report.lines if line.item == "disk"]
    assert disk.status == "warning"  # no plan without the release
    assert not report.ok


def test_missing_weights_stop_in_one_line_naming_them_their_runs_and_the_fetch_command(tmp_path, no_gpu, roomy, monkeypatch):
    monkeypatch.setenv("THESIS_CACHE", str(tmp_path / "empty-cache"))  # no weights anywhere
    report = preflight(load_profile("full", {"device": "cpu"}), data_root=tmp_path / "none", runs_dir=tmp_path)
    assert [line.item for line in report.lines][:2] == ["release", "weights"]
    (weights,) = [line for line in report.lines if line.item == "weights"]  # one line names all six
    assert weights.status == "stop" and weights.message.startswith("6 pretrained weight(s) missing: ")
    assert "THESIS_ONLINE=1 thesis weights fetch --profile full" in weights.message
    assert "bert-base-uncased (text_bert and " in weights.message and "yolov8n.pt (objects_yolo" in weights.message


def test_too_little_memory_stops(tmp_path, no_gpu, monkeypatch):
    monkeypatch.setattr(preflight_module, "memory_available_bytes", lambda: 1e9)
    report = preflight(load_profile("full", {"device": "cpu"}), data_root=tmp_path / "none", runs_dir=tmp_path)
    (memory,) = [line for line in report.lines if line.item == "memory"]
    assert memory.status == "stop" and "1.0 GB available" in memory.message


def test_a_full_size_grid_on_the_cpu_needs_room_for_its_activations(tmp_path, no_gpu, monkeypatch):
    # 12 GB is plenty beside a GPU but not where BERT-base trains on the host (its activations live there).
    monkeypatch.setattr(preflight_module, "memory_available_bytes", lambda: 12e9)
    full_cpu = load_profile("full", {"device": "cpu", "num_workers": 0})
    (memory,) = preflight_module.check_memory(full_cpu)
    assert memory.status == "stop" and "14 GB training on the host" in memory.message
    monkeypatch.setattr(preflight_module, "choose_device", lambda setting: torch.device("cuda", 0))
    (memory,) = preflight_module.check_memory(full_cpu)
    assert memory.status == "ok" and "8 GB training beside the GPU" in memory.message


def test_the_grid_never_autocasts_on_the_cpu_and_logs_the_banner(make_twin, tmp_path, no_gpu, caplog):
    from thesis_lib.experiments.grid import open_grid

    profile = load_profile("smoke", {"device": "auto", "mixed_precision": "bf16"})
    with caplog.at_level("INFO", logger="thesis_lib.experiments.grid"):
        ctx = open_grid(profile, data_root=str(make_twin(120)), runs_dir=str(tmp_path / "runs"))
    assert ctx.accelerator.device.type == "cpu" and ctx.accelerator.mixed_precision == "no"
    assert [r.message for r in caplog.records if r.message.startswith("device: CPU")]


@pytest.mark.slow
def test_a_bf16_profile_trains_on_the_cpu_without_autocast(make_twin, tmp_path, no_gpu):
    # The full profile says bf16; on a CPU its runs train in float32 (the run's config says "no"), where `fit`
    # used to refuse the Accelerator's "no" against the config's "bf16".
    from thesis_lib.experiments.grid import run_grid

    profile = load_profile("smoke", {"mixed_precision": "bf16", "epochs": 1, "max_steps_per_epoch": 1,
                                     "lr_scales": [1.0], "text_max_length": 16})
    report = run_grid(profile, data_root=str(make_twin(120)), runs_dir=str(tmp_path / "runs"), models=["text_roberta"])
    assert report.ok, report.summary()
    record = json.loads(next((tmp_path / "runs").rglob("record.json")).read_text())
    assert record["train_config"]["mixed_precision"] == "no"
