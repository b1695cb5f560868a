"""`thesis weights list | fetch` against local fakes of each source (no network).

Each fake stands in for one download function the product calls (huggingface_hub's snapshot download,
timm's hub entry, torch.hub's URL download, ultralytics' asset download) and writes a tiny file where
the real one writes it: the Hugging Face cache layout (refs/main -> snapshots/<commit>/<file> -> blobs
named by their hash), torch hub's checkpoints folder, the detector cache. The loaders then read what
fetch wrote, offline, by the code a full-profile run takes.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import re
from pathlib import Path

import pytest
import timm
import torch
from huggingface_hub import constants as hub_constants
from safetensors.torch import load_file, save, save_file
from transformers import BertConfig, BertModel

from thesis_lib.cli import main
from thesis_lib.data.download import file_sha256
from thesis_lib.data.tokenizers import train_bpe_tokenizer, train_wordpiece_tokenizer
from thesis_lib.detection import frcnn, yolo
from thesis_lib.detection.config import default_detector_config
from thesis_lib.errors import ThesisError
from thesis_lib.experiments import run_grid
from thesis_lib.experiments.layout import RunsFolder
from thesis_lib.experiments.pipeline import _fresh_backbone
from thesis_lib.experiments.profile import load_profile
from thesis_lib.experiments.weights import fetch_weights, manifest_path, profile_weights, weight_problems
from thesis_lib.models import build_model, hub
from thesis_lib.models.image import load_image_backbone
from thesis_lib.models.pretrained import FETCH_COMMAND, mark_standin, save_standin_state_dict, standin_reason
from thesis_lib.models.registry import default_config
from thesis_lib.models.standins import write_standins
from thesis_lib.models.text import load_text_backbone

PLOTS = ["A detective follows a red car through the rainy city.", "Two friends fly a rocket to the moon."] * 4
TINY_RESNET = (("layers", (1, 1, 1, 1)), ("channels", (8, 16, 32, 64)), ("stem_width", 8))
FULL_WEIGHTS = {"bert-base-uncased", "roberta-base", "resnet50", "vit_base_patch16_224", "yolov8n.pt",
                frcnn.coco_weights_path().name}
COMMIT = "c0ffee" * 6 + "c0ff"  # a 40-character revision, as the hub names snapshots


def put_in_hub_cache(cache: Path, repo_id: str, filename: str, content: bytes, *, corrupt: bool = False) -> Path:
    """Write one file as huggingface_hub does: a blob named by its hash (sha256 for LFS files, the git
    blob sha1 otherwise), a snapshot link to it and refs/main naming the snapshot."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    lfs = filename.endswith((".safetensors", ".bin", ".pt", ".pth"))
    blob = (hashlib.sha256(content) if lfs else hashlib.sha1(b"blob %d\0" % len(content) + content)).hexdigest()
    if corrupt:
        content = content + b"!"
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "blobs" / blob).write_bytes(content)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    link = snapshot / filename
    link.unlink(missing_ok=True)
    link.symlink_to(Path("..", "..", "blobs", blob))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return link


def tiny_hf_repo(folder: Path, tokenizer) -> dict[str, bytes]:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, pad_token_id=tokenizer.pad_token_id)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {item.name: item.read_bytes() for item in folder.iterdir() if item.is_file()}


def tiny_timm_file(name: str) -> bytes:
    kwargs = dict(TINY_RESNET) if name == "resnet50" else {"embed_dim": 32, "depth": 1, "num_heads": 2}
    model = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    return save({key: value.contiguous() for key, value in model.state_dict().items()})


def torch_zip() -> bytes:
    buffer = io.BytesIO()
    torch.save({"fake": torch.zeros(2)}, buffer)  # a torch zip archive, as a real checkpoint is
    return buffer.getvalue()


class Sources:
    """The four download functions, faked; `calls` records what each was asked for."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, corrupt: str | None = None):
        self.calls: list[tuple[str, str]] = []
        self.repos = {
            "bert-base-uncased": tiny_hf_repo(tmp_path / "src-bert", train_wordpiece_tokenizer(PLOTS, vocab_size=120)),
            "roberta-base": tiny_hf_repo(tmp_path / "src-roberta", train_bpe_tokenizer(PLOTS, vocab_size=300)),
        }
        self.repos["bert-base-uncased"]["README.md"] = b"not a pattern fetch asks for"
        self.corrupt = corrupt

        def snapshot_download(repo_id, *, allow_patterns, cache_dir, **_):
            self.calls.append(("huggingface", repo_id))
            for name, content in self.repos[repo_id].items():
                if any(fnmatch.fnmatch(name, pattern) for pattern in allow_patterns):
                    link = put_in_hub_cache(Path(cache_dir), repo_id, name, content,
                                            corrupt=self.corrupt == f"{repo_id}/{name}")
            return str(link.parent)

        def download_from_hf(model_id, filename, cache_dir=None):
            self.calls.append(("timm", model_id))
            name = model_id.partition("/")[2].partition(".")[0]
            return str(put_in_hub_cache(Path(cache_dir), model_id, filename, tiny_timm_file(name)))

        def download_url_to_file(url, dst, hash_prefix=None, progress=True):
            self.calls.append(("torchvision", f"{Path(url).name} hash_prefix={hash_prefix}"))
            Path(dst).write_bytes(torch_zip())

        def attempt_download_asset(file, *args, **kwargs):
            self.calls.append(("ultralytics", Path(file).name))
            Path(file).write_bytes(torch_zip())
            return str(file)

        monkeypatch.setattr("huggingface_hub.snapshot_download", snapshot_download)
        monkeypatch.setattr("timm.models._hub.download_from_hf", download_from_hf)
        monkeypatch.setattr("torch.hub.download_url_to_file", download_url_to_file)
        monkeypatch.setattr("ultralytics.utils.downloads.attempt_download_asset", attempt_download_asset)
        # The faked asset stands for ultralytics' own file: its digest is the one load_coco knows.
        monkeypatch.setattr(yolo, "KNOWN_COCO_SHA256", {"yolov8n.pt": {hashlib.sha256(torch_zip()).hexdigest()}})


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """An empty cache, pretrained folder, hub cache and torch home of this test's own."""
    monkeypatch.setenv("THESIS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("THESIS_PRETRAINED_DIR", str(tmp_path / "cache" / "pretrained"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "cache" / "torch"))
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "cache" / "huggingface" / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("THESIS_ONLINE", raising=False)
    return tmp_path


def statuses(profile) -> dict[str, str]:
    return {weight.name: weight.status for weight in profile_weights(profile)}


def test_fetch_puts_every_weight_where_its_loader_reads_it(machine, monkeypatch):
    profile = load_profile("full")
    assert statuses(profile) == dict.fromkeys(FULL_WEIGHTS, "missing")
    sources = Sources(machine, monkeypatch)
    monkeypatch.setenv("THESIS_ONLINE", "1")
    report = fetch_weights(profile)
    assert report.ok, report.lines()
    assert sorted(kind for kind, _ in sources.calls) == ["huggingface", "huggingface", "timm", "timm", "torchvision",
                                                        "ultralytics"]
    assert ("torchvision", "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth hash_prefix=258fb6c6") in sources.calls
    assert statuses(profile) == dict.fromkeys(FULL_WEIGHTS, "cached")
    assert weight_problems(profile) == []

    # The manifest records every file's sha256, relative to the cache.
    manifest = json.loads(manifest_path().read_text())["weights"]
    assert set(manifest) == {f"{w.source}:{w.name}" for w in profile_weights(profile)}
    for entry in manifest["huggingface:bert-base-uncased"]["files"]:
        assert entry["sha256"] == file_sha256(machine / "cache" / entry["path"])
    assert not any(entry["path"] == "README.md" for entry in manifest["huggingface:bert-base-uncased"]["files"])

    # Offline again, the loaders read exactly what fetch wrote.
    monkeypatch.delenv("THESIS_ONLINE")
    bert = load_text_backbone(default_config("text_bert", "full").text)
    fetched = load_file(str(hub.text_weight_state("bert-base-uncased").path / "model.safetensors"))
    torch.testing.assert_close(bert.embeddings.word_embeddings.weight, fetched["embeddings.word_embeddings.weight"])
    image = default_config("image_resnet50", "full").image
    resnet = load_image_backbone(type(image)(**{**image.__dict__, "timm_kwargs": TINY_RESNET}))
    fetched = load_file(str(hub.image_weight_state("resnet50").path))
    torch.testing.assert_close(resnet.state_dict()["conv1.weight"], fetched["conv1.weight"])
    assert yolo.coco_weights_path(default_detector_config("yolo", "full")).read_bytes() == torch_zip()

    # A second fetch downloads nothing and checks each file against the manifest.
    sources.calls.clear()
    monkeypatch.setenv("THESIS_ONLINE", "1")
    again = fetch_weights(profile)
    assert again.ok and sources.calls == []
    assert all("sha256 verified" in what for _, what in again.done), again.lines()


def test_standins_are_listed_as_such_and_fetch_replaces_them(machine, monkeypatch):
    pretrained = machine / "cache" / "pretrained"
    folder = pretrained / "bert-base-uncased"
    BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(folder)
    train_wordpiece_tokenizer(PLOTS, vocab_size=60).save_pretrained(folder)
    mark_standin(folder, "test stand-in: a tiny random BERT")
    (pretrained / "timm").mkdir()
    timm_file = pretrained / "timm" / "resnet50.safetensors"
    save_standin_state_dict({"w": torch.zeros(1)}, timm_file, "test stand-in")
    yolo_file = yolo.coco_weights_path(default_detector_config("yolo", "full"))
    yolo_file.parent.mkdir(parents=True)
    yolo_file.write_bytes(torch_zip())
    mark_standin(yolo_file, "test stand-in")

    profile = load_profile("full")
    found = statuses(profile)
    assert [found[name] for name in ("bert-base-uncased", "resnet50", "yolov8n.pt")] == ["stand-in"] * 3
    missing, standins = weight_problems(profile)
    assert missing.startswith("3 pretrained weight(s) missing: roberta-base (text_roberta)")
    assert standins.startswith("3 pretrained weight(s) stand-ins, not the pretrained weights: bert-base-uncased (")
    assert all(name in standins for name in ("bert-base-uncased", "resnet50", "yolov8n.pt"))
    assert all(f"`{FETCH_COMMAND}`" in line for line in (missing, standins))

    # What a run records when it loads one: "stand-in", never "pretrained".
    origin = _fresh_backbone(default_config("text_bert", "full").text, "text", None, None)
    assert origin == {"weights": "stand-in", "name": "bert-base-uncased", "standin": "test stand-in: a tiny random BERT"}
    origin = _fresh_backbone(default_config("text_roberta", "full").text, "text", None, None)
    assert origin == {"weights": "pretrained", "name": "roberta-base"}

    Sources(machine, monkeypatch)
    monkeypatch.setenv("THESIS_ONLINE", "1")
    report = fetch_weights(profile)
    assert report.ok, report.lines()
    replaced = {weight.name for weight, what in report.done if what.startswith("replaced the stand-in")}
    assert replaced == {"bert-base-uncased", "resnet50", "yolov8n.pt"}
    assert not folder.exists() and not timm_file.exists()
    assert statuses(profile) == dict.fromkeys(FULL_WEIGHTS, "cached")
    assert _fresh_backbone(default_config("text_bert", "full").text, "text", None, None)["weights"] == "pretrained"


def test_a_download_that_does_not_match_its_hash_is_refused(machine, monkeypatch):
    Sources(machine, monkeypatch, corrupt="roberta-base/model.safetensors")
    monkeypatch.setenv("THESIS_ONLINE", "1")
    report = fetch_weights(load_profile("full", {"models": ["text_roberta"], "ablations": []}))
    assert not report.ok
    [(weight, why)] = report.failed
    assert weight.name == "roberta-base" and "differs from the hub's" in why


def test_offline_fetch_refuses_in_one_line_naming_the_command(machine, capsys):
    assert main(["weights", "fetch", "--profile", "full"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert FETCH_COMMAND in captured.err


def test_weights_list_json_parses(machine, capsys):
    assert main(["weights", "list", "--json"]) == 1  # nothing cached: not ready
    listing = json.loads(capsys.readouterr().out)
    assert listing["profile"] == "full" and not listing["ok"]
    assert {w["name"]: w["status"] for w in listing["weights"]} == dict.fromkeys(FULL_WEIGHTS, "missing")
    assert {w["source"] for w in listing["weights"]} == {"huggingface", "timm", "torchvision", "ultralytics"}
    assert "text_bert" in next(w for w in listing["weights"] if w["name"] == "bert-base-uncased")["runs"]
    assert main(["weights", "list", "--profile", "smoke"]) == 0  # the packaged MiniLM only
    assert "minilm" in capsys.readouterr().out


def test_missing_weight_errors_name_the_fetch_command(machine):
    with pytest.raises(ThesisError, match=re.escape(FETCH_COMMAND)):
        yolo.load_coco(default_detector_config("yolo", "full"))
    with pytest.raises(ThesisError, match=re.escape(FETCH_COMMAND)):
        frcnn.load_coco(default_detector_config("frcnn", "full"))
    with pytest.raises(OSError, match=re.escape(FETCH_COMMAND)):
        build_model("image_resnet50", size="full")


def test_benchmark_standins_are_marked(machine):
    write_standins(machine / "cache" / "pretrained", PLOTS)
    assert hub.text_weight_state("bert-base-uncased").status == "stand-in"
    assert hub.text_weight_state("roberta-base").status == "stand-in"


def test_safetensors_mark_survives_in_the_file(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"w": torch.ones(2)}, str(path))
    assert standin_reason(path) is None
    mark_standin(path, "tiny")
    assert standin_reason(path) == "tiny"
    torch.testing.assert_close(load_file(str(path))["w"], torch.ones(2))


def test_a_failed_download_is_reported_on_its_line_and_the_others_are_fetched(machine, monkeypatch):
    Sources(machine, monkeypatch)

    def bad_hash(url, dst, hash_prefix=None, progress=True):
        raise RuntimeError(f'invalid hash value (expected "{hash_prefix}", got "0000")')

    monkeypatch.setattr("torch.hub.download_url_to_file", bad_hash)
    monkeypatch.setenv("THESIS_ONLINE", "1")
    profile = load_profile("full")
    report = fetch_weights(profile)
    [(weight, why)] = report.failed
    assert weight.source == "torchvision" and why.startswith("RuntimeError: invalid hash value")
    assert len(report.done) == len(FULL_WEIGHTS) - 1
    [problem] = weight_problems(profile)
    assert problem.startswith(f"1 pretrained weight(s) missing: {weight.name} (objects_frcnn")
    assert main(["weights", "list"]) == 1


@pytest.mark.slow
def test_a_run_that_loads_a_standin_records_it_as_one(tmp_path, monkeypatch, tiny_grid):
    """`thesis run`'s own path: a BERT stand-in saved under the real name trains, and its record says so."""
    folder = tmp_path / "pretrained" / "bert-base-uncased"
    tiny_hf_repo(folder, train_wordpiece_tokenizer(PLOTS, vocab_size=120))
    mark_standin(folder, "test stand-in: a tiny random BERT")
    monkeypatch.setenv("THESIS_PRETRAINED_DIR", str(folder.parent))
    overrides = {"text_bert": {"text_backbone": "bert-base-uncased"}}
    (tmp_path / "grid").mkdir()
    with tiny_grid(tmp_path / "grid", models=["text_bert"], model_overrides=overrides) as grid:
        report = run_grid(load_profile(grid.profile), data_root=str(grid.twin), runs_dir=str(grid.runs))
        assert not report.failed
        record = json.loads(RunsFolder(grid.runs).run("thesis", "text_bert", 0).record.read_text())
    assert record["backbones"]["text"] == {"weights": "stand-in", "name": "bert-base-uncased",
                                           "standin": "test stand-in: a tiny random BERT", "frozen": False}


def test_an_error_page_instead_of_the_yolo_checkpoint_is_not_kept(machine, monkeypatch):
    Sources(machine, monkeypatch)
    monkeypatch.setattr("ultralytics.utils.downloads.attempt_download_asset",
                        lambda file, *a, **k: Path(file).write_bytes(b"<html>rate limited</html>"))
    monkeypatch.setenv("THESIS_ONLINE", "1")
    report = fetch_weights(load_profile("full", {"models": ["objects_yolo"], "ablations": []}))
    [(weight, why)] = report.failed
    assert weight.name == "yolov8n.pt" and "gave no torch checkpoint" in why
    assert not yolo.coco_weights_path(default_detector_config("yolo", "full")).exists()
