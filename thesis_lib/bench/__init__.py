"""The speed benchmark: the product's own training, extraction and loading paths, timed with the full
profile's settings; MFU on useful FLOPs against the datasheet and a measured peak; peak memory per case.

- `config`: `BenchConfig`, the sections in the order benchmarks/gpu.sh runs them, and the profiles `gpu`
  (full size), `cpu` (`make bench`) and `dry` (the CPU dry run of gpu.sh in the test suite).
- `product`: the full profile's settings and the grid's own builders (model config, tokenizer, datasets,
  TrainConfig, feature-cache config, Accelerator): what every section times.
- `runner`: `run_benchmark(config, out=..., sections=...)`; `results`: the JSON document, continued by each
  process of a run and written after every case; `report`: comparisons, targets, the printed lines.
- `cases`: training steps on synthetic batches (the product's techniques first, then the comparisons:
  plain, bf16, fused AdamW, channels-last, torch.compile; `techniques` holds the switches).
- `end_to_end`: feature extraction (`cache_encoder_features`), the fusion on cached features and fine-tuning
  fed by the real loader (`train_one_epoch`); `loading`: loader throughput per stage; `movies`: synthetic
  JPEG posters and plots; `batches`: synthetic batches.
- `hardware`: the machine's record, the measured matmul peak, peak memory; `timing`: per-step timing
  (median and spread). FLOP counting lives in `models.flops`, the datasheet peaks in `machine`.
- `grid`: a short `thesis run` grid (`run_grid`); `gpu_paths`: detection, extraction and explanations on the
  device; `detectors`: Faster R-CNN throughput.
The JSON's keys are documented in benchmarks/README.md.
"""
