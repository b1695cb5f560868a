"""Peak host memory of one feature-cache extraction (`cache_encoder_features`), for the issue-12 disk work.

    PYTHONPATH=. python benchmarks/feature_cache_memory.py [--movies 3000] [--mean-tokens 250]

A stand-in text encoder (an embedding table, 768 wide: BERT-base's token width) over `movies` synthetic
plots of 32..512 tokens (mean about `mean-tokens`), float16 tokens as the grid stores them. Prints the
process's resident memory before the pass, its peak (ru_maxrss), the size of the file written and the
most the cache folder held on disk at once (sampled): the RSS peak minus the start is what the
extraction itself held. Run it once with this checkout and once with an
older one on PYTHONPATH to compare writers (the API is the same).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import threading
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from thesis_lib.models.encoder import Encoder
from thesis_lib.models.outputs import EncoderOutput
from thesis_lib.train.features import FeatureCacheConfig, cache_encoder_features

WIDTH, VOCAB = 768, 1000


class Plots(Dataset):
    def __init__(self, n: int, mean_tokens: int):
        g = torch.Generator().manual_seed(0)
        spread = min(mean_tokens - 32, 512 - mean_tokens)
        self.lengths = (mean_tokens + (torch.rand(n, generator=g) * 2 - 1) * spread).long().tolist()

    def __len__(self) -> int:
        return len(self.lengths)

    def item_lengths(self) -> list[int]:
        return list(self.lengths)

    def __getitem__(self, index: int) -> dict:
        return {"id": f"{index:07d}", "length": self.lengths[index]}


def collate(items: list[dict]) -> dict:
    longest = max(item["length"] for item in items)
    ids = torch.zeros(len(items), longest, dtype=torch.int64)  # (B, L)
    for row, item in enumerate(items):
        ids[row, : item["length"]] = torch.arange(1, item["length"] + 1) % (VOCAB - 1) + 1
    return {"ids": [item["id"] for item in items], "input_ids": ids, "attention_mask": (ids > 0).long(),
            "labels": torch.zeros(len(items), 23)}


class Embedding(Encoder):
    def __init__(self):
        super().__init__(token_dim=WIDTH, pooled_dim=WIDTH)
        self.embed = nn.Embedding(VOCAB, WIDTH)

    def forward(self, batch: dict) -> EncoderOutput:
        tokens = self.embed(batch["input_ids"])  # (B, L, 768)
        mask = batch["attention_mask"].bool()  # (B, L)
        return EncoderOutput(tokens=tokens, mask=mask, pooled=tokens[:, 0])


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoders = nn.ModuleDict({"text": Embedding()})

    def encode(self, batch: dict) -> dict[str, EncoderOutput]:
        return {"text": self.encoders["text"](batch)}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def disk_bytes(root: str) -> int:
    """Allocated bytes of every file under `root` (sparse holes not counted)."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_blocks * 512
            except FileNotFoundError:  # removed while we looked
                pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movies", type=int, default=3000)
    parser.add_argument("--mean-tokens", type=int, default=250)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, data = Model().eval(), Plots(args.movies, args.mean_tokens)
    start = rss_mb()
    with tempfile.TemporaryDirectory() as root:
        peak_disk, done = [0], threading.Event()

        def watch() -> None:  # the most the cache folder held at once, sampled every 20 ms
            while not done.wait(0.02):
                peak_disk[0] = max(peak_disk[0], disk_bytes(root))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        began = time.perf_counter()
        path = cache_encoder_features(model, data, backbone_id="bench", data_fingerprint="bench", part="train",
                                      collate_fn=collate, config=FeatureCacheConfig(batch_size=64),
                                      cache_root=Path(root))
        seconds = time.perf_counter() - began
        done.set()
        watcher.join()
        size = path.stat().st_size
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.movies} movies, {sum(data.lengths)} tokens x {WIDTH} float16: file {size / 1e6:.0f} MB in "
          f"{seconds:.1f} s; RSS before {start:.0f} MB, peak {peak:.0f} MB (+{peak - start:.0f} MB); "
          f"disk peak {peak_disk[0] / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
