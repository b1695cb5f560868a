"""Where pretrained weights come from: a local folder first, else the Hugging Face cache (or hub).

The full profile names backbones as upstream does (`bert-base-uncased`, `roberta-base`, timm's `resnet50`
and `vit_base_patch16_224`). `thesis weights fetch` (THESIS_ONLINE=1) puts them in the Hugging Face cache
under $HF_HOME, where the loaders read them. An offline machine can be handed the same weights as plain
files in the pretrained folder ($THESIS_PRETRAINED_DIR, default `<cache>/pretrained`):

    <pretrained>/bert-base-uncased/          a `save_pretrained` folder: config.json, weights, tokenizer files
    <pretrained>/roberta-base/               (a hub name with an owner keeps it: <pretrained>/owner/name/)
    <pretrained>/timm/resnet50.safetensors   a timm state dict (`safetensors.torch.save_file`)

Only the location differs: the builders run the same code either way. (The offline MiniLM comes from its
pip package: `thesis_lib.data.tokenizers.minilm_dir()`.)

Stand-ins. Tests and benchmarks save small models under the real names (the loading path stays the one
the GPU run takes). Each is marked, so that nothing ever takes one for the pretrained weight: a
`THESIS_STANDIN` file in a model folder, the metadata key `thesis_standin` in a safetensors file, or a
`<file>.thesis-standin` file next to any other weight file. The text of the mark says what the stand-in
is. `weights list` shows them as stand-in and run records say "stand-in" instead of "pretrained".
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from thesis_lib.errors import ThesisError
from thesis_lib.paths import cache_dir

FETCH_COMMAND = "THESIS_ONLINE=1 thesis weights fetch --profile full"  # what every missing-weights error names
STANDIN_MARKER = "THESIS_STANDIN"  # a file in a stand-in model folder; its text says what the stand-in is
STANDIN_METADATA_KEY = "thesis_standin"  # safetensors metadata of a stand-in state dict
STANDIN_SUFFIX = ".thesis-standin"  # a file next to any other stand-in weight file
STATUSES = ("cached", "missing", "stand-in")

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # what transformers loads, in its order
HF_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json")  # any one makes a tokenizer loadable
# A backbone name as the hub and timm spell them ("bert-base-uncased", "owner/name", "vit_base_patch16_224.augreg"):
# never a path ("/x", "../x", "~"), a URL or a timm scheme ("hf-hub:...", "local-dir:..."). A name from a run
# record is then never a way to make a loader open files outside the pretrained folder and the hub cache.
_BACKBONE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")


class MissingWeightsError(ThesisError, OSError):
    """A pretrained backbone's files are not on this machine (an OSError too, as the loaders raised before)."""


class BackboneNameError(ThesisError, ValueError):
    """A backbone name that is a path, a URL or a loader scheme rather than a model name."""


def check_backbone_name(name: str) -> str:
    """`name` itself when it names a model (see _BACKBONE_NAME), else BackboneNameError."""
    if not (isinstance(name, str) and _BACKBONE_NAME.fullmatch(name) and ".." not in name):
        raise BackboneNameError(f"backbone {name!r} is not a model name (a hub id such as 'bert-base-uncased' or "
                                "'owner/name', or a timm name): paths, URLs and loader schemes are refused")
    return name


@dataclass(frozen=True)
class WeightState:
    """One pretrained weight on this machine: whether the loader would find it, and where."""

    status: str  # "cached" (the genuine weight is where the loader reads) | "missing" | "stand-in"
    path: Path  # where it is, or where a download puts it
    size_bytes: int = 0  # on disk (0 when missing)
    detail: str = ""  # the hub id, what is missing, or what the stand-in is


def pretrained_dir() -> Path:
    """The local pretrained-weights folder: $THESIS_PRETRAINED_DIR, else <cache>/pretrained."""
    if env := os.environ.get("THESIS_PRETRAINED_DIR"):
        return Path(env).expanduser().resolve()
    return cache_dir() / "pretrained"


def hf_source(name: str) -> str:
    """What to pass to `from_pretrained`: the local folder for `name` when it holds a model, else `name`."""
    local = pretrained_dir() / check_backbone_name(name)
    return str(local) if (local / "config.json").is_file() else name


def timm_weights_file(name: str) -> Path | None:
    """The local safetensors file for timm model `name`, or None (timm then looks in the HF cache)."""
    local = pretrained_dir() / "timm" / f"{check_backbone_name(name)}.safetensors"
    return local if local.is_file() else None


def missing_weights_hint(name: str) -> str:
    """The sentence to add to an error when weights for `name` cannot be found offline."""
    return (
        f"no pretrained weights for {name!r} on this machine: run `{FETCH_COMMAND}` on a machine with network "
        f"(then copy the cache, see the README), or put them in {pretrained_dir()} (see thesis_lib.models.pretrained)"
    )


# ------------------------------------------------------------------------------------------ stand-ins


def mark_standin(path: Path, what: str) -> None:
    """Mark the model folder or weight file `path` as a stand-in; `what` says what it is (one line)."""
    path = Path(path)
    if path.is_dir():
        (path / STANDIN_MARKER).write_text(what + "\n", encoding="utf-8")
    elif path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not a dict)
            metadata = dict(handle.metadata() or {})
        save_file(tensors, str(path), metadata=metadata | {STANDIN_METADATA_KEY: what})
    else:
        path.with_name(path.name + STANDIN_SUFFIX).write_text(what + "\n", encoding="utf-8")


def save_standin_state_dict(tensors: Mapping[str, Tensor], path: Path, what: str) -> None:
    """Save a stand-in state dict as safetensors, marked in its metadata."""
    save_file({key: value.contiguous() for key, value in tensors.items()}, str(path),
              metadata={STANDIN_METADATA_KEY: what})


def standin_reason(path: Path) -> str | None:
    """What the stand-in at `path` is, or None when `path` is not marked as one (or does not exist)."""
    path = Path(path)
    if path.is_dir():
        marker = path / STANDIN_MARKER
        return (marker.read_text(encoding="utf-8").strip() or "stand-in") if marker.is_file() else None
    sidecar = path.with_name(path.name + STANDIN_SUFFIX)
    if sidecar.is_file():
        return sidecar.read_text(encoding="utf-8").strip() or "stand-in"
    if path.suffix == ".safetensors" and path.is_file():
        with safe_open(str(path), framework="pt") as handle:
            return (handle.metadata() or {}).get(STANDIN_METADATA_KEY)
    return None


def backbone_standin(modality: str, name: str) -> str | None:
    """What the stand-in the loader would read for backbone `name` is, or None when it reads no stand-in
    (a run record then says "stand-in" instead of "pretrained")."""
    if modality == "text":
        local = pretrained_dir() / name
        return standin_reason(local) if (local / "config.json").is_file() else None
    if modality == "image" and (local_file := timm_weights_file(name)) is not None:
        return standin_reason(local_file)
    return None


def remove_standin(path: Path) -> None:
    """Delete a marked stand-in (a folder or a file and its mark); refuses anything unmarked."""
    path = Path(path)
    if standin_reason(path) is None:
        raise ValueError(f"{path} is not a marked stand-in: not deleting it")
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.with_name(path.name + STANDIN_SUFFIX).unlink(missing_ok=True)
        path.unlink()


def file_size(path: Path) -> int:
    """Bytes of a file (through symlinks, as the HF cache links snapshots to blobs) or of a folder's files."""
    path = Path(path)
    if path.is_dir():
        return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())
    return path.stat().st_size if path.exists() else 0
