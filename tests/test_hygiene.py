"""Packaging and environment hygiene: pins agree, offline settings apply, the core imports stay light."""

from __future__ import annotations

import os
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


def _requirements(project: dict) -> list[str]:
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    return requirements


def test_pyproject_ranges_are_compatible_and_the_constraints_file_is_their_lock():
    """Each dependency is a range with a lower bound and an upper bound (the next major, or the next minor of a
    0.x release), and the lock pins a version inside it: the version `make` installs and the tests ran on."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    constraints = _constraints()
    for text in _requirements(project):
        requirement = Requirement(text)
        operators = {spec.operator: Version(spec.version) for spec in requirement.specifier}
        assert set(operators) == {">=", "<"}, f"{text!r}: give a range >=LOW,<HIGH (the lock pins the version)"
        low, high = operators[">="], operators["<"]
        next_release = (low.major + 1,) if low.major else (0, low.minor + 1)
        assert high.release == next_release, f"{text!r}: the upper bound should be {'.'.join(map(str, next_release))}"
        name = requirement.name.lower().replace("_", "-")
        assert name in constraints, f"{name} is not locked in requirements/constraints.txt"
        assert Version(constraints[name]) in requirement.specifier, f"{name}: the lock's {constraints[name]} is outside {text!r}"


def test_python_version_is_the_one_tested():
    """requires-python starts at the version the venv and CI use (ruff's target too): 3.11."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == ">=3.11"
    assert pyproject["tool"]["ruff"]["target-version"] == "py311"
    assert "Programming Language :: Python :: 3.11" in pyproject["project"]["classifiers"]
    assert sys.version_info[:2] >= (3, 11)


def test_the_version_is_spelled_once_in_pyproject_and_the_package():
    import thesis_lib

    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"] == thesis_lib.__version__


def test_citation_file_names_the_book_and_its_author():
    """CITATION.cff (CFF 1.2.0) takes the title and author from _config.yml, the version and licence from
    pyproject.toml; nothing that is not known (no DOI, no repository URL)."""
    import yaml

    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    book = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert citation["cff-version"] == "1.2.0" and citation["type"] == "software" and citation["message"]
    assert citation["title"] == book["title"]
    assert citation["authors"] == [{"name": book["author"]}]
    assert (citation["version"], citation["license"]) == (project["version"], project["license"])
    assert not {"doi", "identifiers", "repository-code", "url"} & set(citation)


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


def _make_test(tmp_path: Path, tools: dict[str, str], **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """`make test` of the real Makefile with a stand-in venv whose python logs each call (the value of
    THESIS_REQUIRE_CHROMIUM, then its arguments) and a PATH holding only `tools` (name -> executable)."""
    import shutil

    bin_dir, venv = tmp_path / "bin", tmp_path / "venv"
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    bin_dir.mkdir(exist_ok=True)
    for name, target in {"make": shutil.which("make"), "id": shutil.which("id"), **tools}.items():
        if not (bin_dir / name).exists():
            (bin_dir / name).symlink_to(target)
    log = tmp_path / "calls.log"
    log.unlink(missing_ok=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\necho "${{THESIS_REQUIRE_CHROMIUM:-}} $*" >> {log}\n'
                      'case "$*" in *ruff*) exit "${FAKE_LINT_STATUS:-0}";; esac\n')
    python.chmod(0o755)
    (venv / ".thesis-installed").touch()  # newer than pyproject.toml and the lock: no install
    done = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "test", f"VENV={venv}"],
                          env={"PATH": str(bin_dir), "HOME": str(tmp_path), **env},
                          capture_output=True, text=True, timeout=60)
    return done, log.read_text().splitlines() if log.exists() else []


def test_make_test_lints_first_and_skips_the_browser_test_only_outside_ci(tmp_path):
    """Without Chromium and apt-get: one line and the browser test skipped (THESIS_REQUIRE_CHROMIUM=0), but CI
    (CI=true) fails there; with Chromium the test is required. Ruff runs before pytest and a lint error stops
    `make test`."""
    import shutil

    if shutil.which("make") is None:
        import pytest

        pytest.skip("no make on this machine")
    done, calls = _make_test(tmp_path, {})
    assert done.returncode == 0, done.stderr
    assert calls == [" -m ruff check thesis_lib tests benchmarks", "0 -m pytest -n auto --dist loadfile"]
    skipped = [line for line in done.stderr.splitlines() if line.startswith("browser:")]
    assert skipped == ["browser: no Chromium and no apt-get here: the browser test is skipped (install Chromium to "
                       "run it)"]
    done, calls = _make_test(tmp_path, {}, CI="true")
    assert done.returncode != 0 and "CI=true requires the browser test" in done.stderr
    assert not any("pytest" in call for call in calls)
    done, calls = _make_test(tmp_path, {}, CI="false")  # a CI variable set to false is not CI
    assert done.returncode == 0 and calls[-1] == "0 -m pytest -n auto --dist loadfile"
    done, calls = _make_test(tmp_path, {"chromium": "/bin/true"})
    assert done.returncode == 0 and calls[-1] == "1 -m pytest -n auto --dist loadfile" and "browser:" not in done.stderr
    done, calls = _make_test(tmp_path, {"chromium": "/bin/true"}, FAKE_LINT_STATUS="1")
    assert done.returncode != 0 and calls == [" -m ruff check thesis_lib tests benchmarks"]
