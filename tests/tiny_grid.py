"""A tiny twin and a tiny smoke profile for the tests that run the real experiment grid.

    with tiny_grid(tmp_path_factory.mktemp("x"), models=[...], model_overrides=[TINY_RESNET]) as grid:
        run_grid(load_profile(grid.profile), data_root=str(grid.twin), runs_dir=str(grid.runs))

The twin has 100 movies; the profile is smoke.yaml with one epoch, one learning-rate trial, no early
stopping and no ablations, plus the caller's changes. THESIS_CACHE points at a cache of the grid's own
while the context is open, so tests never share or pollute feature caches.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from thesis_lib.data.twin import TwinConfig, generate_twin
from thesis_lib.experiments.profile import profile_path

TINY_RESNET = "image_resnet50 image_timm_kwargs={channels: [4, 8, 8, 8], stem_width: 4, layers: [1, 1, 1, 1]}"
TINY_ROBERTA = "text_roberta text_pooling=mean"
TINY_SETTINGS = {"ablations": [], "epochs": 1, "batch_size": 16, "patience": None, "lr_scales": [1.0],
                 "cpu_threads": 0}


@dataclass(frozen=True)
class TinyGrid:
    twin: Path  # the 100-movie twin
    profile: Path  # the profile file
    runs: Path  # where the runs go (not created here)


@contextmanager
def tiny_grid(root: Path, **changes: Any) -> Iterator[TinyGrid]:
    """Generate the twin and write the profile (smoke + TINY_SETTINGS + `changes`) under `root`."""
    twin = root / "twin"
    generate_twin(twin, TwinConfig(n_movies=100, seed=3), workers=1)
    content = yaml.safe_load(profile_path("smoke").read_text()) | TINY_SETTINGS | changes
    profile = root / "profile.yaml"
    profile.write_text(yaml.safe_dump(content, sort_keys=False))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("THESIS_CACHE", str(root / "cache"))
        yield TinyGrid(twin, profile, root / "runs")
