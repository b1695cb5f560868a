"""Turning a benchmark result into comparisons, target checks and a printable table.

Comparisons are within one run (the same machine and moment): each technique variant of a case against
the product's variant of the same model work (`speedup_vs_product`) and against the plain float32 one where
it was timed (`speedup_vs_plain`), and every loader stage against its 0-worker version
(`speedup_vs_no_workers`). A comparison reports; only a GPU measurement may change a default in full.yaml.

Targets are the issue's goals for one H100: the heavy fine-tunes (BERT-base, ViT-B/16, and the
cross-attention fusion of the two, end to end) at >= 40% MFU in bf16 on useful FLOPs; an MM-IMDb epoch of
18,171 movies <= 30 s with the real loader (derived); text and image feature extraction >= 2,000 movies/s
including decode; the fusion on cached features in samples/s (no target). On a CPU every target is n/a.
"""

from __future__ import annotations

from typing import Any

from thesis_lib.bench.results import problem_lines

MFU_TARGET = 0.40  # heavy fine-tunes, bf16, one H100
EPOCH_TARGET_S = 30.0  # one MM-IMDb-size training epoch with the real loader
EXTRACT_TARGET_PER_S = 2000.0  # feature extraction, movies per second including decode, per encoder
HEAVY_FINETUNES = ("text_bert", "image_vit", "fusion_cross_attention")


def add_comparisons(result: dict[str, Any]) -> None:
    """Add `speedup_vs_product` and `speedup_vs_plain` to cases, `speedup_vs_no_workers` to loader stages."""
    cases = result["cases"]
    for case in cases:
        same = [c for c in cases if _work(c) == _work(case)]
        product = next((c for c in same if c.get("role") == "product"), None)
        plain = next((c for c in same if c["variant"] == "plain"), None)
        for key, twin in (("speedup_vs_product", product), ("speedup_vs_plain", plain)):
            case[key] = None if twin is None else case["samples_per_s"] / twin["samples_per_s"]
    for stage in result["loader"]:
        plain = [s for s in result["loader"] if s["stage"] == stage["stage"] and s["workers"] == 0]
        stage["speedup_vs_no_workers"] = stage["items_per_s"] / plain[0]["items_per_s"] if plain else None


def _work(case: dict[str, Any]) -> tuple[Any, ...]:
    """Cases with equal work differ only in techniques (compile's padded batch is other work than all-real)."""
    return (case["model"], str(case["overrides"]), str(case["shape"]), case.get("attention_mask"))


def evaluate_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets with the measured value and whether it is met (None: cannot be judged here)."""
    targets = []
    for case in result["cases"]:
        if case["model"] in HEAVY_FINETUNES and case.get("role") == "product" and case["techniques"]["bf16"]:
            targets.append(_target(f"{case['name']} ({case['size']}, bf16): MFU >= {MFU_TARGET:.0%} on useful FLOPs",
                                   case["mfu"], case["mfu"] is not None and case["mfu"] >= MFU_TARGET,
                                   against_measured_peak=case.get("mfu_measured_peak")))
    for entry in result["end_to_end"]:
        epoch = entry["derived"]["mmimdb_train_epoch_s"]
        targets.append(_target(f"{entry['name']}: an MM-IMDb epoch (18,171 movies) with the real loader "
                               f"<= {EPOCH_TARGET_S:.0f} s", epoch, epoch <= EPOCH_TARGET_S, derived=True))
    for entry in result["extract"]:
        rate = entry["movies_per_s"]
        targets.append(_target(f"{entry['name']} including decode >= {EXTRACT_TARGET_PER_S:.0f} movies/s", rate,
                               rate >= EXTRACT_TARGET_PER_S))
    for entry in result["cached_fusion"]:
        targets.append(_target(f"{entry['name']}: samples/s (reported, no target)", entry["samples_per_s"], None))
    on_gpu = (result.get("device") or {}).get("type") == "cuda"
    for target in targets:
        if not on_gpu:
            target["met"] = None  # the targets are for one H100: a CPU run says nothing about them
            target["note"] = "n/a on CPU: the targets are for one H100"
    return targets


def _target(what: str, measured: float | None, met: bool | None, **extra: Any) -> dict[str, Any]:
    return {"target": what, "measured": measured, "met": met if measured is not None else None, **extra}


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The result as plain-text lines (what `benchmarks/run_bench.py` prints)."""
    device = result.get("device") or {}
    peak = device.get("peak_bf16_flops")
    measured = device.get("measured_peak_flops")
    load = (result.get("machine") or {}).get("load_average")
    lines = [
        f"benchmark {result['profile']} on {device.get('type')} {device.get('name')} (datasheet bf16 peak "
        f"{'n/a' if peak is None else f'{peak / 1e12:.0f} TFLOP/s'}, measured matmul "
        f"{'n/a' if measured is None else f'{measured / 1e12:.0f} TFLOP/s'}), {result['created']}, load {load}",
        f"{'case':<44} {'variant':<34} {'samples/s':>10} {'spread':>7} {'MFU':>6} {'MFU*':>6} {'peak MiB':>9} "
        f"{'x prod':>6}",
    ]
    for case in result["cases"]:
        spread = case["timing"].get("spread")
        lines.append(f"{case['name']:<44} {case['variant']:<34} {case['samples_per_s']:>10.1f} "
                     f"{'-' if spread is None else f'{spread:.0%}':>7} {_share(case.get('mfu')):>6} "
                     f"{_share(case.get('mfu_measured_peak')):>6} {case['peak_memory_bytes'] / 2**20:>9.0f} "
                     f"{_ratio(case.get('speedup_vs_product')):>6}")
        if case.get("graph_breaks") is not None:
            lines.append(f"  compile ({case.get('compile_backend')}): {case['graph_breaks']} graph breaks")
    for stage in result["loader"]:
        lines.append(f"loader {stage['stage']:<24} {stage['workers']:>2} workers: {stage['items_per_s']:>9.1f} items/s "
                     f"(start-up {stage['startup_s']:.2f} s of {stage['seconds']:.2f} s)")
    for entry in result["extract"]:
        lines.append(f"{entry['name']}: {entry['movies_per_s']:.1f} movies/s whole call, "
                     f"{entry['steady_movies_per_s']:.1f} steady, start-up {entry['startup_s']:.2f} s")
    for entry in result["cached_fusion"] + result["end_to_end"]:
        mfu = "" if entry.get("mfu") is None else f", MFU {entry['mfu']:.1%}"
        lines.append(f"{entry['name']}: {entry['samples_per_s']:.1f} samples/s (spread "
                     f"{_share(entry['step_timing'].get('spread'))}), start-up {entry['startup_s']:.2f} s, "
                     f"epoch {entry['derived']['mmimdb_train_epoch_s']:.1f} s derived{mfu}")
    grid = result.get("grid")
    if grid:
        lines.append(f"grid: {grid.get('summary')} (finished: {grid.get('finished')}, ok: {grid.get('ok')}, "
                     f"{grid.get('wall_time_s', 0):.0f} s)")
    for check in result["gpu_paths"]:
        state = {True: "ok", False: "FAILED", None: "skipped"}[check.get("ok")]
        lines.append(f"gpu path {check['check']}: {state} on {check.get('device', '-')}"
                     + (f" ({check['skipped']})" if check.get("skipped") else ""))
    for detector in result["detectors"]:
        rate = detector.get("posters_per_s")
        lines.append(f"{detector['name']}: " + (f"{rate:.1f} posters/s" if rate else detector.get("status", "")))
    for target in result.get("targets", []):
        met = {True: "met", False: "NOT met", None: "n/a"}[target["met"]]
        shown = "-" if target["measured"] is None else f"{target['measured']:.3g}"
        lines.append(f"target: {target['target']}: measured {shown} -> {met}")
    return lines + problem_lines(result)


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"
