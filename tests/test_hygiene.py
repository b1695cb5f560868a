"""Packaging and environment hygiene: pins agree, offline settings apply, the core imports stay light."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_every_pyproject_pin_matches_the_constraints_file():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    constraints = _constraints()
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", requirement)
        assert match, f"{requirement!r} is not pinned exactly"
        name, version = match[1].lower().replace("_", "-"), match[2]
        assert constraints.get(name) == version, f"{name}: pyproject {version}, constraints {constraints.get(name)}"


def _run_python(code: str, env_overrides: dict[str, str] | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "YOLO_"))}
    env.pop("THESIS_ONLINE", None)
    env.update(env_overrides or {})
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def test_import_sets_offline_variables_inside_the_project_cache(tmp_path):
    out = _run_python(
        "import os, thesis_lib; print(os.environ['HF_HUB_OFFLINE'], os.environ['YOLO_OFFLINE'], os.environ['HF_HOME'])",
        {"THESIS_CACHE": str(tmp_path)},
    )
    offline_hf, offline_yolo, hf_home = out.split()
    assert (offline_hf, offline_yolo) == ("1", "1")
    assert Path(hf_home) == tmp_path / "huggingface"


def test_user_settings_win_and_online_mode_sets_no_offline_flags():
    out = _run_python(
        "import os, thesis_lib; print(os.environ.get('HF_HUB_OFFLINE', '-'), os.environ['HF_HOME'])",
        {"THESIS_ONLINE": "1", "HF_HOME": "/somewhere/else"},
    )
    assert out.split() == ["-", "/somewhere/else"]


def test_core_import_pulls_in_no_optional_heavy_library():
    # The GPU machine has no ultralytics, grad-cam, papermill or jupyter-book: the core must not need them.
    out = _run_python(
        "import sys, thesis_lib, thesis_lib.genres, thesis_lib.cli, thesis_lib.data.mmimdb\n"
        "print(' '.join(m for m in ('ultralytics', 'pytorch_grad_cam', 'papermill', 'matplotlib') if m in sys.modules))"
    )
    assert out == ""


def test_cli_help_lists_the_data_commands():
    result = subprocess.run([sys.executable, "-m", "thesis_lib.cli", "data", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("check", "synth", "download", "split"):
        assert command in result.stdout


def test_offline_mode_reaches_a_hub_imported_before_thesis_lib(tmp_path):
    out = _run_python(
        "import huggingface_hub.constants as c; before = c.HF_HUB_OFFLINE; import thesis_lib; print(before, c.HF_HUB_OFFLINE)",
        {"THESIS_CACHE": str(tmp_path)},
    )
    assert out.split() == ["False", "True"]
