"""Fixtures shared by several test modules: synthetic twins and the tiny experiment grid.

    def test_x(make_twin):
        release = load_release(make_twin(150))  # a 150-movie twin (seed 3), generated once per session

    @pytest.fixture(scope="module")
    def grid(tmp_path_factory, tiny_grid):
        with tiny_grid(tmp_path_factory.mktemp("x"), models=[...], model_overrides=tiny_grid.resnet) as grid:
            run_grid(load_profile(grid.profile), data_root=str(grid.twin), runs_dir=str(grid.runs))

A twin from `make_twin` is shared by every module that asks for the same size and seed: read it, never
write into it.

`make test` runs the suite on every core with pytest-xdist (`-n auto --dist loadfile`: a module's tests stay on
one worker, so its module fixtures are built once); each worker then gets its share of the cores.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from thesis_lib.data.twin import TwinConfig, generate_twin
from thesis_lib.experiments.profile import profile_path

MakeTwin = Callable[..., Path]


def _share_the_cores_between_workers() -> None:
    """Under pytest-xdist, N workers each running torch on every core would oversubscribe the machine: each
    worker (and the kernels and processes it starts, through OMP_NUM_THREADS) takes cores // N threads."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


_share_the_cores_between_workers()


@pytest.fixture(scope="session")
def make_twin(tmp_path_factory: pytest.TempPathFactory) -> MakeTwin:
    """make_twin(n_movies, seed=3): the folder of a twin of that size and seed, generated on first use."""
    made: dict[tuple[int, int], Path] = {}

    def make(n_movies: int, seed: int = 3) -> Path:
        if (n_movies, seed) not in made:
            root = tmp_path_factory.mktemp(f"twin{n_movies}-seed{seed}") / "release"
            generate_twin(root, TwinConfig(n_movies=n_movies, seed=seed), workers=1)
            made[n_movies, seed] = root
        return made[n_movies, seed]

    return make


# ------------------------------------------------------------------------------- the tiny grid


@dataclass(frozen=True)
class TinyGrid:
    twin: Path  # the 100-movie twin (shared: read only)
    profile: Path  # the profile file
    runs: Path  # where the runs go (not created here)


class TinyGrids:
    """A tiny twin and a tiny smoke profile for the tests that run the real experiment grid.

    The twin has 100 movies; the profile is smoke.yaml with one epoch, one learning-rate trial, no early
    stopping and no ablations (`settings`), plus the caller's changes. THESIS_CACHE points at a cache of
    the grid's own while the context is open, so tests never share or pollute feature caches.
    """

    # model_overrides entries (merge them: {**tiny_grid.resnet, **tiny_grid.roberta})
    resnet = {"image_resnet50": {"image_timm_kwargs": {"channels": [4, 8, 8, 8], "stem_width": 4,
                                                       "layers": [1, 1, 1, 1]}}}
    roberta = {"text_roberta": {"text_pooling": "mean"}}
    settings = {"ablations": [], "epochs": 1, "batch_size": 16, "patience": None, "lr_scales": [1.0],
                "cpu_threads": 0}
    twin_movies = 100

    def __init__(self, make_twin: MakeTwin) -> None:
        self.make_twin = make_twin

    @contextmanager
    def __call__(self, root: Path, **changes: Any) -> Iterator[TinyGrid]:
        """Write the profile (smoke + `settings` + `changes`) under `root`; the runs go to root/runs."""
        twin = self.make_twin(self.twin_movies)
        content = yaml.safe_load(profile_path("smoke").read_text()) | self.settings | changes
        profile = root / "profile.yaml"
        profile.write_text(yaml.safe_dump(content, sort_keys=False))
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("THESIS_CACHE", str(root / "cache"))
            yield TinyGrid(twin, profile, root / "runs")


@pytest.fixture(scope="session")
def tiny_grid(make_twin: MakeTwin) -> TinyGrids:
    """tiny_grid(root, **profile_changes) as a context manager; tiny_grid.resnet / .roberta: tiny backbones."""
    return TinyGrids(make_twin)
