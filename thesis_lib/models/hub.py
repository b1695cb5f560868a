"""The text and image backbones' pretrained weights on this machine, and their download.

What `thesis weights list | fetch` reads and writes for Hugging Face text models and timm image models,
at exactly the places the loaders (`models.text.load_text_backbone`, `models.image.load_image_backbone`)
look: the local pretrained folder first (a stand-in there is reported as one), else the Hugging Face
cache under $HF_HOME. A download goes through huggingface_hub (text: the model's config, weights and
tokenizer files) or timm's own hub entry (image: the file its pretrained config names), and is verified
against the hashes the cache names its blobs by: sha256 for LFS files (the weights), the git blob sha1
for small files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import huggingface_hub
from huggingface_hub import constants as hub_constants

from thesis_lib.data.download import file_sha256
from thesis_lib.errors import ThesisError
from thesis_lib.models.pretrained import (
    HF_TOKENIZER_FILES,
    HF_WEIGHT_FILES,
    WeightState,
    file_size,
    pretrained_dir,
    remove_standin,
    standin_reason,
    timm_weights_file,
)

# The files of a transformers model repository the loaders read (config, weights, tokenizer), nothing else:
# bert-base-uncased's repository also holds TF, Flax, ONNX and CoreML copies (several GB).
# Weights: model.safetensors only, unless the repository has none (then pytorch_model.bin, in a second call).
HF_ALLOW_PATTERNS = ["config.json", HF_WEIGHT_FILES[0], *HF_TOKENIZER_FILES, "tokenizer_config.json",
                     "special_tokens_map.json", "merges.txt"]
_CHUNK = 1 << 20


class WeightDownloadError(ThesisError):
    """A download could not be made or did not verify."""


def hub_cache() -> Path:
    """The Hugging Face hub cache the loaders read (read when asked: $HF_HOME decides it at import)."""
    return Path(hub_constants.HF_HUB_CACHE)


def _cached(repo_id: str, filename: str) -> Path | None:
    found = huggingface_hub.try_to_load_from_cache(repo_id, filename, cache_dir=hub_cache())
    return Path(found) if isinstance(found, str) else None


def _repo_folder(repo_id: str) -> Path:
    return hub_cache() / f"models--{repo_id.replace('/', '--')}"


# ------------------------------------------------------------------------------------------- text


def text_weight_state(name: str) -> WeightState:
    """Hugging Face model `name` (with its tokenizer): the local folder when it has config.json, else the cache."""
    local = pretrained_dir() / name
    if (local / "config.json").is_file():
        if (what := standin_reason(local)) is not None:
            return WeightState("stand-in", local, file_size(local), what)
        missing = _missing_parts({f: (local / f).is_file() for f in (*HF_WEIGHT_FILES, *HF_TOKENIZER_FILES)})
        if missing:
            return WeightState("missing", local, file_size(local), f"the local folder has no {missing}")
        return WeightState("cached", local, file_size(local), "local folder")
    found = {f: _cached(name, f) for f in ("config.json", *HF_WEIGHT_FILES, *HF_TOKENIZER_FILES)}
    if found["config.json"] is None:
        return WeightState("missing", _repo_folder(name), 0, f"hub {name}")
    snapshot = found["config.json"].parent
    missing = _missing_parts({f: path is not None for f, path in found.items()})
    size = sum(file_size(path) for path in found.values() if path is not None)
    if missing:
        return WeightState("missing", snapshot, size, f"hub {name}: the cache has no {missing}")
    return WeightState("cached", snapshot, size, f"hub {name}")


def _missing_parts(present: dict[str, bool]) -> str:
    """'' when a weight file and a tokenizer file are present, else which of the two is missing."""
    parts = []
    if not any(present.get(f) for f in HF_WEIGHT_FILES):
        parts.append("weights (" + " / ".join(HF_WEIGHT_FILES) + ")")
    if not any(present.get(f) for f in HF_TOKENIZER_FILES):
        parts.append("tokenizer (" + " / ".join(HF_TOKENIZER_FILES) + ")")
    return " and ".join(parts)


def download_text_weights(name: str) -> list[Path]:
    """Download `name`'s config, weights and tokenizer into the HF cache (a marked stand-in folder that
    would shadow them is deleted first); returns the files, each verified against its blob hash."""
    _require_online_hub()
    local = pretrained_dir() / name
    if standin_reason(local) is not None:
        remove_standin(local)
    snapshot = Path(huggingface_hub.snapshot_download(name, allow_patterns=HF_ALLOW_PATTERNS,
                                                      cache_dir=hub_cache()))
    if not (snapshot / HF_WEIGHT_FILES[0]).is_file():  # an older repository: pickled weights only
        snapshot = Path(huggingface_hub.snapshot_download(name, allow_patterns=list(HF_WEIGHT_FILES[1:]),
                                                          cache_dir=hub_cache()))
    files = sorted(item for item in snapshot.iterdir() if item.is_file())
    for path in files:
        verify_hub_file(path)
    return files


# ------------------------------------------------------------------------------------------- image


def timm_hub_file(name: str) -> tuple[str, str]:
    """(hub repository, file name) of timm model `name`'s default pretrained weights."""
    from timm.models import get_pretrained_cfg  # timm: seconds to import; only image weights need it

    config = get_pretrained_cfg(name)
    if config is None or not config.hf_hub_id:
        raise WeightDownloadError(f"timm model {name!r} has no pretrained weights on the Hugging Face hub")
    repo_id, _, _ = config.hf_hub_id.partition("@")
    return repo_id, config.hf_hub_filename or HF_WEIGHT_FILES[0]


def image_weight_state(name: str) -> WeightState:
    """timm model `name`: the local pretrained file when there is one, else timm's file in the HF cache."""
    if (local := timm_weights_file(name)) is not None:
        if (what := standin_reason(local)) is not None:
            return WeightState("stand-in", local, file_size(local), what)
        return WeightState("cached", local, file_size(local), "local file")
    repo_id, filename = timm_hub_file(name)
    if (found := _cached(repo_id, filename)) is not None:
        return WeightState("cached", found, file_size(found), f"hub {repo_id}")
    return WeightState("missing", _repo_folder(repo_id), 0, f"hub {repo_id}")


def download_image_weights(name: str) -> list[Path]:
    """Download timm model `name`'s weights through timm's hub entry into the HF cache (a marked stand-in
    in the pretrained folder, which would shadow it, is deleted first); returns the verified file."""
    from timm.models import _hub as timm_hub  # timm: seconds to import; only image weights need it

    _require_online_hub()
    if (local := timm_weights_file(name)) is not None and standin_reason(local) is not None:
        remove_standin(local)
    repo_id, filename = timm_hub_file(name)
    path = Path(timm_hub.download_from_hf(repo_id, filename, cache_dir=hub_cache()))
    verify_hub_file(path)
    return [path]


# --------------------------------------------------------------------------------------- verification


def verify_hub_file(path: Path) -> None:
    """Check a file of the HF cache against the hash its blob is named by (sha256 for LFS files, the git
    blob sha1 otherwise); a copy outside the blob store (no link) has nothing to check against."""
    blob = Path(path).resolve()
    if blob.parent.name != "blobs":
        return
    expected = blob.name
    if len(expected) == 64:
        actual = file_sha256(blob)
    elif len(expected) == 40:
        actual = _git_blob_sha1(blob)
    else:
        return
    if actual != expected:
        raise WeightDownloadError(f"{path}: content hash {actual} differs from the hub's {expected}: "
                                  f"delete {blob} and fetch again")


def _git_blob_sha1(path: Path) -> str:
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())  # git's object header
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _require_online_hub() -> None:
    if hub_constants.HF_HUB_OFFLINE:
        raise WeightDownloadError("HF_HUB_OFFLINE=1 is set in the environment: unset it to let "
                                  "`thesis weights fetch` download")
