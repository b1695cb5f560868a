"""Checkpoints: weights in safetensors, the rest of the training state in a `weights_only`-loadable .pt.

Layout of a checkpoint directory:
    DIR/best/model.safetensors             weights of the best epoch so far (by `TrainConfig.monitor`)
    DIR/last/checkpoint.json               names the latest complete save (the manifest, written last)
    DIR/last/<unit>/model.safetensors      weights at that save (epoch end, or every N optimizer steps)
    DIR/last/<unit>/state.pt               optimizer, scheduler, `RunProgress`, config, per-process RNG states

A save of `last` is one unit, wholly there or not there. Its two files go into a new folder `<unit>` (named
by step and a random token, so no save ever writes over a file another one names), are flushed to disk,
and then one `os.replace` of checkpoint.json makes that folder the checkpoint; older units are deleted
afterwards. Why a manifest and not a folder swap: rename(2) replaces a *file* atomically on POSIX (and on
NFS, where the server does the rename), but it cannot replace a non-empty folder, so swapping folders takes
two renames with a moment in between when `last` is missing. A kill or a full disk at any point leaves the
previous manifest naming the previous, complete unit, and a rerun resumes from it. A `last` that cannot be
resumed (a manifest naming a missing file; the separately written pair of older versions with its files
from different steps) is discarded by `discard_unusable_last`, and the run starts again with a notice.

`best` is never written on its own: an epoch that improves is saved as a unit whose weights carry the
best-epoch metadata, and only after that unit is committed are its weights published as
DIR/best/model.safetensors (a hard link, or a copy where the file system has none, moved into place with
`os.replace`). So `best` is always weights of a save that `last` (or an earlier `last`) recorded, and a run
killed between the commit and the publication republishes it on resume (`load_last`). Callers may add
metadata of their own to every weights file (the experiment grid adds the run's config hash, which it
checks before predicting with `best`).
`state.pt` holds only tensors and plain containers (numpy's RNG state is converted to a tensor), so it loads
with `torch.load(path, weights_only=True)`: no pickled code runs when a checkpoint is opened.

A wrapper that trains part of a bigger model (`features.FrozenEncodersClassifier`) names that model in its
`checkpoint_module` attribute: the files then hold the wrapped model's own keys. When the wrapper's frozen
backbones come from elsewhere (a pretrained checkpoint, a source run), it also names their state-dict
prefixes in `checkpoint_excludes`, and its weight files are *slim*: they leave those tensors out (the
full profile's BERT-base + ViT-B/16 fusions: 0.2-21 MB instead of 0.78-0.80 GB per file, measured on their
shapes) and record in their metadata
    excluded_prefixes     JSON list of the prefixes left out (relative to the checkpoint module's keys)
    excluded_fingerprint  sha256 of the left-out tensors (`weights_fingerprint`) at save time
A slim file loads only into a model whose excluded weights are already in place (the caller loaded them,
see `thesis_lib.experiments.restore`): the file must hold exactly the model's other keys, and the model's
excluded weights must match the fingerprint, so a fusion head never silently lands on other encoders.
Files without that metadata (every file of a fine-tuned run, files from before slim checkpoints) hold the
whole module and load strictly, as they always did.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from thesis_lib.storage import atomic_write, fsync_folder

CHECKPOINT_FORMAT = 1
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
MANIFEST_FILE = "checkpoint.json"  # in DIR/last: names the complete unit (see the module docstring)
BEST, LAST = "best", "last"
BEST_EPOCH = "best_epoch"  # weights metadata of a save that is also the best so far (then published as best)
EXCLUDED_PREFIXES = "excluded_prefixes"  # metadata key of a slim weights file (see the module docstring)
EXCLUDED_FINGERPRINT = "excluded_fingerprint"


class CheckpointMismatchError(RuntimeError):
    """A weights file that does not fit the model it is loaded into (keys, shapes or left-out weights)."""


class CheckpointUnusableError(RuntimeError):
    """A `last` checkpoint that cannot be resumed (see `discard_unusable_last`); the message is one line."""


@dataclass
class RunProgress:
    """Where a run stands: everything besides weights and optimizer that a resumed run needs."""

    epoch: int = 0  # the epoch in progress (0-based)
    batches_done: int = 0  # batches of `epoch` each process has consumed; a resumed run skips them
    global_step: int = 0  # optimizer steps taken
    best_metric: float | None = None  # best validation score of `monitor` so far
    best_epoch: int | None = None  # epoch (0-based) that scored best_metric
    epochs_without_improvement: int = 0  # early-stopping counter
    finished: bool = False  # True once the run ended (all epochs, or stopped early)
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)  # one `EpochRecord.to_dict()` per finished epoch
    train_time_s: float = 0.0  # seconds spent in training steps (all sessions of a resumed run)
    wall_time_s: float = 0.0  # seconds spent in fit, training and validation (all sessions)
    samples_seen: int = 0  # training samples consumed, summed over processes


@dataclass
class ProcessState:
    """What differs between the processes of a DDP run: RNG streams and the partial loss of the epoch."""

    rng: dict[str, Any]
    epoch_loss_sum: float = 0.0  # sum over this process's batches of (mean batch loss x batch size)
    epoch_samples: int = 0  # samples this process has trained on in the epoch in progress


# ---------------------------------------------------------------------------------------------- files


def checkpoint_module(model: nn.Module) -> nn.Module:
    """The module whose weights a checkpoint holds: `model.checkpoint_module` if a wrapper names one."""
    return getattr(model, "checkpoint_module", model)


def checkpoint_excludes(model: nn.Module) -> tuple[str, ...]:
    """State-dict prefixes (of `checkpoint_module(model)`) a wrapper's checkpoints leave out: its frozen
    backbones, which come from elsewhere. Empty for everything else (whole-module files)."""
    return tuple(getattr(model, "checkpoint_excludes", ()))


def weights_fingerprint(model: nn.Module, prefixes: tuple[str, ...]) -> str:
    """sha256 of the names, dtypes, shapes and bytes of every state-dict tensor under `prefixes`."""
    digest = hashlib.sha256()
    matched = 0
    for name, tensor in sorted(model.state_dict().items()):
        if not name.startswith(prefixes):
            continue
        matched += 1
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    if matched == 0:
        raise ValueError(f"{type(model).__name__} has no state-dict entry under {prefixes} to identify its backbones")
    return digest.hexdigest()


def save_model_weights(model: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    """The state dict of `checkpoint_module(model)` as safetensors (CPU copies), written atomically; without
    the tensors under `checkpoint_excludes(model)`, which the metadata then names and fingerprints."""
    module, excluded = checkpoint_module(model), checkpoint_excludes(model)
    state = module.state_dict()
    metadata = dict(metadata or {})
    if excluded:
        if unknown := [p for p in excluded if not any(name.startswith(p) for name in state)]:
            raise ValueError(f"{type(model).__name__}.checkpoint_excludes {unknown} name nothing in "
                             f"{type(module).__name__}: the file could never be loaded back")
        metadata[EXCLUDED_PREFIXES] = json.dumps(list(excluded))
        metadata[EXCLUDED_FINGERPRINT] = weights_fingerprint(module, excluded)
    tensors = {
        name: t.detach().to("cpu").contiguous()
        for name, t in state.items()
        if not name.startswith(excluded)  # str.startswith(()) is False: nothing left out without excludes
    }
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def read_weights_metadata(path: Path) -> dict[str, str]:
    """The metadata of a safetensors weights file (empty when it has none), without reading its tensors."""
    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata() or {}


def excluded_prefixes(metadata: dict[str, str], path: Path) -> tuple[str, ...]:
    """The prefixes a weights file leaves out (empty for a whole-module file); `path` names it in errors."""
    if EXCLUDED_PREFIXES not in metadata:
        return ()
    try:
        prefixes = json.loads(metadata[EXCLUDED_PREFIXES])
    except json.JSONDecodeError:
        prefixes = None
    if not (isinstance(prefixes, list) and prefixes and all(isinstance(p, str) and p for p in prefixes)):
        raise CheckpointMismatchError(f"{path}: metadata {EXCLUDED_PREFIXES} is not a JSON list of prefixes: "
                                      f"{metadata[EXCLUDED_PREFIXES]!r}")
    if EXCLUDED_FINGERPRINT not in metadata:
        raise CheckpointMismatchError(f"{path}: leaves out {prefixes} but records no {EXCLUDED_FINGERPRINT}")
    return tuple(prefixes)


def load_model_weights(model: nn.Module, path: Path) -> dict[str, str]:
    """Load safetensors weights into `checkpoint_module(model)`; returns the file's metadata.

    A whole-module file loads strictly. A slim file (see the module docstring) loads what it holds; the
    keys it lacks must be exactly the model's keys under its excluded prefixes, and those weights must
    already be the ones it was trained with (fingerprint). Anything else is a `CheckpointMismatchError`
    naming the file; a slim file's checks run before the model is changed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model weights at {path}")
    module = checkpoint_module(model)
    metadata = read_weights_metadata(path)
    excluded = excluded_prefixes(metadata, path)
    state = load_file(str(path))
    if excluded:
        _check_slim_file(module, state, excluded, metadata[EXCLUDED_FINGERPRINT], path)
    try:
        module.load_state_dict(state, strict=not excluded)  # slim: the key sets were checked just above
    except RuntimeError as error:
        raise CheckpointMismatchError(f"{path} does not match {type(module).__name__}: {error}") from error
    return metadata


def _check_slim_file(
    module: nn.Module, state: dict[str, torch.Tensor], excluded: tuple[str, ...], fingerprint: str, path: Path
) -> None:
    """The file holds every key of `module` but those under `excluded`, and the module's excluded weights
    are the ones the file was saved with."""
    names = set(module.state_dict())
    problems = []
    if unknown := [p for p in excluded if not any(name.startswith(p) for name in names)]:
        problems.append(f"it leaves out {unknown}, which name nothing in the model")
    if held := sorted(name for name in state if name.startswith(excluded)):
        problems.append(f"it holds {len(held)} tensors under its own excluded prefixes ({_some(held)})")
    if unexpected := sorted(set(state) - names):
        problems.append(f"{len(unexpected)} keys the model lacks ({_some(unexpected)})")
    if missing := sorted(name for name in names - set(state) if not name.startswith(excluded)):
        problems.append(f"it lacks {len(missing)} keys it does not exclude ({_some(missing)})")
    if problems:
        raise CheckpointMismatchError(
            f"{path} does not match {type(module).__name__} (a slim file leaving out {list(excluded)}): "
            + "; ".join(problems)
        )
    if (found := weights_fingerprint(module, excluded)) != fingerprint:
        raise CheckpointMismatchError(
            f"{path} was trained on other weights under {list(excluded)} than the model holds (fingerprint "
            f"{fingerprint[:12]}, model {found[:12]}): load the frozen backbones it was trained with first "
            f"(thesis_lib.experiments.restore does this for a run folder)"
        )


def _some(names: list[str], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


# ------------------------------------------------------------------------------------------------ RNG


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy, torch CPU (and CUDA) RNG states as tensors and plain containers."""
    version, mt_state, gauss = random.getstate()
    _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": (version, torch.tensor(mt_state, dtype=torch.int64), gauss),
        "numpy": (torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss), float(np_gauss)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state`."""
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(int(x) for x in mt_state.tolist()), gauss))
    np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state(("MT19937", np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------ best / last


@dataclass(frozen=True)
class LastCheckpoint:
    """The complete save `DIR/last` names: its folder, weights and state."""

    folder: Path

    @property
    def weights(self) -> Path:
        return self.folder / MODEL_FILE

    @property
    def state(self) -> Path:
        return self.folder / STATE_FILE


def save_last(
    directory: Path,
    accelerator: Accelerator,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    progress: RunProgress,
    process_state: ProcessState,
    config: dict[str, Any],
    *,
    best: Mapping[str, str] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Save DIR/last as one unit (see the module docstring); with `best` (its metadata, e.g. the best epoch
    and score) the same weights then become DIR/best. `metadata` goes into the weights file of every save.
    Every process must call it: RNG states are gathered."""
    process_states = gather_object([dataclasses.asdict(process_state)])  # one entry per process, rank order
    if accelerator.is_main_process:
        last = Path(directory) / LAST
        unit = last / f"step{progress.global_step:09d}-{secrets.token_hex(4)}"
        weights_metadata = {**(metadata or {}), "global_step": str(progress.global_step), "epoch": str(progress.epoch)}
        if best is not None:
            weights_metadata |= {BEST_EPOCH: str(progress.best_epoch), **best}
        state = {
            "format": CHECKPOINT_FORMAT,
            "config": config,
            "progress": dataclasses.asdict(progress),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "world_size": accelerator.num_processes,
            "processes": process_states,
        }
        try:
            unit.mkdir(parents=True)
            save_model_weights(accelerator.unwrap_model(model), unit / MODEL_FILE, weights_metadata)
            atomic_write(unit / STATE_FILE, lambda tmp: _save_state(state, tmp))
            fsync_folder(unit)
            manifest = {"format": CHECKPOINT_FORMAT, "unit": unit.name, "global_step": progress.global_step}
            atomic_write(last / MANIFEST_FILE, lambda tmp: tmp.write_text(json.dumps(manifest), encoding="utf-8"))
        except BaseException:
            if _named_unit(last) != unit.name:  # not committed: garbage (and on a full disk, space back)
                shutil.rmtree(unit, ignore_errors=True)
            raise
        fsync_folder(last)  # the commit itself reaches the disk
        for entry in last.iterdir():  # older units and files of older versions: nothing names them any more
            if entry.name in (unit.name, MANIFEST_FILE):
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        if best is not None:
            _publish_best(LastCheckpoint(unit), Path(directory))
    accelerator.wait_for_everyone()


def _save_state(state: dict[str, Any], path: Path) -> None:
    """torch.save through a Python file, so a full disk surfaces as the OSError it is: torch's own file
    writer turns it into "RuntimeError: [enforce fail at inline_container.cc] unexpected pos ...", which
    names no cause (measured on a full tmpfs; through a Python file the OSError is the error's context)."""
    with open(path, "wb") as handle:
        try:
            torch.save(state, handle)
        except RuntimeError as error:
            cause = error.__cause__ or error.__context__
            if isinstance(cause, OSError):
                raise cause from error
            raise


def _named_unit(last: Path) -> str | None:
    """The unit folder DIR/last's manifest names (None when there is no readable manifest)."""
    try:
        return json.loads((last / MANIFEST_FILE).read_text(encoding="utf-8")).get("unit")
    except (OSError, ValueError, AttributeError):
        return None


def _publish_best(last: LastCheckpoint, directory: Path) -> None:
    """Make the weights of a committed unit DIR/best/model.safetensors, in one `os.replace`: a hard link (no
    second copy of the bytes), or a flushed copy where the file system has no hard links."""
    target = directory / BEST / MODEL_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(last.weights, tmp)
        except OSError:  # e.g. EPERM / ENOTSUP on file systems without hard links
            shutil.copyfile(last.weights, tmp)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_folder(target.parent)


def has_last(directory: Path) -> bool:
    """Whether DIR/last holds a save (usable or not: `last_checkpoint` tells)."""
    last = Path(directory) / LAST
    return (last / MANIFEST_FILE).is_file() or (last / STATE_FILE).is_file()


def last_checkpoint(directory: Path) -> LastCheckpoint | None:
    """The complete save DIR/last names; None when there is none. `CheckpointUnusableError` (one line) when
    something is there that cannot be resumed: a manifest that is unreadable or names missing files, or the
    weights and state.pt that versions before the manifest wrote side by side, from different steps."""
    last = Path(directory) / LAST
    manifest = last / MANIFEST_FILE
    if manifest.is_file():
        try:
            content = json.loads(manifest.read_text(encoding="utf-8"))
            found = LastCheckpoint(last / content["unit"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CheckpointUnusableError(f"{manifest} is unreadable ({type(error).__name__}: {error})") from None
        if not (found.weights.is_file() and found.state.is_file()):
            raise CheckpointUnusableError(f"{manifest} names {found.folder.name}, which lacks its weights or state")
        return found
    legacy = LastCheckpoint(last)  # written by versions before the manifest: two files, checked by their steps
    if not legacy.state.is_file():
        return None
    if not legacy.weights.is_file():
        raise CheckpointUnusableError(f"{legacy.state} has no weights beside it")
    weights_step = read_weights_metadata(legacy.weights).get("global_step")
    state_step = _read_state(legacy.state)["progress"]["global_step"]
    if weights_step != str(state_step):
        raise CheckpointUnusableError(
            f"{last}: weights are from step {weights_step} but {STATE_FILE} from step {state_step} (an older "
            f"version saved them one after the other and the run died in between)")
    return legacy


def discard_unusable_last(directory: Path, accelerator: Accelerator) -> str | None:
    """Remove a `last` that cannot be resumed, and the `best` of that attempt, so the run starts again
    instead of failing on every rerun; returns why (one line), or None when `last` is usable or absent.
    Every process must call it."""
    try:
        last_checkpoint(directory)
        return None
    except CheckpointUnusableError as error:
        accelerator.wait_for_everyone()  # every process has looked before the main one removes
        if accelerator.is_main_process:
            for which in (LAST, BEST):
                shutil.rmtree(Path(directory) / which, ignore_errors=True)
        accelerator.wait_for_everyone()
        return str(error)


def _read_state(path: Path) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a format-{CHECKPOINT_FORMAT} training state")
    return state


def read_last_state(directory: Path) -> dict[str, Any]:
    """The state of DIR/last's complete save, loaded with weights_only=True, checked for format."""
    found = last_checkpoint(directory)
    if found is None:
        raise FileNotFoundError(f"no training state in {Path(directory) / LAST}")
    return _read_state(found.state)


def load_last(
    directory: Path,
    accelerator: Accelerator,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> tuple[RunProgress, ProcessState, dict[str, Any]]:
    """Load DIR/last into model, optimizer and scheduler; returns (progress, this process's state, config).
    A save that was also the best epoch is (re)published as DIR/best when the run died before it was."""
    found = last_checkpoint(directory)
    if found is None:
        raise FileNotFoundError(f"no training state in {Path(directory) / LAST}")
    state = _read_state(found.state)
    metadata = load_model_weights(accelerator.unwrap_model(model), found.weights)
    if metadata.get("global_step") != str(state["progress"]["global_step"]):  # one unit: only by tampering
        raise ValueError(
            f"{found.folder}: weights are from step {metadata.get('global_step')} but {STATE_FILE} from step "
            f"{state['progress']['global_step']}; resume is not safe"
        )
    if state["world_size"] != accelerator.num_processes:
        raise ValueError(
            f"{found.state} was written by {state['world_size']} processes, this run has "
            f"{accelerator.num_processes}: a mid-run resume needs the same number of processes"
        )
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    progress = RunProgress(**state["progress"])
    process_state = ProcessState(**state["processes"][accelerator.process_index])
    if accelerator.is_main_process and BEST_EPOCH in metadata and _best_step(Path(directory)) != metadata["global_step"]:
        _publish_best(found, Path(directory))
    accelerator.wait_for_everyone()
    return progress, process_state, state["config"]


def _best_step(directory: Path) -> str | None:
    """The global step of DIR/best's weights (None when missing, or written before steps were recorded)."""
    path = directory / BEST / MODEL_FILE
    return read_weights_metadata(path).get("global_step") if path.is_file() else None
