"""Turning a benchmark result into comparisons, target checks and a printable table.

Comparisons are within one run (the same machine and moment): each technique variant of a case against
the plain variant of the same model work (`speedup_vs_plain`), and every loader stage against its 0-worker
version (`speedup_vs_no_workers`). Targets are the issue's goals for one H100; on a device without a
stated peak (CPU) the MFU target is n/a (`met: null`), and the others are reported but only meaningful on
the GPU profile.
"""

from __future__ import annotations

from typing import Any

SCHEMA = "thesis-bench/1"
MFU_TARGET = 0.40  # cross-attention fine-tuning steps, bf16, one H100
EPOCH_TARGET_S = 30.0  # one MM-IMDb-size training epoch with the real loader
EXTRACT_TARGET_PER_S = 2000.0  # feature extraction, movies per second including decode, per encoder


def add_comparisons(result: dict[str, Any]) -> None:
    """Add `speedup_vs_plain` to cases and `speedup_vs_no_workers` to loader stages, in place."""
    cases = result["cases"]
    for case in cases:
        baseline = _plain_twin(case, cases)
        case["speedup_vs_plain"] = None if baseline is None else case["samples_per_s"] / baseline["samples_per_s"]
    for stage in result["loader"]:
        same = [s for s in result["loader"] if s["stage"] == stage["stage"] and s["workers"] == 0]
        stage["speedup_vs_no_workers"] = stage["items_per_s"] / same[0]["items_per_s"] if same else None


def _plain_twin(case: dict[str, Any], cases: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The plain case of the same model work, or, for a channels_last pair, the NCHW version."""
    same_work = [c for c in cases if (c["model"], c["task"], c["modality"], c["shape"]) ==
                 (case["model"], case["task"], case["modality"], case["shape"])]
    plain = [c for c in same_work if c["variant"] == "plain"]
    if plain:
        return plain[0]
    if case["techniques"]["channels_last"]:  # no plain run of this model: compare with its NCHW twin
        nchw = [c for c in same_work if c["techniques"] == {**case["techniques"], "channels_last": False}]
        return nchw[0] if nchw else None
    return None


def evaluate_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets with the measured value and whether it is met (None: cannot be judged here)."""
    ablation_model = result["config"]["ablation_model"]
    bf16_mfus = [c["mfu"] for c in result["cases"]
                 if c["model"] == ablation_model and c["task"] == "train" and c["techniques"]["bf16"]]
    known = [m for m in bf16_mfus if m is not None]
    best_mfu = max(known) if known else None
    epochs = [e["derived"]["mmimdb_train_epoch_s"] for e in result["end_to_end"] if e["task"] == "train"]
    best_epoch = min(epochs) if epochs else None
    targets = [
        {
            "target": f"{ablation_model} fine-tuning steps, bf16: MFU >= {MFU_TARGET:.0%}",
            "measured": best_mfu,
            "met": None if best_mfu is None else best_mfu >= MFU_TARGET,
        },
        {
            "target": f"one MM-IMDb-size training epoch (18,171 movies) with the real loader <= {EPOCH_TARGET_S:.0f} s",
            "measured": best_epoch,
            "derived": True,
            "met": None if best_epoch is None else best_epoch <= EPOCH_TARGET_S,
        },
    ]
    for entry in result["end_to_end"]:
        if entry["task"] == "extract":
            targets.append({
                "target": f"feature extraction {entry['model']} ({entry['modality']}) including decode "
                          f">= {EXTRACT_TARGET_PER_S:.0f} movies/s",
                "measured": entry["movies_per_s"],
                "met": entry["movies_per_s"] >= EXTRACT_TARGET_PER_S,
            })
    if result["device"]["type"] != "cuda":
        for target in targets:
            target["met"] = None  # the targets are for one H100: a CPU run says nothing about them
            target["note"] = "n/a on CPU: the targets are for one H100"
    return targets


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The result as a plain-text table (what `benchmarks/run_bench.py` prints)."""
    device = result["device"]
    peak = device["peak_bf16_flops"]
    lines = [
        f"benchmark {result['profile']} on {device['type']} {device['name']} "
        f"(peak bf16 {'n/a' if peak is None else f'{peak / 1e12:.0f} TFLOP/s'}), {result['created']}",
        f"{'case':<48} {'variant':<40} {'samples/s':>10} {'TFLOP/s':>8} {'MFU':>6} {'peak MiB':>9} {'x plain':>7}",
    ]
    for case in result["cases"]:
        mfu = "n/a" if case["mfu"] is None else f"{case['mfu']:.1%}"
        speedup = "" if case.get("speedup_vs_plain") is None else f"{case['speedup_vs_plain']:.2f}"
        lines.append(f"{case['name']:<48} {case['variant']:<40} {case['samples_per_s']:>10.1f} "
                     f"{case['achieved_tflops']:>8.3f} {mfu:>6} {case['peak_memory_bytes'] / 2**20:>9.0f} {speedup:>7}")
    for stage in result["loader"]:
        lines.append(f"loader {stage['stage']:<41} {stage['workers']:>2} workers{'':<30} {stage['items_per_s']:>10.1f}")
    for entry in result["end_to_end"]:
        rate = entry.get("samples_per_s", entry.get("movies_per_s"))
        derived = entry["derived"]
        seconds = derived.get("mmimdb_train_epoch_s", derived.get("mmimdb_all_movies_s"))
        mfu = "" if entry.get("mfu") is None else f" MFU {entry['mfu']:.1%}"
        lines.append(f"{entry['name']:<48} {entry['variant']:<40} {rate:>10.1f}  -> {seconds:.1f} s derived{mfu}")
    for detector in result["detectors"]:
        rate = detector.get("posters_per_s")
        lines.append(f"{detector['name']:<48} {'':<40} " + (f"{rate:>10.1f}" if rate else detector.get("status", "")))
    for target in result.get("targets", []):
        met = {True: "met", False: "NOT met", None: "n/a"}[target["met"]]
        measured = target["measured"]
        shown = "-" if measured is None else f"{measured:.3g}"
        lines.append(f"target: {target['target']}: measured {shown} -> {met}")
    for skipped in result["skipped"]:
        lines.append(f"skipped: {skipped['section']}: {skipped['reason']}")
    for error in result["errors"]:
        lines.append(f"error: {error['name']}: {error['error']}")
    return lines
