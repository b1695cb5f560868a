"""Class vocabularies: which object kinds a detector can name, in the order of its class ids.

A detector can only report what its weights were trained on. The COCO-pretrained detectors of the full
profile (YOLOv8n, Faster R-CNN R50-FPN) know the 80 COCO categories: people (`person`), vehicles (`car`,
`airplane`, `boat`, ...), animals (`horse`, `dog`, ...) and household things (`knife`, `umbrella`,
`suitcase`, `tie`, ...). COCO has no `gun` or any other weapon but the knife, and no scenery (sky, sea,
mountain, building, explosion, fire): a detector feature can say "three people and a horse", never "a
pistol at dusk". What posters of war films, westerns or horror films look like beyond their people, cars
and animals is therefore left to the image encoder.

On the synthetic twin (offline, no COCO weights) both detectors are trained on the twin's own boxes, so
their vocabulary is the twin's object kinds, with `person` first so that the people count reads class 0
under either vocabulary.
"""

from __future__ import annotations

from functools import cache

from thesis_lib.data.twin.poster import DRAWERS

PERSON = "person"


@cache
def coco_classes() -> tuple[str, ...]:
    """The 80 COCO categories in the contiguous order YOLO uses (person = 0).

    Read from torchvision's weight metadata (the 91 original COCO ids, with gaps marked "N/A"), so the
    list comes from the weights' own description rather than a copy in this file.
    """
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

    categories = FasterRCNN_ResNet50_FPN_Weights.DEFAULT.meta["categories"]  # index = COCO category id
    return tuple(name for name in categories if name not in ("__background__", "N/A"))


@cache
def coco_id_to_contiguous() -> dict[int, int]:
    """torchvision's COCO category ids (1..90 with gaps) -> contiguous ids 0..79 of `coco_classes()`."""
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

    categories = FasterRCNN_ResNet50_FPN_Weights.DEFAULT.meta["categories"]
    names = coco_classes()
    return {coco_id: names.index(name) for coco_id, name in enumerate(categories) if name in names}


def twin_classes() -> tuple[str, ...]:
    """The synthetic twin's object kinds: `person` first, then the others in alphabetical order."""
    others = sorted(kind for kind in DRAWERS if kind != PERSON)
    return (PERSON, *others)


def class_index(vocabulary: tuple[str, ...], label: str, where: str) -> int:
    """The id of `label` in `vocabulary`; an unknown label is an error naming `where` it came from."""
    try:
        return vocabulary.index(label)
    except ValueError:
        raise ValueError(
            f"{where}: object label {label!r} is not in the detector vocabulary {list(vocabulary)}") from None
