"""Faster R-CNN (torchvision) as a frozen object detector: COCO-pretrained R50-FPN, or a tiny one trained here.

Posters are small (MM-IMDb's are about 180-300 px wide), so the detector's own resize is told so:
`min_size=image_size` and `max_size=1.5*image_size` keep a 224x336 poster at its size, where torchvision's
default (800 px) would upscale it 3.5x and make R50-FPN take ~3 s per poster on a CPU.

The twin detector is torchvision's `FasterRCNN` around a tiny from-scratch backbone (seven conv-BN-ReLU
layers, stride 16) with one feature map, anchors sized for the twin's objects (about 30-80 px) and a
slim box head: 1.3M parameters, where most of the training time goes into RoIAlign's backward pass,
which is why the box head samples 64 proposals per poster instead of 512.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchvision.models.detection import FasterRCNN, FasterRCNN_ResNet50_FPN_Weights, fasterrcnn_resnet50_fpn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.transforms.v2 import functional as TF

from thesis_lib.data.images import load_poster
from thesis_lib.detection.config import DetectorConfig
from thesis_lib.detection.detections import Detections
from thesis_lib.detection.posters import Poster, as_uint8, poster_shape, shape_batches
from thesis_lib.detection.truth import PosterBoxes, TwinAnnotations
from thesis_lib.detection.vocab import coco_classes, coco_id_to_contiguous
from thesis_lib.errors import ThesisError
from thesis_lib.logs import format_duration
from thesis_lib.models.pretrained import (
    FETCH_COMMAND,
    WeightState,
    file_size,
    mark_standin,
    remove_standin,
    standin_reason,
)
from thesis_lib.offline import is_online

log = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.safetensors"  # the name pipeline and cache expect
MAX_ASPECT = 1.5  # posters are about 2:3, so the longer side may reach 1.5x the shorter one unresized
LOG_EVERY = 25  # training steps between log lines
COCO_WEIGHTS_NAME = f"torchvision {FasterRCNN_ResNet50_FPN_Weights.DEFAULT}"  # ...COCO_V1, what `weights list` shows

# The twin detector's anatomy (architecture, not tuning knobs: changing one invalidates cached weights).
TWIN_WIDTHS = (16, 32, 32, 64, 64, 128, 128)  # conv-BN-ReLU channels; a stride-2 layer wherever the width grows
TWIN_ANCHOR_SIZES = (24, 40, 64)  # px: the twin draws objects of about 30-80 px on a 224x336 poster
TWIN_ASPECT_RATIOS = (0.5, 1.0, 2.0)  # height / width: cars and knives are wide, people and lamps tall
TWIN_BOX_HEAD_WIDTH = 128


def tiny_backbone() -> nn.Sequential:
    """Conv-BN-ReLU stack, stride 16 (a 224x336 poster -> 14x21 cells), `out_channels` as FasterRCNN wants.

    BatchNorm is what lets a small CNN learn these objects from scratch in a few epochs (DESIGN.md).
    """
    layers: list[nn.Module] = []
    previous = 3
    for index, width in enumerate(TWIN_WIDTHS):
        stride = 2 if index == 0 or width != previous else 1
        layers += [nn.Conv2d(previous, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        previous = width
    backbone = nn.Sequential(*layers)
    backbone.out_channels = previous
    return backbone


def build_twin_frcnn(num_classes: int, config: DetectorConfig) -> FasterRCNN:
    """The tiny Faster R-CNN for the twin; `num_classes` object kinds plus torchvision's background class 0."""
    backbone = tiny_backbone()
    return FasterRCNN(
        backbone,
        min_size=config.image_size, max_size=round(MAX_ASPECT * config.image_size),
        rpn_anchor_generator=AnchorGenerator(sizes=(TWIN_ANCHOR_SIZES,), aspect_ratios=(TWIN_ASPECT_RATIOS,)),
        rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300,  # at most 12 objects per poster
        rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100,
        rpn_batch_size_per_image=128, box_batch_size_per_image=64,
        box_roi_pool=MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(backbone.out_channels * 7 * 7, TWIN_BOX_HEAD_WIDTH),
        box_predictor=FastRCNNPredictor(TWIN_BOX_HEAD_WIDTH, num_classes + 1),
        box_nms_thresh=config.nms_iou,
    )


class FrcnnDetector:
    """A frozen Faster R-CNN: posters in, `Detections` (normalised xyxy, contiguous ids, scores) out.

    It detects on `device` (`to`) in float32: posters go there as uint8 and are scaled there, the
    detections come back to the CPU. No autocast: torchvision's box decoding and NMS would then work on
    bf16 box coordinates, and R50-FPN at poster size is cheap on a GPU anyway."""

    precision = "fp32"

    def __init__(self, model: FasterRCNN, vocabulary: tuple[str, ...], config: DetectorConfig,
                 label_to_class: dict[int, int]):
        self.model = model.eval()
        self.vocabulary = vocabulary
        self.config = config
        self.training_report: dict[str, Any] | None = None  # set by get_detector for twin-trained weights
        self.label_to_class = label_to_class  # torchvision label (0 = background) -> contiguous class id
        self.device = next(model.parameters()).device

    @property
    def num_parameters(self) -> int:
        return sum(parameter.numel() for parameter in self.model.parameters())

    def to(self, device: torch.device) -> FrcnnDetector:
        """Detect on `device` from now on (the model moves there)."""
        self.model.to(device)
        self.device = torch.device(device)
        return self

    @torch.no_grad()
    def detect(self, images: Sequence[Poster], score_threshold: float | None = None,
               max_regions: int | None = None) -> list[Detections]:
        """Detections per image (PIL or uint8 (3, H, W)), sorted by score; thresholds default to the config's.

        Posters are batched with posters of their own size only (`posters.shape_batches`): a poster's
        detections do not depend on the others it is detected with."""
        config = self.config
        heads = self.model.roi_heads
        heads.score_thresh = config.score_threshold if score_threshold is None else score_threshold
        heads.detections_per_img = config.max_regions if max_regions is None else max_regions
        heads.nms_thresh = config.nms_iou
        posters = [as_uint8(image) for image in images]  # (3, H, W) uint8 each
        results: list[Detections | None] = [None] * len(posters)
        for batch in shape_batches([poster_shape(poster) for poster in posters], config.batch_size):
            tensors = [_to_float(posters[index].to(self.device, non_blocking=True)) for index in batch]
            for index, tensor, output in zip(batch, tensors, self.model(tensors), strict=True):
                output = {key: value.cpu() for key, value in output.items()}
                results[index] = self._to_detections(output, tensor.shape[-1], tensor.shape[-2])
        return results  # type: ignore[return-value]  # every index was filled

    def _to_detections(self, output: dict[str, Tensor], width: int, height: int) -> Detections:
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        # COCO's 91 category ids have 11 unused ("N/A") slots; a detection there names nothing: drop it.
        known = torch.tensor([int(label) in self.label_to_class for label in output["labels"]], dtype=torch.bool)
        classes = torch.tensor([self.label_to_class[int(label)] for label in output["labels"][known]], dtype=torch.long)
        boxes = (output["boxes"][known].float() / scale).clamp(0.0, 1.0)  # (R, 4)
        return Detections(boxes, classes, output["scores"][known].float())  # torchvision sorts by score already


def _to_float(poster: Tensor) -> Tensor:
    """uint8 (3, H, W) -> float (3, H, W) in [0, 1]; FasterRCNN normalises and resizes by itself."""
    return TF.to_dtype(poster, torch.float32, scale=True)


def _to_tensor(image: Image.Image) -> Tensor:
    """PIL RGB -> float (3, H, W) in [0, 1] (training posters)."""
    return TF.to_dtype(TF.to_image(image), torch.float32, scale=True)


def coco_weights_path() -> Path:
    """Where torchvision looks for (and downloads) the COCO Faster R-CNN R50-FPN weights."""
    url = FasterRCNN_ResNet50_FPN_Weights.DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def coco_weights_state() -> WeightState:
    """Whether the COCO R50-FPN file is where torchvision reads it (and is not a marked stand-in)."""
    path = coco_weights_path()
    if not path.is_file():
        return WeightState("missing", path, 0, COCO_WEIGHTS_NAME)
    if (what := standin_reason(path)) is not None:
        return WeightState("stand-in", path, file_size(path), what)
    return WeightState("cached", path, file_size(path), COCO_WEIGHTS_NAME)


def download_coco() -> Path:
    """Download the COCO R50-FPN weights into `coco_weights_path()` (replacing a marked stand-in), checked by
    torch.hub against the sha256 prefix in the file's name, as torchvision checks it (check_hash=True)."""
    path = coco_weights_path()
    if standin_reason(path) is not None:
        remove_standin(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    match = torch.hub.HASH_REGEX.search(path.name)  # "-258fb6c6." in fasterrcnn_resnet50_fpn_coco-258fb6c6.pth
    torch.hub.download_url_to_file(FasterRCNN_ResNet50_FPN_Weights.DEFAULT.url, str(path),
                                   hash_prefix=match.group(1) if match else None)
    return path


# A stand-in's box classifier: background made unlikely and two classes likely, so that a random detector still
# reports boxes above the score threshold and the region path downstream sees detections, not empty posters.
STANDIN_CLASS_LOGITS = {0: -4.0, 1: 4.0, 3: 3.0}  # torchvision COCO label -> bias (0 background, 1 person, 3 car)


def write_coco_standin(what: str) -> Path:
    """A random R50-FPN with COCO's 91 outputs at `coco_weights_path()`, as the torchvision file is (a pickled
    state dict), marked as a stand-in with `what` (a rehearsal's; `thesis weights fetch` replaces it)."""
    path = coco_weights_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)  # 91 COCO category ids, random weights
    with torch.no_grad():
        bias = model.roi_heads.box_predictor.cls_score.bias  # (91,)
        for label, logit in STANDIN_CLASS_LOGITS.items():
            bias[label] = logit
    torch.save(model.state_dict(), path)
    mark_standin(path, what)
    return path


def load_coco(config: DetectorConfig) -> FrcnnDetector:
    """COCO-pretrained Faster R-CNN R50-FPN (41.8M parameters, box mAP 37.0 on COCO val at 800 px)."""
    path = coco_weights_path()
    if not path.is_file() and not is_online():
        raise ThesisError(
            f"COCO weights {path} not found and downloads are off: run `{FETCH_COMMAND}` on a machine with "
            f"network (then copy the cache, see the README), or place {path.name} there"
        )
    return coco_detector(config, FasterRCNN_ResNet50_FPN_Weights.DEFAULT)


def coco_detector(config: DetectorConfig, weights: FasterRCNN_ResNet50_FPN_Weights | None) -> FrcnnDetector:
    """R50-FPN with COCO's 91 outputs read as the 80 contiguous classes (weights=None: random, for tests)."""
    model = fasterrcnn_resnet50_fpn(
        weights=weights, weights_backbone=None,  # num_classes stays torchvision's 91 COCO category ids
        min_size=config.image_size, max_size=round(MAX_ASPECT * config.image_size),  # no upscaling to 800 px
        box_nms_thresh=config.nms_iou,
    )
    return FrcnnDetector(model, coco_classes(), config, coco_id_to_contiguous())


def twin_label_map(vocabulary: tuple[str, ...]) -> dict[int, int]:
    """The twin detector's labels are class id + 1 (torchvision reserves 0 for background)."""
    return {class_id + 1: class_id for class_id in range(len(vocabulary))}


def load_twin(weights: Path, vocabulary: tuple[str, ...], config: DetectorConfig) -> FrcnnDetector:
    """The twin Faster R-CNN, rebuilt from its architecture and a safetensors state dict."""
    model = build_twin_frcnn(len(vocabulary), config)
    model.load_state_dict(load_file(weights))
    return FrcnnDetector(model, vocabulary, config, twin_label_map(vocabulary))


class _TrainingPosters(Dataset):
    """(poster tensor, torchvision target) pairs; posters are read when asked for, not held in memory."""

    def __init__(self, posters: dict[str, Path], truth: dict[str, PosterBoxes]):
        self.ids = list(truth)
        self.posters = posters
        self.truth = truth

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        movie_id = self.ids[index]
        truth = self.truth[movie_id]
        image = _to_tensor(load_poster(self.posters[movie_id]))  # (3, H, W)
        target = {"boxes": torch.from_numpy(truth.boxes), "labels": torch.from_numpy(truth.classes) + 1}
        return image, target


def _flip(image: Tensor, target: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """Mirror a poster and its boxes left-right (the twin draws objects mirrored at random anyway)."""
    width = image.shape[-1]
    x0, y0, x1, y1 = target["boxes"].unbind(-1)  # (K,) each
    boxes = torch.stack([width - x1, y0, width - x0, y1], dim=-1)  # (K, 4)
    return image.flip(-1), {**target, "boxes": boxes}


def train_twin(config: DetectorConfig, annotations: TwinAnnotations, run_dir: Path) -> dict[str, Any]:
    """Train the tiny Faster R-CNN on the twin's training boxes; write run_dir/weights.safetensors."""
    training = config.training
    assert training is not None, "weights='twin' configs always carry a TwinTraining"
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # the experiments' random streams stay as they were
        torch.manual_seed(training.seed)
        model = build_twin_frcnn(len(annotations.vocabulary), config)
        generator = torch.Generator().manual_seed(training.seed)
        loader = DataLoader(_TrainingPosters(annotations.posters, annotations.train), batch_size=training.batch_size,
                            shuffle=True, drop_last=True, generator=generator, collate_fn=list, num_workers=0)
        steps = training.epochs * len(loader)
        if steps == 0:
            raise ThesisError(
                f"{len(annotations.train)} training posters are fewer than one batch of {training.batch_size}")
        optimizer = torch.optim.AdamW(model.parameters(), lr=training.learning_rate, weight_decay=1e-4)
        # One cycle: a short warm-up keeps the randomly initialised RPN from diverging, then a cosine decay.
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=training.learning_rate, total_steps=steps,
                                                       pct_start=0.1)
        model.train()
        step = 0
        for epoch in range(training.epochs):
            for batch in loader:
                flips = torch.rand(len(batch), generator=generator) < 0.5
                pairs = [_flip(*pair) if flip else pair for pair, flip in zip(batch, flips.tolist(), strict=False)]
                losses = model([image for image, _ in pairs], [target for _, target in pairs])
                loss = sum(losses.values())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                step += 1
                if step == 1 or step % LOG_EVERY == 0 or step == steps:  # the first at once: training has begun
                    parts = " ".join(f"{name.removeprefix('loss_')} {part.item():.3f}" for name, part in losses.items())
                    elapsed = time.perf_counter() - started
                    log.info("frcnn epoch %d step %d/%d loss %.3f (%s) %s so far, eta %s", epoch + 1, step, steps,
                             loss.item(), parts, format_duration(elapsed),
                             format_duration(elapsed / step * (steps - step)))
    seconds = time.perf_counter() - started
    save_file({name: tensor.contiguous() for name, tensor in model.state_dict().items()}, str(run_dir / WEIGHTS_FILE))
    log.info("trained the tiny Faster R-CNN on %d twin posters x %d epochs in %.0f s",
             len(annotations.train), training.epochs, seconds)
    return {"train_seconds": seconds}
