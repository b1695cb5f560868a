"""What the conclusion chapter computes itself: which builds exist. Everything it says about results it
pastes from chapter 4's glued values (`{glue:text}`04_experiments.ipynb::key``), so it never restates a
number and follows the build it is part of.
"""

from __future__ import annotations

from pathlib import Path

from thesis_lib.experiments.layout import RunsFolder
from thesis_lib.experiments.profile import Profile, load_profile
from thesis_lib.experiments.records import iter_records
from thesis_lib.paths import project_root

FULL_PROFILE = "full"


def full_profile_runs(root: Path | None = None) -> tuple[Path, int, int]:
    """The full profile's runs folder, how many finished runs of the full profile it holds (rehearsals not
    counted) and on how many different data folders."""
    folder = load_profile(FULL_PROFILE, root=root).runs_path()
    data_roots, count = set(), 0
    if folder.is_dir():
        for _, record in iter_records(RunsFolder(folder), split=None):
            if record.get("profile") == FULL_PROFILE and not record.get("rehearsal"):
                count += 1
                data_roots.add(str((record.get("data") or {}).get("root")))
    return folder, count, len(data_roots)


def builds_sentence(settings: Profile, root: Path | None = None) -> str:
    """This build's profile, and whether full-profile runs (the thesis's MM-IMDb evidence) exist in the full
    profile's runs folder."""
    folder, count, roots = full_profile_runs(root)
    try:
        folder = folder.relative_to(root or project_root())
    except ValueError:
        pass
    this = (f"This build is the **{settings.profile}** profile"
            + (" (a rehearsal on random stand-in weights)" if settings.rehearsal else "") + ".")
    if count:
        full = (f" The full profile's runs folder `{folder}` holds {count} finished full-profile runs "
                f"(on {roots} data folder{'s' if roots != 1 else ''}); a book built from them "
                f"(`make book PROFILE=full DATA=...`) is the thesis's evidence.")
    else:
        full = (f" No full-profile build exists yet: the full profile's runs folder `{folder}` holds no finished "
                "full-profile run, so this companion has produced no MM-IMDb result so far.")
    return this + full


def scope_sentence(settings: Profile) -> str:
    """What this build's numbers can and cannot say, by its data (the twin, a rehearsal or MM-IMDb)."""
    if settings.rehearsal:
        return ("These numbers come from a **rehearsal**: full-size models with random stand-in weights, one "
                "training step per run, on a small synthetic twin. They show that every run trains and renders; "
                "they are not results, about the twin or about MM-IMDb.")
    if settings.data_root is None:
        return ("These numbers come from the **synthetic twin**, with the small stand-in models of the model table "
                "of 3.2. They validate the pipeline and show whether each model finds evidence the twin is known to "
                "contain, per kind of evidence; they say nothing about MM-IMDb, whose plots are not templates, "
                "whose posters are not drawings on a grid and whose genres are not caused by planted cues, and "
                "they do not test the pretrained BERT and ViT the thesis proposes (the section on the twin in 3.1 "
                "says what it can and cannot test). The thesis's answer comes from the full profile on the real "
                "release.")
    return ("These numbers come from **MM-IMDb** with the full profile's pretrained backbones. MM-IMDb has no "
            "ground truth for the explanations: their faithfulness is measured against chance, centre and "
            "randomised-model baselines and by deletion, not against planted evidence.")
