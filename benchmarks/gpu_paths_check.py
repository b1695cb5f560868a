"""`python benchmarks/gpu_paths_check.py [--device auto|cpu] [--profile gpu|cpu|dry]`: does each product path
that can use a GPU run on it? Detection, feature extraction and explanations with random weights.

A thin entry point over `thesis_lib.bench.gpu_paths` (benchmarks/gpu.sh runs the same checks as its
`gpu_paths` section and keeps them in its JSON); prints one line per check.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a plain checkout

import thesis_lib  # noqa: E402,F401  (sets the offline environment before torch / transformers load)


def main(argv: list[str] | None = None) -> int:
    from thesis_lib import machine
    from thesis_lib.bench import gpu_paths
    from thesis_lib.bench.config import PROFILES
    from thesis_lib.bench.movies import SyntheticMoviesConfig, write_synthetic_movies
    from thesis_lib.bench.product import Product

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=machine.DEVICE_SETTINGS, default="auto")
    parser.add_argument("--profile", choices=tuple(PROFILES), default="gpu")
    ns = parser.parse_args(argv)
    config = PROFILES[ns.profile]
    product = Product.load(config, machine.choose_device(ns.device))
    with tempfile.TemporaryDirectory(prefix="thesis-gpu-paths-") as scratch:
        movies = write_synthetic_movies(Path(scratch) / "movies", SyntheticMoviesConfig(movies=8, posters=4))
        checks = [gpu_paths.check_device(product)]
        posters = gpu_paths.sample_posters(config.check_posters)
        checks += [gpu_paths.check_detector(name, product, posters) for name in config.check_detectors]
        checks += [gpu_paths.check_extraction(product, movies, Path(scratch) / "cache"),
                   gpu_paths.check_attention(product, movies), gpu_paths.check_gradcam(product, movies)]
    for check in checks:
        print(json.dumps(check, default=str))
    return 0 if all(check["ok"] is not False for check in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
