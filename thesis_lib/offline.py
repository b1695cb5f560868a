"""Offline hygiene, in one place: nothing in this project ever waits on a network retry loop.

Importing `thesis_lib` calls `configure_environment()`, which only sets environment variables that are
not set already (so a user can override any of them), before transformers, huggingface_hub, timm or
ultralytics are imported by anything in the library:

- Hugging Face: `HF_HOME` inside the project's cache, and `HF_HUB_OFFLINE=1` / `TRANSFORMERS_OFFLINE=1`
  unless `THESIS_ONLINE=1` (set that on a machine that may download pretrained weights).
- torch hub / torchvision weights: `TORCH_HOME` inside the project's cache.
- ultralytics: `YOLO_CONFIG_DIR` inside the project's cache and `YOLO_OFFLINE=1`; `prepare_ultralytics()`
  (called lazily by the detector module) also places a font where ultralytics looks for one and turns
  off its settings sync, so it never tries to download Arial.ttf or phone home.

`MPLBACKEND` is deliberately left alone: setting it to Agg drops every figure from notebook output.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from thesis_lib.paths import cache_dir


def is_online() -> bool:
    """True when the user allowed downloads with THESIS_ONLINE=1."""
    return os.environ.get("THESIS_ONLINE", "0").lower() in {"1", "true", "yes"}


def configure_environment() -> dict[str, str]:
    """Set the offline/cache environment variables that are not already set; return what it set."""
    cache = cache_dir()
    wanted = {
        "HF_HOME": str(cache / "huggingface"),
        "TORCH_HOME": str(cache / "torch"),
        "YOLO_CONFIG_DIR": str(cache / "ultralytics"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    if not is_online():
        wanted |= {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "YOLO_OFFLINE": "1"}
    applied = {}
    for key, value in wanted.items():
        if key not in os.environ:
            os.environ[key] = value
            applied[key] = value
    _sync_loaded_hub(os.environ.get("HF_HUB_OFFLINE") == "1")
    return applied


def _sync_loaded_hub(offline: bool) -> None:
    """huggingface_hub reads HF_HUB_OFFLINE once, at its import: if something imported it before
    thesis_lib (a notebook that imports transformers first), switch the loaded copy too, or an uncached
    name would retry the network for most of a minute."""
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None and offline:
        constants.HF_HUB_OFFLINE = True


def prepare_ultralytics() -> Path:
    """Make ultralytics usable offline: a font in its config dir and settings sync off. Returns the dir."""
    configure_environment()
    config_dir = Path(os.environ["YOLO_CONFIG_DIR"])
    font_target = config_dir / "Ultralytics" / "Arial.ttf"
    if not font_target.exists():
        import matplotlib  # the DejaVu font matplotlib ships stands in for Arial

        font_source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        font_target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(font_source, font_target)
    from PIL import Image
    from ultralytics import settings
    from ultralytics.utils import patches

    settings.update({"sync": False})
    # Importing ultralytics replaces PIL's Image.open process-wide with a wrapper that, on a file PIL cannot
    # identify, tries to pip-install pi-heif: a corrupt poster would then raise ModuleNotFoundError (or
    # reach for the network) instead of PIL's error. Give the rest of the project PIL's own function back.
    Image.open = patches._image_open
    return config_dir
