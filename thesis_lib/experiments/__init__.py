"""Experiments: the grid of (model x seed) runs, their records, and the results table.

- `profile`: `Profile`, the typed form of notebooks/params/<name>.yaml: `load_profile` (thesis run, thesis
  book), `profile_from_parameters` (a chapter's papermill parameters); runs and ablations are YAML mappings.
- `specs`: what one run is (`RunSpec`), named variants, the grid's plan and config hashes.
- `provenance`: git commit and dirty flag, library versions, device.
- `layout`: where a run's files are (`RunsFolder`, `RunFolder`: RUNS/<split>/<run>/seed<k>/).
- `records`: what a run folder holds (record.json, predictions), written atomically; finished-run test.
- `pipeline`: release + split + model + datasets + loaders (and feature caches) for one run.
- `objects`: detections per poster for runs that read the object modality.
- `restore`: a finished run's trained model from its folder (`restore_trained_model`; slim checkpoints of
  frozen-encoder runs get their encoders back from the source runs).
- `loaded_run`: the one way back from disk, `load_run(run, release) -> LoadedRun`: model, tokenizer,
  cleaning, eval transform, batch builder, thresholds and predictions, built as the grid built them.
- `runner`: one run start to finish; `late`: late fusion of finished runs; `baselines`: frequency and
  shallow reference rows.
- `grid`: `run_grid` (what `thesis run` runs), `open_grid` (data, splits and plan without running).
- `processes`: a grid under torchrun / accelerate launch: the global batch split per process, work done
  once on the main process.
- `table`: `results_table` and `format_table` (`thesis results table`), `paired_difference`.
- `forecast`: `forecast_grid(profile, release) -> Forecast`, the plan before the spend (`thesis run --plan`):
  every run's epochs, steps, FLOPs, GPU time, checkpoints; CPU-side work; disk at peak.
- `preflight`: `preflight.preflight(profile, data_root, runs_dir) -> PreflightReport`, what would stop a
  grid (`thesis run --check`, and before every full-size `thesis run`; not re-exported here, where the
  function would hide its module).
"""

from thesis_lib.experiments.grid import GridReport, run_grid
from thesis_lib.experiments.profile import Profile, ProfileError, load_profile
from thesis_lib.experiments.table import results_table

__all__ = [
    "GridReport",
    "Profile",
    "ProfileError",
    "load_profile",
    "results_table",
    "run_grid",
]
