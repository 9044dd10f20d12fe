"""Synthetic scenes: coloured shapes and handwritten digits on textured backgrounds.

Every sample is generated from ``(seed, index)`` alone, so a data set is the same on every
machine, in any order of access, and nothing is downloaded: the digits are scikit-learn's
bundled 8×8 ``load_digits`` images, scaled up.

A sample is ``(image, target)`` in torchvision's detection format:

* ``image``: float32 ``[3, H, W]`` in [0, 1]
* ``target["boxes"]``: float32 ``[N, 4]`` xyxy, tight around the visible mask in pixel-edge
  coordinates (a mask covering columns 3..7 has ``x1 = 3, x2 = 8``)
* ``target["labels"]``: int64 ``[N]``; 0 is kept for the background
* ``target["masks"]``: uint8 ``[N, H, W]`` visible instance masks (later objects occlude earlier ones)
* ``target["semantic_mask"]``: int64 ``[H, W]`` class of every pixel (0 = background)
* ``target["area"]`` (mask pixels, float32), ``target["iscrowd"]`` (int64 zeros), ``target["image_id"]``
"""

from __future__ import annotations

import functools
from numbers import Integral
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .validation import check_boxes, check_positive_int, check_probability, check_tensor

__all__ = [
    "SHAPES",
    "DIGITS",
    "ALL_CLASSES",
    "BACKGROUNDS",
    "SyntheticScenes",
    "SceneClassification",
    "SpuriousScenes",
    "load_scenes",
    "SceneSegmentation",
    "LesionScans",
    "make_scene",
    "make_lesion_scan",
    "three_cats",
    "masks_to_boxes",
    "collate_detection",
    "to_coco",
    "from_coco",
    "rle_encode",
    "rle_decode",
]

SHAPES = ("circle", "square", "triangle", "diamond", "cross")
DIGITS = tuple(f"digit {d}" for d in range(10))
ALL_CLASSES = SHAPES + DIGITS


@functools.lru_cache(maxsize=1)
def _digit_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled handwritten digits: images [1797, 8, 8] in [0, 1] and labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype(np.float32) / 16.0, digits.target


def _shape_mask(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A bool [size, size] mask of one object, drawn in its own square patch."""
    if name.startswith("digit"):
        images, labels = _digit_images()
        candidates = np.flatnonzero(labels == int(name[-1]))
        glyph = torch.from_numpy(images[rng.choice(candidates)])[None, None]
        big = torch.nn.functional.interpolate(glyph, size=(size, size), mode="bilinear", align_corners=False)
        return big[0, 0].numpy() > 0.35
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    c = size / 2
    u, v = (xx - c) / c, (yy - c) / c  # in [-1, 1]
    if name == "circle":
        return u**2 + v**2 <= 0.95**2
    if name == "square":
        return (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)
    if name == "triangle":
        return (v <= 0.85) & (v >= -0.85 + 1.7 * np.abs(u) / 0.95)
    if name == "diamond":
        return np.abs(u) + np.abs(v) <= 0.95
    if name == "cross":
        return ((np.abs(u) <= 0.3) | (np.abs(v) <= 0.3)) & (np.abs(u) <= 0.9) & (np.abs(v) <= 0.9)
    raise ValueError(f"unknown shape {name!r}")


BACKGROUNDS = ("texture", "snow", "grass")


def _background(size: int, rng: np.random.Generator, kind: str = "texture") -> np.ndarray:
    """A background, float32 [H, W, 3] in [0, 1].

    ``texture``: a smooth random colour field plus fine grain (the default);
    ``snow``: bright, bluish white; ``grass``: green with vertical blades (the spurious cues).
    """
    if kind == "texture":
        coarse = torch.from_numpy(rng.uniform(0.15, 0.85, size=(1, 3, 4, 4)).astype(np.float32))
        smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
        image = smooth[0].permute(1, 2, 0).numpy() * 0.6 + 0.2
    elif kind == "snow":
        image = np.broadcast_to(np.array([0.86, 0.9, 0.97], dtype=np.float32), (size, size, 3)).copy()
    elif kind == "grass":
        blades = rng.uniform(-0.12, 0.12, size=(1, size, 1)).astype(np.float32)
        image = np.array([0.25, 0.55, 0.2], dtype=np.float32) + blades * np.array([0.5, 1.0, 0.5], dtype=np.float32)
        image = np.broadcast_to(image, (size, size, 3)).copy()
    else:
        raise ValueError(f"background must be one of {BACKGROUNDS}, got {kind!r}")
    image += rng.normal(0.0, 0.04, size=image.shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0)


def _check_classes(classes: Sequence[str]) -> tuple[str, ...]:
    if isinstance(classes, str) or not isinstance(classes, Sequence) or not classes:
        raise TypeError(f"classes must be a non-empty sequence of class names, got {classes!r}")
    unknown = [c for c in classes if c not in ALL_CLASSES]
    if unknown:
        raise ValueError(f"classes contains unknown class names {unknown}; choose from {list(ALL_CLASSES)}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes contains duplicates: {list(classes)}")
    return tuple(classes)


def masks_to_boxes(masks: Tensor) -> Tensor:
    """Tight xyxy boxes of ``[N, H, W]`` masks in pixel-edge coordinates: ``[N, 4]`` float32.

    Same as ``torchvision.ops.masks_to_boxes`` plus one on x2 and y2, so that a one-pixel mask
    has a box of area 1 (torchvision's detectors need boxes of positive width and height).
    """
    masks = check_tensor(masks, "masks", ndim=3)
    if masks.shape[0] and not bool(masks.flatten(1).any(1).all()):
        raise ValueError("masks contains an empty mask, which has no box")
    boxes = torch.zeros((masks.shape[0], 4), dtype=torch.float32)
    for i, m in enumerate(masks.bool()):
        ys, xs = torch.nonzero(m, as_tuple=True)
        boxes[i] = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
    return boxes


def make_scene(
    seed: int,
    image_size: int = 128,
    classes: Sequence[str] = SHAPES,
    num_objects: tuple[int, int] = (1, 4),
    object_size: tuple[int, int] = (16, 48),
    max_overlap: float = 0.3,
    background: str = "texture",
    image_id: int = 0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Draw one scene; see the module docstring for the format. Labels are 1 + index in ``classes``.

    Args:
        seed: any non-negative int; the same seed gives the same scene.
        num_objects: inclusive range of the number of objects.
        object_size: inclusive range of an object's side in pixels.
        max_overlap: largest IoU allowed between a new object's box and an earlier one.
        background: ``"texture"``, ``"snow"`` or ``"grass"``.
    """
    seed = check_positive_int(seed, "seed", allow_zero=True)
    image_size = check_positive_int(image_size, "image_size")
    classes = _check_classes(classes)
    lo_n, hi_n = _check_range(num_objects, "num_objects", allow_zero=True)
    lo_s, hi_s = _check_range(object_size, "object_size")
    if hi_s > image_size:
        raise ValueError(f"object_size {object_size} does not fit in an image of {image_size} pixels")
    max_overlap = check_probability(max_overlap, "max_overlap")

    rng = np.random.default_rng(seed)
    # the background has a random stream of its own, so the objects do not depend on its kind
    image = _background(image_size, np.random.default_rng([seed, 1]), background)
    labels: list[int] = []
    masks: list[np.ndarray] = []
    placed: list[tuple[int, int, int, int]] = []
    wanted = int(rng.integers(lo_n, hi_n + 1))
    for _ in range(50 * max(wanted, 1)):
        if len(labels) == wanted:
            break
        size = int(rng.integers(lo_s, hi_s + 1))
        x0, y0 = (int(v) for v in rng.integers(0, image_size - size + 1, size=2))
        box = (x0, y0, x0 + size, y0 + size)
        if any(_iou(box, other) > max_overlap for other in placed):
            continue
        class_index = int(rng.integers(len(classes)))
        patch = _shape_mask(classes[class_index], size, rng)
        if not patch.any():
            continue  # a glyph only a few pixels wide can vanish; such an object would have no box
        full = np.zeros((image_size, image_size), dtype=bool)
        full[y0 : y0 + size, x0 : x0 + size] = patch
        visible_before = [m & ~full for m in masks]
        if any(after.sum() < 0.5 * before.sum() for after, before in zip(visible_before, masks)):
            continue  # would hide more than half of an earlier object
        masks = visible_before
        image = _paint(image, full, rng)
        masks.append(full)
        labels.append(class_index + 1)
        placed.append(box)

    return _scene(image, masks, labels, image_id)


def _paint(image: np.ndarray, full: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` [H, W, 3] with the pixels of ``full`` [H, W] painted in a random saturated, slightly shaded colour."""
    colour = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
    colour[rng.integers(3)] = rng.choice([0.05, 0.95])  # saturated, so objects stand out
    shade = 1.0 - 0.15 * rng.random((*full.shape, 1)).astype(np.float32)
    return np.where(full[..., None], colour * shade, image)


def _scene(image: np.ndarray, masks: list[np.ndarray], labels: list[int], image_id: int) -> tuple[Tensor, dict[str, Tensor]]:
    """An image [H, W, 3] and its visible object masks and labels as a sample (the module docstring's format)."""
    image_size = image.shape[0]
    mask_tensor = torch.from_numpy(np.stack(masks)).to(torch.uint8) if masks else torch.zeros((0, image_size, image_size), dtype=torch.uint8)
    semantic = torch.zeros((image_size, image_size), dtype=torch.int64)
    for label, m in zip(labels, mask_tensor):
        semantic[m.bool()] = label
    target = {
        "boxes": masks_to_boxes(mask_tensor),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "masks": mask_tensor,
        "semantic_mask": semantic,
        "area": mask_tensor.flatten(1).sum(1).float(),
        "iscrowd": torch.zeros(len(labels), dtype=torch.int64),
        "image_id": torch.tensor(image_id, dtype=torch.int64),
    }
    return torch.from_numpy(image).permute(2, 0, 1).contiguous(), target


THREE_CATS_LAYOUT = (  # (x0, y0, side) in a 128-pixel image; the first two cats touch, the third stands apart
    (10, 14, 44), (48, 22, 40), (78, 74, 38),
)
THREE_CATS_OTHER = (14, 76, 36)


def three_cats(
    seed: int = 0,
    image_size: int = 128,
    cat: str = "circle",
    other: str | None = "square",
    classes: Sequence[str] = SHAPES,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The "three cats" picture: one scene with three objects of the same class (``cat``), two of
    them touching, and one object of another class (``other``; ``None``: none).

    It puts semantic and instance segmentation side by side: the semantic mask (one class per
    pixel) merges the two touching cats into one blob of class ``cat``; the instance masks keep
    the three apart. Same format as ``make_scene`` (labels are 1 + index in ``classes``, so with
    the default ``SHAPES`` the zoo's detectors know them); ``seed`` picks the background and
    colours, the layout is fixed (scaled to ``image_size``), the other object drawn first.
    """
    seed = check_positive_int(seed, "seed", allow_zero=True)
    image_size = check_positive_int(image_size, "image_size")
    if image_size < 32:
        raise ValueError(f"image_size must be >= 32 for the three cats to be visible, got {image_size}")
    classes = _check_classes(classes)
    for name, value in (("cat", cat), ("other", other)):
        if (value is not None or name == "cat") and value not in classes:
            raise ValueError(f"{name} must be one of classes {list(classes)}, got {value!r}")
    rng = np.random.default_rng([seed, 3])
    image = _background(image_size, np.random.default_rng([seed, 1]))
    objects = ([] if other is None else [(other, THREE_CATS_OTHER)]) + [(cat, box) for box in THREE_CATS_LAYOUT]
    masks: list[np.ndarray] = []
    labels: list[int] = []
    scale = image_size / 128
    for name, (x0, y0, side) in objects:
        x0, y0, side = int(x0 * scale), int(y0 * scale), max(int(side * scale), 1)
        full = np.zeros((image_size, image_size), dtype=bool)
        full[y0 : y0 + side, x0 : x0 + side] = _shape_mask(name, side, rng)
        masks = [m & ~full for m in masks]
        image = _paint(image, full, rng)
        masks.append(full)
        labels.append(classes.index(name) + 1)
    return _scene(image, masks, labels, image_id=0)


def _check_range(value: Any, name: str, allow_zero: bool = False) -> tuple[int, int]:
    if not isinstance(value, Sequence) or len(value) != 2:
        raise TypeError(f"{name} must be a pair (low, high), got {value!r}")
    lo = check_positive_int(value[0], f"{name}[0]", allow_zero=allow_zero)
    hi = check_positive_int(value[1], f"{name}[1]", allow_zero=allow_zero)
    if lo > hi:
        raise ValueError(f"{name} must have low <= high, got {value!r}")
    return lo, hi


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _scene_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _check_index(index: object, length: int) -> int:
    if isinstance(index, bool) or not isinstance(index, Integral):
        raise TypeError(f"index must be an int, got {type(index).__name__}")
    if not -length <= index < length:
        raise IndexError(f"index {index} is out of range for {length} scenes")
    return int(index) % length


class SyntheticScenes(Dataset):
    """``length`` seeded scenes; ``dataset[i]`` is ``make_scene`` with a seed derived from (seed, i).

    ``class_names`` is ``("background", *classes)``: index it with a label.
    """

    def __init__(
        self,
        length: int,
        seed: int = 0,
        image_size: int = 128,
        classes: Sequence[str] = SHAPES,
        num_objects: tuple[int, int] = (1, 4),
        object_size: tuple[int, int] = (16, 48),
        max_overlap: float = 0.3,
    ) -> None:
        self.length = check_positive_int(length, "length")
        self.seed = check_positive_int(seed, "seed", allow_zero=True)
        self.classes = _check_classes(classes)
        self.class_names = ("background", *self.classes)
        self.options = dict(
            image_size=image_size, classes=self.classes, num_objects=num_objects, object_size=object_size, max_overlap=max_overlap
        )
        make_scene(0, **self.options)  # validate the options now, not at the first access

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        index = _check_index(index, self.length)
        return make_scene(_scene_seed(self.seed, index), image_id=index, **self.options)


def collate_detection(batch: Sequence[tuple[Tensor, dict]]) -> tuple[list[Tensor], list[dict]]:
    """Collate detection samples into ``(list of images, list of targets)`` (images may differ in size)."""
    images, targets = zip(*batch)
    return list(images), list(targets)


# --------------------------------------------------------------------------- COCO json


def rle_encode(mask: Tensor) -> dict[str, Any]:
    """Uncompressed COCO run-length encoding of a ``[H, W]`` mask (column-major, starts with zeros)."""
    mask = check_tensor(mask, "mask", ndim=2)
    flat = mask.bool().t().reshape(-1).numpy()
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(edges).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def rle_decode(rle: dict[str, Any]) -> Tensor:
    """Inverse of :func:`rle_encode`: a uint8 ``[H, W]`` mask."""
    if not isinstance(rle, dict) or "size" not in rle or not isinstance(rle.get("counts"), list):
        raise ValueError("rle must be a dict with 'size' and an uncompressed 'counts' list")
    h, w = rle["size"]
    values = np.arange(len(rle["counts"])) % 2
    flat = np.repeat(values, rle["counts"]).astype(np.uint8)
    if flat.size != h * w:
        raise ValueError(f"rle counts sum to {flat.size}, expected {h}×{w} = {h * w}")
    return torch.from_numpy(flat.reshape(w, h).T.copy())


def to_coco(samples: Sequence[tuple[Tensor, dict[str, Tensor]]], class_names: Sequence[str]) -> dict[str, Any]:
    """COCO-format ground truth (images, annotations with xywh boxes and RLE masks, categories).

    ``class_names[0]`` is the background; category ids are the labels. pycocotools reads the result.
    """
    images, annotations = [], []
    for i, (image, target) in enumerate(samples):
        boxes = check_boxes(target["boxes"], f"samples[{i}]['boxes']")
        h, w = image.shape[-2:]
        image_id = int(target.get("image_id", i))
        images.append({"id": image_id, "height": int(h), "width": int(w), "file_name": f"{image_id:06d}.png"})
        masks = target.get("masks")
        areas = target.get("area", (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
        crowd = target.get("iscrowd", torch.zeros(len(boxes), dtype=torch.int64))
        for j, (box, label) in enumerate(zip(boxes.tolist(), target["labels"].tolist())):
            ann = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": int(label),
                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                "area": float(areas[j]),
                "iscrowd": int(crowd[j]),
            }
            if masks is not None:
                ann["segmentation"] = rle_encode(masks[j])
            annotations.append(ann)
    categories = [{"id": k, "name": name} for k, name in enumerate(class_names) if k > 0]
    return {"images": images, "annotations": annotations, "categories": categories}


def from_coco(coco: dict[str, Any]) -> list[dict[str, Tensor]]:
    """Targets (one dict per image, in the order of ``coco["images"]``) from a COCO dict."""
    for key in ("images", "annotations"):
        if not isinstance(coco, dict) or key not in coco:
            raise ValueError(f"coco must be a dict with an {key!r} list")
    by_image: dict[int, list[dict]] = {img["id"]: [] for img in coco["images"]}
    for ann in coco["annotations"]:
        if ann["image_id"] not in by_image:
            raise ValueError(f"annotation {ann.get('id')} refers to unknown image_id {ann['image_id']}")
        by_image[ann["image_id"]].append(ann)
    with_masks = any("segmentation" in ann for ann in coco["annotations"])
    targets = []
    for img in coco["images"]:
        anns = by_image[img["id"]]
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], dtype=torch.float32).reshape(-1, 4)
        target = {
            "boxes": boxes,
            "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
            "area": torch.tensor([a["area"] for a in anns], dtype=torch.float32),
            "iscrowd": torch.tensor([a.get("iscrowd", 0) for a in anns], dtype=torch.int64),
            "image_id": torch.tensor(img["id"], dtype=torch.int64),
        }
        if with_masks:  # every image gets masks, also one without annotations: [0, H, W]
            masks = [rle_decode(a["segmentation"]) for a in anns]
            target["masks"] = torch.stack(masks) if masks else torch.zeros((0, img["height"], img["width"]), dtype=torch.uint8)
        targets.append(target)
    return targets


class SceneClassification(Dataset):
    """One object per scene, for classifiers: ``dataset[i] = (image, class_index)``.

    ``class_index`` is in ``[0, len(classes))`` (no background class); :meth:`scene` gives the image with
    its full detection target (its box lets explanations be scored).
    """

    def __init__(
        self,
        length: int,
        seed: int = 0,
        image_size: int = 64,
        classes: Sequence[str] = SHAPES,
        object_size: tuple[int, int] = (20, 44),
        background: str = "texture",
    ) -> None:
        self.length = check_positive_int(length, "length")
        self.seed = check_positive_int(seed, "seed", allow_zero=True)
        self.classes = _check_classes(classes)
        self.options = dict(image_size=image_size, classes=self.classes, num_objects=(1, 1), object_size=object_size, background=background)
        make_scene(0, **self.options)  # validate the options now, not at the first access

    def __len__(self) -> int:
        return self.length

    def scene(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        """Scene ``index`` with its full detection target (boxes, masks, …)."""
        index = _check_index(index, self.length)
        return make_scene(_scene_seed(self.seed, index), image_id=index, **self.options)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image, target = self.scene(index)
        return image, int(target["labels"][0]) - 1


class SpuriousScenes(SceneClassification):
    """Two classes whose background is a shortcut: the "wolf on snow vs husky on grass" story.

    Class 0 appears on snow and class 1 on grass with probability ``correlation``, otherwise the
    other way round. ``split="test"`` flips the correlation to ``1 - correlation``: a classifier
    that learned the background instead of the object fails there. The target's ``background``
    is the index of the scene's background in ``SpuriousScenes.BACKGROUNDS``.
    """

    BACKGROUNDS = ("snow", "grass")

    def __init__(
        self,
        length: int,
        seed: int = 0,
        split: str = "train",
        correlation: float = 0.95,
        image_size: int = 64,
        classes: Sequence[str] = ("digit 3", "digit 8"),
        object_size: tuple[int, int] = (18, 30),
    ) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if isinstance(classes, str) or len(classes) != 2:
            raise ValueError(f"classes must name exactly two classes, got {classes!r}")
        self.split = split
        self.correlation = check_probability(correlation, "correlation")
        super().__init__(length, seed, image_size, classes, object_size, background="snow")

    def scene(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        image, target = super().scene(index)  # drawn on snow
        label = int(target["labels"][0]) - 1
        scene_seed = _scene_seed(self.seed, _check_index(index, self.length))
        p_usual = self.correlation if self.split == "train" else 1.0 - self.correlation
        usual = np.random.default_rng([scene_seed, 2]).random() < p_usual
        background = label if usual else 1 - label
        if background == 1:  # repaint the background as grass, keeping the object's pixels
            size = image.shape[-1]
            grass = torch.from_numpy(_background(size, np.random.default_rng([scene_seed, 1]), "grass")).permute(2, 0, 1)
            image = torch.where(target["masks"].bool().any(0), image, grass)
        target["background"] = torch.tensor(background, dtype=torch.int64)
        return image, target


def load_scenes(dataset: SceneClassification) -> dict[str, Tensor | list[Tensor]]:
    """Every scene of a classification data set as one batch, with what explanations are scored against.

    Returns:
        dict: ``images`` Tensor[N, 3, H, W]; ``labels`` int64 Tensor[N], the classifier's classes
        (``dataset[i][1]``, from 0); ``masks`` bool Tensor[N, H, W], the object's visible mask;
        ``boxes`` list of N Tensor[1, 4] (xyxy); and, for :class:`SpuriousScenes`, ``backgrounds``
        int64 Tensor[N], indices in ``SpuriousScenes.BACKGROUNDS``.
    """
    if not isinstance(dataset, SceneClassification):
        raise TypeError(f"dataset must be a SceneClassification (or SpuriousScenes), got {type(dataset).__name__}")
    scenes = [dataset.scene(i) for i in range(len(dataset))]
    batch: dict[str, Tensor | list[Tensor]] = {
        "images": torch.stack([image for image, _ in scenes]),
        "labels": torch.stack([target["labels"][0] - 1 for _, target in scenes]),
        "masks": torch.stack([target["masks"][0].bool() for _, target in scenes]),
        "boxes": [target["boxes"] for _, target in scenes],
    }
    if isinstance(dataset, SpuriousScenes):
        batch["backgrounds"] = torch.stack([target["background"] for _, target in scenes])
    return batch


class SceneSegmentation(SyntheticScenes):
    """The synthetic scenes for semantic segmentation: ``dataset[i] = (image [3, H, W], mask [H, W])``.

    ``mask`` is the int64 ``semantic_mask`` (0 = background, 1 + index in ``classes`` for an object);
    the keyword arguments are ``SyntheticScenes``'s; :meth:`scene` gives the full detection target.
    """

    def scene(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        """Scene ``index`` with its full target (boxes, instance masks, semantic mask)."""
        return super().__getitem__(index)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, target = self.scene(index)
        return image, target["semantic_mask"]


def _tissue(size: int, rng: np.random.Generator) -> np.ndarray:
    """Grey-level tissue-like texture ``[H, W]`` in about [0.2, 0.7]: smooth noise at three scales plus grain."""
    from scipy.ndimage import gaussian_filter

    field = np.zeros((size, size), dtype=np.float64)
    for sigma, amplitude in ((size / 8, 0.10), (size / 24, 0.05), (1.0, 0.03)):
        noise = gaussian_filter(rng.normal(size=(size, size)), sigma, mode="wrap")
        field += amplitude * noise / (noise.std() + 1e-12)
    return (0.45 + field + rng.normal(0.0, 0.02, size=(size, size))).astype(np.float32)


def _lesion_mask(size: int, centre: tuple[float, float], radius: float, rng: np.random.Generator) -> np.ndarray:
    """An irregular blob ``[H, W]`` bool: a disc whose radius wobbles with three random harmonics of the angle."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    dy, dx = ys - centre[0], xs - centre[1]
    angle = np.arctan2(dy, dx)
    wobble = sum(rng.uniform(0.0, 0.15) * np.cos(k * angle + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    return np.hypot(dy, dx) < radius * (1.0 + wobble)


def make_lesion_scan(
    seed: int,
    image_size: int = 64,
    num_lesions: tuple[int, int] = (1, 3),
    lesion_size: tuple[int, int] = (4, 20),
    contrast: tuple[float, float] = (0.1, 0.35),
) -> tuple[Tensor, Tensor]:
    """One grey-level "scan": tissue texture with lesions brighter than their surroundings.

    Args:
        seed: any non-negative int; the same seed gives the same scan.
        num_lesions: inclusive range of the number of lesions (they never touch).
        lesion_size: inclusive range of a lesion's mean diameter in pixels.
        contrast: range of a lesion's brightness above the tissue (in [0, 1] grey levels).

    Returns:
        (Tensor[3, H, W] float32 in [0, 1], the grey level in all three channels,
        Tensor[K, H, W] uint8 one mask per lesion).
    """
    seed = check_positive_int(seed, "seed", allow_zero=True)
    image_size = check_positive_int(image_size, "image_size")
    lo_n, hi_n = _check_range(num_lesions, "num_lesions", allow_zero=True)
    lo_s, hi_s = _check_range(lesion_size, "lesion_size")
    if hi_s > image_size // 2:
        raise ValueError(f"lesion_size {lesion_size} is too large for an image of {image_size} pixels (at most {image_size // 2})")
    if not isinstance(contrast, Sequence) or len(contrast) != 2:
        raise TypeError(f"contrast must be a pair (low, high), got {contrast!r}")
    lo_c, hi_c = (check_probability(c, f"contrast[{i}]") for i, c in enumerate(contrast))
    if lo_c > hi_c:
        raise ValueError(f"contrast must have low <= high, got {contrast!r}")
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    image = _tissue(image_size, np.random.default_rng([seed, 1]))
    wanted = int(rng.integers(lo_n, hi_n + 1))
    masks: list[np.ndarray] = []
    placed: list[tuple[float, float, float]] = []
    for _ in range(50 * max(wanted, 1)):
        if len(masks) == wanted:
            break
        radius = rng.uniform(lo_s, hi_s) / 2
        margin = 1.2 * radius + 1
        cy, cx = rng.uniform(margin, image_size - margin, size=2)
        if any(np.hypot(cy - y, cx - x) < 1.3 * (radius + r) + 2 for y, x, r in placed):
            continue
        mask = _lesion_mask(image_size, (cy, cx), radius, rng)
        if not mask.any():
            continue
        spots = 1.0 + 0.3 * gaussian_filter(rng.normal(size=mask.shape), 1.5)  # the lesion has a texture of its own
        soft = gaussian_filter(mask.astype(np.float64), 0.7)  # its edge is a little blurred, as in a real scan
        image = image + (rng.uniform(lo_c, hi_c) * soft * spots).astype(np.float32)
        masks.append(mask)
        placed.append((cy, cx, radius))
    grey = torch.from_numpy(np.clip(image, 0.0, 1.0))
    lesions = torch.from_numpy(np.stack(masks)).to(torch.uint8) if masks else torch.zeros((0, image_size, image_size), dtype=torch.uint8)
    return grey.expand(3, -1, -1).contiguous(), lesions


class LesionScans(Dataset):
    """``length`` seeded grey-level scans with lesions: ``dataset[i] = (image [3, H, W], mask [H, W])``.

    ``mask`` is int64, 1 on a lesion and 0 elsewhere; :meth:`lesions` gives one mask per lesion
    (to score small and large lesions apart). Keyword arguments: see ``make_lesion_scan``.
    """

    class_names = ("background", "lesion")

    def __init__(
        self,
        length: int,
        seed: int = 0,
        image_size: int = 64,
        num_lesions: tuple[int, int] = (1, 3),
        lesion_size: tuple[int, int] = (4, 20),
        contrast: tuple[float, float] = (0.1, 0.35),
    ) -> None:
        self.length = check_positive_int(length, "length")
        self.seed = check_positive_int(seed, "seed", allow_zero=True)
        self.options = dict(image_size=image_size, num_lesions=num_lesions, lesion_size=lesion_size, contrast=contrast)
        make_lesion_scan(0, **self.options)  # validate the options now, not at the first access

    def __len__(self) -> int:
        return self.length

    def lesions(self, index: int) -> tuple[Tensor, Tensor]:
        """Scan ``index`` and its per-lesion masks: ``(image [3, H, W], uint8 [K, H, W])``."""
        index = _check_index(index, self.length)
        return make_lesion_scan(_scene_seed(self.seed, index), **self.options)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, lesions = self.lesions(index)
        return image, lesions.bool().any(0).to(torch.int64)
