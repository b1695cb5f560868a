"""A safetensors file written item by item, never held in memory: rows go to temporary files as they come,
and the file is assembled at the end in the items' own order.

A feature cache of a whole split (5-20 GB of tokens at full size) used to be concatenated in host RAM and
then saved. Here each tensor's rows are appended to its own temporary file as each batch is encoded, in
whatever order the batches came (length-sorted batches come out of order); `finish` then writes the
safetensors layout itself (8-byte little-endian header length, a JSON header naming each tensor's dtype,
shape and byte range, then the raw bytes) and moves each item's rows from the temporary files to its place in
dataset order, reading each temporary file from its end and cutting it short behind every piece moved:
the rows take their size on disk about once, not twice. Peak memory is one batch plus one piece
(`COPY_CHUNK` bytes at most, or one item).
The file appears atomically (`storage.atomic_write`); the temporary rows live next to it and are removed
whether or not the write succeeds.
"""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from thesis_lib.storage import atomic_write

COPY_CHUNK = 64 * 2**20  # bytes copied per read/write when assembling
# torch dtype -> safetensors dtype name
SAFETENSORS_DTYPES: dict[torch.dtype, str] = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.bool: "BOOL", torch.uint8: "U8",
}


@dataclass
class _Rows:
    """One tensor's rows so far: its temporary file, the row shape and dtype, and each item's row count."""

    handle: BinaryIO
    path: Path
    row_shape: tuple[int, ...]
    dtype: torch.dtype
    counts: list[int] = field(default_factory=list)  # rows of each appended item, in append order

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.row_shape, dtype=np.int64)) * torch.empty(0, dtype=self.dtype).element_size()


class RowsFileWriter:
    """Collects tensors whose first dimension runs over items (one row per item, or a ragged number of rows
    per item) and writes them as one safetensors file ordered by item.

        with RowsFileWriter(path.parent) as writer:
            writer.append("pooled", pooled)                       # (B, D): one row per item
            writer.append("tokens", tokens, counts=lengths)       # (sum(lengths), D): lengths[i] rows of item i
            ...
            writer.finish(path, order, metadata)                  # order[k]: dataset index of the k-th item appended
    """

    def __init__(self, directory: Path):
        Path(directory).mkdir(parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(prefix=".rows-", dir=directory))
        self._tensors: dict[str, _Rows] = {}

    def __enter__(self) -> RowsFileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for rows in self._tensors.values():
            rows.handle.close()  # closing twice is harmless
        shutil.rmtree(self._dir, ignore_errors=True)

    def append(self, name: str, values: torch.Tensor, counts: Sequence[int] | torch.Tensor | None = None) -> None:
        """Append a batch of items' rows: `values` (R, ...) on the CPU; `counts` rows per item (default 1 each)."""
        counts = [1] * len(values) if counts is None else [int(c) for c in counts]
        if sum(counts) != len(values):
            raise ValueError(f"{name}: {len(values)} rows but the item counts add up to {sum(counts)}")
        rows = self._tensors.get(name)
        if rows is None:
            path = self._dir / f"{len(self._tensors)}.rows"
            rows = _Rows(open(path, "wb"), path, tuple(values.shape[1:]), values.dtype)  # noqa: SIM115 - closed in close()
            self._tensors[name] = rows
        if tuple(values.shape[1:]) != rows.row_shape or values.dtype != rows.dtype:
            raise ValueError(f"{name}: rows {values.dtype} {tuple(values.shape[1:])} after {rows.dtype} {rows.row_shape}")
        rows.handle.write(_raw_bytes(values))
        rows.counts += counts

    def item_counts(self, name: str) -> list[int]:
        """Rows of each appended item of `name`, in append order."""
        return list(self._tensors[name].counts)

    def finish(self, path: Path, order: Sequence[int], metadata: Mapping[str, str] | None = None,
               extra: Mapping[str, torch.Tensor] | None = None) -> None:
        """Write the file at `path` (atomically): every tensor's items in dataset order, plus the small
        `extra` tensors (e.g. offsets) as they are. `order[k]` is the dataset index of the k-th appended item."""
        n = len(order)
        position = np.full(n, -1, dtype=np.int64)  # dataset index -> append position
        position[np.asarray(order, dtype=np.int64)] = np.arange(n)
        if (position < 0).any():
            raise ValueError("order must be a permutation of range(number of items)")
        for name, rows in self._tensors.items():
            if len(rows.counts) != n:
                raise ValueError(f"{name}: {len(rows.counts)} items appended, {n} expected")
        header: dict[str, object] = {}
        layout: list[tuple[str, int]] = []
        start = 0
        names = sorted([*self._tensors, *(extra or {})])
        for name in names:
            if name in self._tensors:
                rows = self._tensors[name]
                shape = [sum(rows.counts), *rows.row_shape]
                size, dtype = shape[0] * rows.row_bytes, rows.dtype
            else:
                tensor = extra[name]
                shape, dtype = list(tensor.shape), tensor.dtype
                size = tensor.numel() * tensor.element_size()
            header[name] = {"dtype": SAFETENSORS_DTYPES[dtype], "shape": shape, "data_offsets": [start, start + size]}
            layout.append((name, size))
            start += size
        if metadata:
            header["__metadata__"] = dict(metadata)
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned, as safetensors writes it

        data_start = 8 + len(encoded)
        offsets = {name: int(header[name]["data_offsets"][0]) for name, _ in layout}  # type: ignore[index]

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as out:
                out.write(struct.pack("<Q", len(encoded)))
                out.write(encoded)
                for name, _ in layout:
                    if name in self._tensors:
                        self._move_in_order(self._tensors[name], np.asarray(order, dtype=np.int64), position, out,
                                            data_start + offsets[name])
                    else:
                        out.seek(data_start + offsets[name])
                        out.write(_raw_bytes(extra[name]))

        atomic_write(path, write)

    @staticmethod
    def _move_in_order(rows: _Rows, order: np.ndarray, position: np.ndarray, out: BinaryIO, base: int) -> None:
        """Move `rows`' items from the temporary file to their dataset-order places in `out` (from byte `base`).

        The temporary file is read from its end and cut short behind each piece moved, so the rows take
        their size on disk once (plus one piece), not twice. Items that lie back to back in both orders
        move together, up to `COPY_CHUNK` bytes."""
        rows.handle.close()
        counts = np.asarray(rows.counts, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)]) * rows.row_bytes  # append position -> byte offset
        placed = np.concatenate([[0], np.cumsum(counts[position])]) * rows.row_bytes  # dataset index -> offset
        with open(rows.path, "r+b") as source:  # plain reads: a memory map would count its pages as ours
            last = len(order) - 1
            while last >= 0:
                first = last  # the piece: append positions first..last
                while (first > 0 and order[first - 1] == order[first] - 1
                       and starts[last + 1] - starts[first - 1] <= COPY_CHUNK):
                    first -= 1
                begin, end = int(starts[first]), int(starts[last + 1])
                if end > begin:
                    source.seek(begin)
                    chunk = source.read(end - begin)
                    out.seek(base + int(placed[order[first]]))
                    out.write(chunk)
                    source.truncate(begin)
                last = first - 1
        rows.path.unlink()


def _raw_bytes(values: torch.Tensor) -> bytes:
    """A CPU tensor's bytes in C order (little-endian, as safetensors stores them)."""
    values = values.detach().to("cpu").contiguous()
    if values.dtype == torch.bfloat16:  # numpy has no bfloat16: reinterpret the same two bytes
        values = values.view(torch.int16)
    return values.numpy().tobytes()
