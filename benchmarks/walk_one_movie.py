"""How far one movie travels through the package: from its JSON and JPEG to a Grad-CAM figure of the book.

Traces (`sys.setprofile`) loading the release, loading the finished run `fusion_cross_attention/seed0` of the
thesis split and drawing the XAI chapter's Grad-CAM grid for one test movie, and prints the cross-module
calls on the way (a thesis_lib function calling a thesis_lib function of another module; each distinct
(caller module, callee) once) and the thesis_lib modules that ran. A structure measure, not a benchmark:

    .venv/bin/python benchmarks/walk_one_movie.py data/twin runs
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import thesis_lib.book.xai_chapter as chapter
from thesis_lib.data.mmimdb import load_release
from thesis_lib.xai.figures import Provenance

calls: Counter[tuple[str, str, str]] = Counter()
modules: set[str] = set()


def _module(frame) -> str | None:
    name = frame.f_globals.get("__name__", "")
    return name if name.startswith("thesis_lib") else None


def _trace(frame, event, arg):
    if event != "call" or (callee := _module(frame)) is None:
        return
    modules.add(callee)
    caller = frame.f_back
    while caller is not None and _module(caller) is None:
        caller = caller.f_back
    if caller is not None and _module(caller) != callee:
        calls[(_module(caller), frame.f_code.co_name, callee)] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the release the runs were trained on")
    parser.add_argument("runs", type=Path, help="runs folder holding thesis/fusion_cross_attention/seed0")
    args = parser.parse_args()
    sys.setprofile(_trace)
    release = load_release(args.data, verify_posters="none")
    run = chapter.load_runs(args.runs, release, ["fusion_cross_attention"], 0)["fusion_cross_attention"]
    chapter.gradcam_grid(run, [sorted(run.movies)[0]], Provenance("twin", "run fusion_cross_attention/seed0"))
    sys.setprofile(None)
    packages = {module.split(".")[1] if "." in module else module for module in modules}
    print(f"{len(calls)} distinct cross-module calls ({sum(calls.values())} in all) through {len(modules)} "
          f"thesis_lib modules in {len(packages)} packages")
    for caller, function, callee in sorted(calls):
        print(f"  {caller} -> {callee}.{function}")


if __name__ == "__main__":
    main()
