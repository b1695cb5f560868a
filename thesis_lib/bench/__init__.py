"""The speed benchmark: training and feature-extraction throughput, MFU, peak memory, data loading.

- `config`: `BenchConfig` and the profiles `tiny` (tests), `cpu` (`make bench`, CI), `gpu` (full size).
- `runner`: `run_benchmark(config, out=...)` runs the sections and writes the JSON.
- `cases`: one registry model, one task (training step | frozen-encoder forward), one technique mix.
- `techniques`: the switches (bf16, fused AdamW, SDPA, channels-last, torch.compile), each against `PLAIN`.
- `hardware`: device description, peak memory (FLOP counting lives in `models.flops`, the peak FLOP/s
  table in `machine`, both shared with the plan `experiments.forecast`); `timing`: the timing harness; `batches`: synthetic batches.
- `movies`, `loading`, `end_to_end`: synthetic JPEG posters and plots, loader throughput per stage, and
  training / extraction fed by the project's real data path; `detectors`: Faster R-CNN throughput.
- stand-ins for bert-base-uncased / roberta-base come from `models.standins` (architectures only, no weights).
- `grid`: the real `thesis run` path on a small full-size grid (the GPU script's last step).
- `report`: comparisons, target checks, the printed table.
The JSON's keys are documented in benchmarks/README.md.
"""
