"""Run folders under concurrency and faults (issue 15, items 1 and 5), on the real grid (`run_grid` /
`thesis run`) with one cheap trained model on the tiny twin: a finished run is never replaced by another
config, a second process on a held run folder waits and then fails that run in one line, a dead holder's
lock is taken over, a run never predicts with weights it did not write, a full disk stops the grid in one
line, and cache cleaning keeps what a running run reads."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from thesis_lib.cli import main
from thesis_lib.experiments import load_profile, run_grid, runner
from thesis_lib.experiments import records as records_module
from thesis_lib.experiments.caches import CacheLedger, FeatureCacheNeed, clean_feature_caches
from thesis_lib.experiments.layout import RunsFolder
from thesis_lib.experiments.locks import CacheReadMark, RunLock, RunLockedError
from thesis_lib.train import checkpoint
from thesis_lib.train.checkpoint import read_weights_metadata
from thesis_lib.train.features import FEATURE_CACHE_FORMAT, FEATURES_FOLDER

MODEL = "objects_oracle"  # the cheapest trained run: an object encoder on the twin's true boxes
LABEL = f"thesis/{MODEL}/seed0"
HOLD = """
import sys
from filelock import MarkerSoftFileLock
lock = MarkerSoftFileLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture(scope="module")
def grid(tmp_path_factory, tiny_grid):
    """The tiny twin and profile (one trained model), and a runs folder where that run has finished."""
    with tiny_grid(tmp_path_factory.mktemp("run-folders"), models=[MODEL]) as grid:
        report = run_grid(load_profile(grid.profile), data_root=str(grid.twin), runs_dir=str(grid.runs))
        assert report.ok, report.summary()
        yield grid


def thesis_run(grid, runs: Path, *arguments: str) -> int:
    return main(["run", "--profile", str(grid.profile), "--data", str(grid.twin), "--runs", str(runs), *arguments])


def hold(path: Path) -> subprocess.Popen:
    """Another process holding the lock marker at `path` (until its stdin closes or it is killed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert holder.stdout.readline().strip() == "held"
    return holder


# ------------------------------------------------------------------------------------------ item 1


@pytest.mark.slow  # runs the grid
def test_another_config_never_replaces_a_finished_run(grid, capsys):
    record = RunsFolder(grid.runs).run("thesis", MODEL, 0).record
    before = record.stat().st_mtime_ns
    assert thesis_run(grid, grid.runs, "epochs=2") == 2  # a quick override, into the same runs folder
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("thesis: error:")]
    assert len(errors) == 1 and f"{LABEL} holds a finished run of another config" in errors[0]
    assert "--replace" in errors[0] and "--runs" in errors[0]
    assert record.stat().st_mtime_ns == before  # nothing retrained, nothing replaced


@pytest.mark.slow  # runs the grid
def test_each_run_starts_with_nothing_of_the_run_before_it_in_memory(grid, tmp_path, monkeypatch):
    # The grid's one Accelerator kept every model and optimizer it prepared: the full-size rehearsal grew to
    # 20.8 GB over 27 runs and was killed. Each run must find the accelerator empty and the last model gone.
    import gc
    import weakref

    from thesis_lib.experiments import grid as grid_module

    prepared: list[weakref.ref] = []
    seen: list[tuple[int, int, int]] = []
    real_execute = grid_module.execute_run

    def execute(spec, ctx):
        gc.collect()
        alive = sum(ref() is not None for ref in prepared)
        seen.append((len(ctx.accelerator._models), len(ctx.accelerator._optimizers), alive))
        outcome = real_execute(spec, ctx)
        prepared.extend(weakref.ref(model) for model in ctx.accelerator._models)
        return outcome

    monkeypatch.setattr(grid_module, "execute_run", execute)
    profile = load_profile(grid.profile, {"models": [MODEL, "text_roberta"], "epochs": 1, "lr_scales": [1.0]})
    report = run_grid(profile, data_root=str(grid.twin), runs_dir=str(tmp_path / "runs"))
    assert report.ok, report.summary()
    assert len(prepared) >= 2 and seen == [(0, 0, 0)] * len(seen) and len(seen) == 2


@pytest.mark.slow  # runs the grid
def test_the_book_retrains_a_run_of_an_edited_profile_and_names_it(grid, tmp_path, capsys):
    # The book renders the profile it is given: its own runs folder follows an edited profile (and says so).
    # Everything goes to the grid log; the per-run lines are also shown live on stderr, which names the log.
    import shutil

    from thesis_lib.book.experiments_chapter import GRID_LOG, run_grid_logged

    runs = tmp_path / "runs"
    shutil.copytree(grid.runs, runs)
    edited = load_profile(grid.profile, {"epochs": 2, "runs_dir": str(runs), "data_root": str(grid.twin)})
    report = run_grid_logged(edited)
    assert report.ok and [outcome.spec.label for outcome in report.executed] == [LABEL]
    log = (runs / GRID_LOG).read_text()
    assert f"{LABEL} holds a finished run of another config" in log and "retrained in place" in log
    assert json.loads(RunsFolder(runs).run("thesis", MODEL, 0).record.read_text())["train_config"]["epochs"] == 2
    shown = capsys.readouterr().err.splitlines()
    assert any(str(runs / GRID_LOG) in line for line in shown)
    done = [line for line in shown if f"{LABEL}: done in " in line]
    assert len(done) == 1 and "1 of 1 runs to train done in " in done[0] and ", eta 0:00:00 at this pace" in done[0]
    assert not any("epoch 1/2" in line for line in shown)  # training lines stay in the log file


@pytest.mark.slow  # runs the grid
def test_a_second_process_waits_then_fails_that_run_and_a_dead_holder_is_taken_over(grid, tmp_path, monkeypatch,
                                                                                     caplog):
    runs = RunsFolder(tmp_path / "runs")
    folder = runs.run("thesis", MODEL, 0)
    holder = hold(folder.lock)
    monkeypatch.setenv("THESIS_LOCK_WAIT", "0.3")
    with caplog.at_level(logging.INFO, logger="thesis_lib"):
        report = run_grid(load_profile(grid.profile), data_root=str(grid.twin), runs_dir=str(runs.root))
    ((label, message),) = report.failed
    assert label == LABEL and message.startswith(f"RunLockedError: {LABEL} is being run by pid {holder.pid} on this host")
    assert "\n" not in message
    (notice,) = [r.getMessage() for r in caplog.records if "waiting up to" in r.getMessage()]
    assert f"pid {holder.pid}" in notice
    assert not folder.record.exists() and not folder.checkpoints.exists() and not folder.error.exists()

    holder.send_signal(signal.SIGKILL)  # dies holding it: the marker stays, naming a process that is gone
    holder.wait()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="thesis_lib"):
        again = run_grid(load_profile(grid.profile), data_root=str(grid.twin), runs_dir=str(runs.root))
    assert again.ok and [outcome.spec.label for outcome in again.executed] == [LABEL]
    assert f"took over the lock {folder.lock} of pid {holder.pid} on this host" in caplog.text
    assert not folder.lock.exists()  # released once the record is written


def test_a_lock_held_on_another_host_is_respected_and_its_age_shown(tmp_path, caplog):
    marker = tmp_path / "run.lock"  # filelock's marker format, as a process on node17 would have written it
    marker.write_text("filelock/2\npid=4242\nhost=node17.cluster\nmode=exclusive\n")
    os.utime(marker, (time.time() - 600, time.time() - 600))
    with caplog.at_level(logging.WARNING, logger="thesis_lib"), pytest.raises(RunLockedError) as refused:
        RunLock(marker, LABEL).acquire(wait_s=0.2)
    assert str(refused.value) == (f"{LABEL} is being run by pid 4242 on host node17.cluster for 10 min (lock {marker});"
                                  f" if that host no longer runs it, delete {marker}")
    assert [r.getMessage() for r in caplog.records if r.name.startswith("thesis_lib")] == [
        f"{LABEL} is being run by pid 4242 on host node17.cluster for 10 min; waiting up to 0 s for it ({marker})"]
    assert marker.read_text().startswith("filelock/2\npid=4242")  # not taken over


@pytest.mark.slow  # runs the grid
@pytest.mark.parametrize("foreign", ["another config's weights", "deleted"])
def test_a_run_never_predicts_with_a_best_checkpoint_it_did_not_write(grid, tmp_path, monkeypatch, foreign):
    real = runner.fit

    def and_then_another_run_meddles(*args, **kwargs):  # what a second process in the folder used to do
        result = real(*args, **kwargs)
        best = Path(result.checkpoint_dir) / "best" / "model.safetensors"
        if foreign == "deleted":
            best.unlink()
        else:
            metadata = read_weights_metadata(best) | {"config_hash": "f" * 64}
            save_file(load_file(str(best)), str(best), metadata=metadata)
        return result

    monkeypatch.setattr(runner, "fit", and_then_another_run_meddles)
    runs = RunsFolder(tmp_path / "runs")
    report = run_grid(load_profile(grid.profile), data_root=str(grid.twin), runs_dir=str(runs.root))
    ((label, message),) = report.failed
    expected = "no best checkpoint" if foreign == "deleted" else "holds weights of config ffffffffffff"
    assert label == LABEL and message.startswith("RunWeightsError") and expected in message and "\n" not in message
    folder = runs.run("thesis", MODEL, 0)
    assert not folder.record.exists() and not folder.predictions("test").exists()  # no record it cannot stand behind


# ------------------------------------------------------------------------------------------ item 5


@pytest.mark.slow  # runs the grid
def test_a_full_disk_that_stops_even_error_txt_stops_the_grid_in_one_line(grid, tmp_path, monkeypatch, capsys):
    def disk_full(path, *args):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(checkpoint, "atomic_write", disk_full)  # the first checkpoint of the run
    monkeypatch.setattr(records_module, "write_text_atomic", disk_full)  # and its error.txt
    assert thesis_run(grid, tmp_path / "runs", "--seeds", "0,1") == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert f"FAILED  {LABEL}: OSError: [Errno 28] No space left on device" in out
    (stopped,) = [line for line in out.splitlines() if "STOPPED" in line]
    assert f"nothing can be written in {tmp_path / 'runs'}" in stopped and "1 later run(s) not attempted" in stopped
    assert f"thesis/{MODEL}/seed1" not in out + err  # not attempted


@pytest.mark.slow  # runs the grid
def test_a_full_disk_at_one_checkpoint_fails_that_run_and_the_grid_goes_on(grid, tmp_path, monkeypatch, capsys):
    real, failures = checkpoint.atomic_write, []

    def full_once(path, write):  # the first checkpoint write of the grid hits a full disk, then space is back
        if not failures:
            failures.append(path)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, write)

    monkeypatch.setattr(checkpoint, "atomic_write", full_once)
    assert thesis_run(grid, tmp_path / "runs", "--seeds", "0,1") == 1
    out = capsys.readouterr().out
    assert f"FAILED  {LABEL}: OSError: [Errno 28] No space left on device" in out and "STOPPED" not in out
    assert f"ran     thesis/{MODEL}/seed1" in out  # the grid went on
    assert "Traceback" in RunsFolder(tmp_path / "runs").run("thesis", MODEL, 0).error.read_text()
    monkeypatch.undo()
    assert thesis_run(grid, tmp_path / "runs", "--seeds", "0,1") == 0  # the rerun trains it: no dead end


# ------------------------------------------------------------------------------ cache cleaning (item 1)


def fake_cache(folder: Path, need: FeatureCacheNeed) -> Path:
    path = folder / f"{need.modality}-{need.part}-{abs(hash(need.label)) % 10**8}.safetensors"
    save_file({"pooled": torch.zeros(2, 3)}, str(path), metadata={
        "format": str(FEATURE_CACHE_FORMAT), "key": json.dumps({"data": "x"}), "label": need.label})
    return path


def test_cache_clean_all_keeps_what_a_running_run_reads(tmp_path):
    features = tmp_path / FEATURES_FOLDER
    features.mkdir()
    read = FeatureCacheNeed("thesis", "train", "text", "run thesis/text_roberta/seed0 abc", False)
    other = FeatureCacheNeed("thesis", "train", "image", "run thesis/image_resnet50/seed0 def", False)
    kept, removed = fake_cache(features, read), fake_cache(features, other)
    # A mark left by a process that died holding it protects nothing.
    dead = CacheReadMark(tmp_path, "thesis/fusion_late/seed0", [other.label])
    dead.listing.parent.mkdir(parents=True)
    dead.listing.write_text(json.dumps(dead.content))
    subprocess.run([sys.executable, "-c", "import os, sys; from filelock import MarkerSoftFileLock as L; "
                    "L(sys.argv[1]).acquire(); os._exit(0)", str(dead.marker)], check=True,
                   env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    with CacheReadMark(tmp_path, "thesis/fusion_early/seed0", [read.label]):
        cleaning = clean_feature_caches(None, cache_root=tmp_path)  # thesis cache clean --all
    assert kept.is_file() and not removed.exists()
    assert [path for path, _, _ in cleaning.removed] == [removed]
    assert cleaning.lines()[-1] == "kept what 1 running run(s) read: thesis/fusion_early/seed0"
    assert not dead.listing.exists() and not dead.marker.exists()  # the dead process's mark is gone
    assert [path for path, _, _ in clean_feature_caches(None, cache_root=tmp_path).removed] == [kept]  # run over


def test_the_grid_keeps_a_cache_another_grid_reads_after_its_own_last_reader(tmp_path):
    need = FeatureCacheNeed("thesis", "train", "text", "run thesis/text_roberta/seed0 abc", False)
    path = fake_cache(tmp_path, need)
    ledger = CacheLedger({("thesis", 0, "fusion_early"): (need,)}, [("thesis", 0, "fusion_early")])
    ledger.record(need, path)
    assert ledger.release_after(("thesis", 0, "fusion_early"), busy=[need.label]) == []  # another grid reads it
    assert path.is_file()
