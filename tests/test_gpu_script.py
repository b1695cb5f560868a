"""The CPU dry run of benchmarks/gpu.sh: the very script, at toy sizes (THESIS_BENCH_DRY_RUN=1), with the
packages the GPU machine lacks hidden, must write a JSON with every section's results and no error.

The GPU gets one short chance; anything a CPU can catch (a crash, a missing import, a section that writes
nothing, the grid check failing) is caught here. Speed is never asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MISSING_ON_GPU = ("ultralytics", "pytorch_grad_cam", "papermill", "jupyter_book", "iterstrat", "tensorboardX")

# Put first on PYTHONPATH, Python's `site` imports it at start-up: the packages above then fail to import and
# importlib.util.find_spec returns None for them, exactly as on the GPU machine.
BLOCKER = f"""
import sys

for name in {MISSING_ON_GPU!r}:
    sys.modules[name] = None
"""


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """Run gpu.sh once in dry-run mode; (stdout + stderr, the JSON, seconds)."""
    folder = tmp_path_factory.mktemp("gpu-dry-run")
    blocker = folder / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    # One torch thread: on a shared 2-core machine two spinning OpenMP threads per process slow everything down.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "THESIS_BENCH_DRY_RUN": "1", "OUT": str(folder / "out"), "PYTHON": sys.executable,
           "PYTHONPATH": str(blocker), "THESIS_CACHE": str(folder / "cache"), "TMPDIR": str(folder)}
    started = time.perf_counter()
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh")], env=env, capture_output=True, text=True,
                          timeout=1300, cwd=folder)
    seconds = time.perf_counter() - started
    output = done.stdout + done.stderr
    log = folder / "out" / "gpu.log"
    assert done.returncode == 0, output + (log.read_text()[-6000:] if log.is_file() else "")
    (path,) = (folder / "out").glob("dry-*.json")
    return output, json.loads(path.read_text()), seconds, log.read_text()


@pytest.mark.slow
def test_the_dry_run_saves_every_section_and_no_error(dry_run):
    output, result, seconds, log = dry_run
    print(f"gpu.sh dry run: {seconds:.1f} s")  # the test suite's budget: about a minute on two cores
    assert result["errors"] == [], json.dumps(result["errors"], indent=1)[:4000]
    assert result["skipped"] == [], result["skipped"]
    assert [p["sections"] for p in result["processes"]] == [
        ["machine", "train"], ["compile"], ["extract", "loader"], ["gpu_paths", "detectors", "no_workers"]]
    assert result["machine"]["nproc"] >= 1 and result["machine"]["load_average"] is not None
    assert result["matmul"]["tflops"] > 0 and result["device"]["measured_peak_flops"] is None  # a GPU's only
    roles = [(case["role"], case["variant"]) for case in result["cases"]]
    assert ("product", "fused_adamw+sdpa+channels_last") in roles and ("comparison", "plain") in roles
    compiled = [case for case in result["cases"] if case["techniques"]["compile"]]
    assert len(compiled) == 1 and compiled[0]["graph_breaks"] >= 0 and compiled[0]["attention_mask"] == "padded"
    for case in result["cases"]:
        assert case["timing"]["steps"] >= 3 and case["timing"]["spread"] is not None
        assert case["mfu"] is None and case["mfu_measured_peak"] is None  # no peak for a CPU
        assert 0 < case["flops_per_step"] <= case["padded_flops_per_step"]
    assert sorted(entry["modality"] for entry in result["extract"]) == ["image", "text"]
    assert [entry["task"] for entry in result["cached_fusion"]] == ["train"]
    assert [entry["model"] for entry in result["end_to_end"]] == ["fusion_cross_attention"]
    assert 0 <= result["end_to_end"][0]["padding_fraction"] < 1
    stages = {(stage["stage"], stage["workers"]) for stage in result["loader"]}
    assert {("training_loader", 1), ("training_loader", 0), ("decode_augment", 1), ("decode_augment", 0)} <= stages
    assert all(stage["startup_s"] <= stage["seconds"] for stage in result["loader"])  # the clock starts before batch 0


@pytest.mark.slow
def test_the_dry_run_calls_the_grid_check_and_the_gpu_path_checks(dry_run):
    output, result, _, _ = dry_run
    grid = result["grid"]
    assert grid["finished"] and grid["ok"], grid
    assert sorted(run["name"] for run in grid["runs"]) == ["fusion_cross_attention", "image_vit", "text_bert"]
    checks = {check["check"]: check for check in result["gpu_paths"]}
    assert checks["detect yolov8n"]["ok"] is None and "ultralytics" in checks["detect yolov8n"]["skipped"]
    assert checks["explain Grad-CAM"]["ok"] is None  # pytorch-grad-cam is hidden, as on the GPU machine
    assert all(checks[name]["ok"] for name in ("device", "detect frcnn-twin", "extract image features",
                                               "explain attention"))
    assert result["packages"]["ultralytics"] is False and result["packages"]["papermill"] is False
    assert "skipped: none; errors: none" in output  # the script prints its skipped and errors lists last
