"""The course's model zoo: small networks trained by the course's own code on its own data.

``load(name)`` returns a trained model from ``data/weights/`` (its sha256 checked against the
manifest); ``train(name)`` reproduces the checkpoint and records its test metrics in the manifest:

    python -m course_utils.zoo train --all      # what `make weights` runs
    torchrun --standalone --nproc_per_node=2 -m course_utils.zoo train --all   # `make weights NPROC=2`

Under ``torchrun`` each process trains on its share of every epoch (``fit`` is data-parallel: the
batch size is per process, so N processes take N times larger steps); rank 0 evaluates and writes.

Classifiers and detectors go through the same ``train``/``evaluate``/``load``: each
``ZooModel`` says how its data are batched (``collate``), which loss ``fit`` minimizes
(``loss=None``: the model returns its own dict of losses, as detectors do), which optimizer
and which score (accuracy, or COCO mAP for a detector). A detector's manifest entry also has a
``data`` field, the data set class and keyword arguments that build its test set
(``load_test_set(name, seed=...)`` draws fresh scenes of the same kind). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from . import data as _data
from . import distributed, imagenet
from .data import SHAPES, SceneClassification, SpuriousScenes, collate_detection
from .detection import YOLO, FasterRCNN, MaskRCNN, RetinaNet
from .detection.ssd import build_ssd
from .metrics import coco_evaluate, segmentation_evaluate
from .segmentation import FCN, UNet, segmentation_loss
from .training import fit, load_checkpoint, save_checkpoint, seed_everything

__all__ = [
    "SmallCNN", "MODELS", "WEIGHTS_DIR", "ZooModel", "DataSpec", "load", "train", "evaluate", "load_test_set",
    "materialize", "draw_boxes", "draw_masks", "draw_instances", "accuracy", "detection_map", "segmentation_metrics",
    "instance_map", "manifest", "PRETRAINED",
]

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "data" / "weights"
MANIFEST = "manifest.json"


class SmallCNN(nn.Module):
    """Four conv blocks, global average pooling, one linear layer: a GAP + FC net (CAM applies).

    Input ``[N, 3, H, W]``; ``features`` gives ``[N, 2·width, H/8, W/8]``; output ``[N, num_classes]`` logits.
    """

    def __init__(self, num_classes: int, width: int = 16) -> None:
        super().__init__()

        def block(c_in: int, c_out: int, pool: bool) -> list[nn.Module]:
            layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            return layers + ([nn.MaxPool2d(2)] if pool else [])

        self.features = nn.Sequential(
            *block(3, width, True), *block(width, 2 * width, True), *block(2 * width, 4 * width, True), *block(4 * width, 4 * width, False)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def materialize(dataset: Dataset, desc: str = "drawing scenes") -> TensorDataset:
    """Draw every sample once into memory: ``TensorDataset(images [N, 3, H, W], labels [N])``."""
    images, labels = zip(*(dataset[i] for i in tqdm(range(len(dataset)), desc=desc, leave=False, disable=None)))
    return TensorDataset(torch.stack(images), torch.tensor(labels, dtype=torch.int64))


BOX_KEYS = ("boxes", "labels", "area", "iscrowd", "image_id")


def draw_boxes(dataset: Dataset, desc: str = "drawing scenes") -> list[tuple[Tensor, dict[str, Tensor]]]:
    """Draw every detection sample once into memory: ``(image, target)`` with the box entries of the
    target only (``BOX_KEYS``; the masks, which a box detector does not read, would be most of the memory)."""
    samples = (dataset[i] for i in tqdm(range(len(dataset)), desc=desc, leave=False, disable=None))
    return [(image, {k: v for k, v in target.items() if k in BOX_KEYS}) for image, target in samples]


def draw_masks(dataset: Dataset, desc: str = "drawing scenes") -> TensorDataset:
    """Draw every segmentation sample once into memory: ``TensorDataset(images [N, 3, H, W], masks [N, H, W])``."""
    images, masks = zip(*(dataset[i] for i in tqdm(range(len(dataset)), desc=desc, leave=False, disable=None)))
    return TensorDataset(torch.stack(images), torch.stack(masks))
def draw_instances(dataset: Dataset, desc: str = "drawing scenes") -> list[tuple[Tensor, dict[str, Tensor]]]:
    """``draw_boxes`` keeping the instance ``masks`` too (what an instance segmenter trains on and is scored by)."""
    samples = (dataset[i] for i in tqdm(range(len(dataset)), desc=desc, leave=False, disable=None))
    return [(image, {k: v for k, v in target.items() if k in (*BOX_KEYS, "masks")}) for image, target in samples]


@torch.no_grad()
def accuracy(model: nn.Module, data: TensorDataset, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` on ``data``."""
    model.eval()
    correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in DataLoader(data, batch_size=batch_size))
    return correct / len(data)


@torch.no_grad()
def detection_map(model: nn.Module, data: Dataset, batch_size: int = 50) -> dict[str, float]:
    """COCO box mAP of a detector (eval mode, torchvision's inputs/outputs) on ``(image, target)`` samples."""
    model.eval()
    preds, targets = [], []
    for images, batch_targets in DataLoader(data, batch_size=batch_size, collate_fn=collate_detection):
        preds += model(images)
        targets += batch_targets
    return coco_evaluate(preds, targets, iou_type="bbox")


def segmentation_metrics(model: nn.Module, data: Dataset) -> dict[str, float]:
    """``metrics.segmentation_evaluate`` of a segmenter on ``(image, mask)`` samples, as floats; with two
    classes (background and one foreground class) also ``foreground_dice``, the Dice of class 1."""
    num_classes = model.num_classes
    scores = segmentation_evaluate(model, data, num_classes)
    metrics = {k: v for k, v in scores.items() if isinstance(v, float)}
    if num_classes == 2:
        metrics["foreground_dice"] = float(scores["dice"][1])
    return metrics
@torch.no_grad()
def instance_map(model: nn.Module, data: Dataset, batch_size: int = 25) -> dict[str, float]:
    """COCO box mAP (``map``, ``map_50``, ...) and mask mAP (``mask_map``, ``mask_map_50``, ...) of an
    instance segmenter (eval mode, torchvision's ``MaskRCNN`` outputs; a mask is its pixels > 0.5)."""
    model.eval()
    preds, targets = [], []
    for images, batch_targets in DataLoader(data, batch_size=batch_size, collate_fn=collate_detection):
        preds += [{**p, "masks": p["masks"][:, 0] > 0.5} for p in model(images)]
        targets += batch_targets
    box = coco_evaluate(preds, targets, iou_type="bbox")
    mask = coco_evaluate(preds, targets, iou_type="segm")
    return {**box, **{f"mask_{k}": v for k, v in mask.items()}}


@dataclass(frozen=True)
class DataSpec:
    """A data set given by its class in ``course_utils.data`` and keyword arguments, so that it can
    be written into the manifest (``to_json``) and rebuilt from it, with a fresh seed if wanted."""

    dataset: str
    kwargs: Mapping[str, Any]

    def __call__(self, **overrides: Any) -> Dataset:
        return getattr(_data, self.dataset)(**{**self.kwargs, **overrides})

    def to_json(self) -> dict[str, Any]:
        def plain(v: Any) -> Any:
            return list(v) if isinstance(v, tuple) else v

        return {"dataset": self.dataset, "kwargs": {k: plain(v) for k, v in self.kwargs.items()}}


@dataclass(frozen=True)
class ZooModel:
    """How to build, train and evaluate one zoo model.

    ``test_sets`` maps a name to a factory of a test set. ``score(model, data)`` is computed on
    each test set after ``cache`` drew it into memory: a float recorded under the test set's name,
    or (with ``metric_names``, for a single test set) a dict of which those keys are recorded.
    Training is ``fit(model, DataLoader(cache(train_set()), batch_size, shuffle, collate_fn=collate),
    loss, optimizer(model.parameters(), lr=lr), epochs)`` with a cosine learning-rate schedule.
    """

    build: Callable[[], nn.Module]
    train_set: Callable[[], Dataset]
    test_sets: dict[str, Callable[[], Dataset]]
    epochs: int
    lr: float = 3e-3
    seed: int = 0
    description: str = ""
    classes: tuple[str, ...] = field(default_factory=tuple)
    loss: Callable[[Any, Any], Tensor] | None = nn.functional.cross_entropy
    optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.Adam
    batch_size: int = 64
    collate: Callable[[list], Any] | None = None
    cache: Callable[..., Dataset] = materialize
    score: Callable[[nn.Module, Dataset], float | Mapping[str, float]] = accuracy
    metric_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.metric_names and len(self.test_sets) != 1:
            raise ValueError("metric_names go with a single test set (they name the keys of its score)")

    @property
    def metrics(self) -> tuple[str, ...]:
        """The names of the metrics recorded in the manifest."""
        return self.metric_names or tuple(self.test_sets)

    @property
    def data(self) -> dict[str, Any] | None:
        """The manifest's ``data`` field: how to build the (single) test set, when it is a ``DataSpec``."""
        specs = list(self.test_sets.values())
        return specs[0].to_json() if len(specs) == 1 and isinstance(specs[0], DataSpec) else None


SCENES_TRAIN = DataSpec("SyntheticScenes", dict(length=1000, seed=1, image_size=128, classes=SHAPES))
SCENES_TEST = DataSpec("SyntheticScenes", dict(
    length=200, seed=2, image_size=128, classes=SHAPES, num_objects=(1, 4), object_size=(16, 48), max_overlap=0.3,
))


def _detector(
    build: Callable[[], nn.Module], epochs: int, batch_size: int, description: str, lr: float = 3e-3, masks: bool = False,
) -> ZooModel:
    """A detector of the zoo: trained on 1000 scenes, scored by COCO mAP on 200 held-out ones
    (``masks=True``: an instance segmenter, trained on the masks too and also scored by mask mAP)."""
    return ZooModel(
        build=build, train_set=SCENES_TRAIN, test_sets={"test": SCENES_TEST}, epochs=epochs, lr=lr,
        description=description, classes=("background", *SHAPES), loss=None, optimizer=torch.optim.AdamW,
        batch_size=batch_size, collate=collate_detection, cache=draw_instances if masks else draw_boxes,
        score=instance_map if masks else detection_map,
        metric_names=("map_50", "map", "map_75") + (("mask_map_50", "mask_map", "mask_map_75") if masks else ()),
    )


def _segmenter(
    build: Callable[[], nn.Module], train_set: DataSpec, test_set: DataSpec, epochs: int, description: str,
    classes: tuple[str, ...] = ("background", *SHAPES), metric_names: tuple[str, ...] = ("mean_iou", "boundary_iou", "pixel_accuracy"),
    batch_size: int = 32,
) -> ZooModel:
    """A segmenter of the zoo: pixel-wise cross-entropy, scored by ``segmentation_metrics`` on one test set."""
    return ZooModel(
        build=build, train_set=train_set, test_sets={"test": test_set}, epochs=epochs, description=description,
        classes=classes, loss=segmentation_loss, batch_size=batch_size, cache=draw_masks, score=segmentation_metrics,
        metric_names=metric_names,
    )


SEGMENTATION_TRAIN = DataSpec("SceneSegmentation", {**SCENES_TRAIN.kwargs})
SEGMENTATION_TEST = DataSpec("SceneSegmentation", {**SCENES_TEST.kwargs})
SMALL_SCENES = dict(image_size=64, classes=SHAPES, num_objects=(1, 4), object_size=(8, 24), max_overlap=0.3)
SMALL_SEGMENTATION_TRAIN = DataSpec("SceneSegmentation", dict(length=1000, seed=1, **SMALL_SCENES))
SMALL_SEGMENTATION_TEST = DataSpec("SceneSegmentation", dict(length=200, seed=2, **SMALL_SCENES))
LESIONS = dict(image_size=64, num_lesions=(1, 3), lesion_size=(4, 20), contrast=(0.1, 0.35))
LESIONS_TRAIN = DataSpec("LesionScans", dict(length=1000, seed=1, **LESIONS))
LESIONS_TEST = DataSpec("LesionScans", dict(length=200, seed=2, **LESIONS))
UNET_EPOCHS = 25


MODELS: dict[str, ZooModel] = {
    "shapes_cnn": ZooModel(
        build=lambda: SmallCNN(len(SHAPES)),
        train_set=lambda: SceneClassification(4000, seed=1),
        test_sets={"test_accuracy": lambda: SceneClassification(1000, seed=2)},
        epochs=8,
        description="which shape is in a 64×64 scene (one object on a textured background)",
        classes=SHAPES,
    ),
    "spurious_cnn": ZooModel(
        build=lambda: SmallCNN(2),
        train_set=lambda: SpuriousScenes(3000, seed=1, split="train"),
        test_sets={
            "test_accuracy_same_backgrounds": lambda: SpuriousScenes(1000, seed=2, split="train"),
            "test_accuracy_swapped_backgrounds": lambda: SpuriousScenes(1000, seed=3, split="test"),
        },
        epochs=6,
        description="digit 3 vs digit 8, trained where 95% of 3s are on snow and 95% of 8s on grass",
        classes=("digit 3", "digit 8"),
    ),
    "faster_rcnn": _detector(
        lambda: FasterRCNN(num_classes=len(SHAPES) + 1), epochs=6, batch_size=8,
        description="the course's Faster R-CNN (SmallBackbone): boxes of 1-4 shapes in a 128×128 scene; labels 1-5",
    ),
    "yolo": _detector(
        lambda: YOLO(num_classes=len(SHAPES) + 1), epochs=40, batch_size=16,
        description="the course's YOLOv1-style grid detector (8×8 cells, 2 boxes each, SmallBackbone at stride 16)",
    ),
    "ssd": _detector(
        lambda: build_ssd(len(SHAPES) + 1), epochs=30, batch_size=16,
        description="torchvision's SSD on the course's SSDBackbone: default boxes on 2 maps (stride 8 and 16), 4 per location",
    ),
    "retinanet": _detector(
        lambda: RetinaNet(len(SHAPES) + 1), epochs=20, batch_size=16,
        description="the course's RetinaNet (FPNBackbone, strides 8 and 16, 9 anchors per position, GroupNorm heads, focal loss)",
    ),
    "fcn": _segmenter(
        lambda: FCN(len(SHAPES) + 1), SEGMENTATION_TRAIN, SEGMENTATION_TEST, epochs=12,
        description="the course's FCN (stride-8 conv features, 1×1 conv classifier, bilinear-initialized transposed conv): "
        "the class of every pixel of a 128×128 scene",
    ),
    "unet": _segmenter(
        lambda: UNet(len(SHAPES) + 1), SMALL_SEGMENTATION_TRAIN, SMALL_SEGMENTATION_TEST, epochs=UNET_EPOCHS,
        description="the course's U-Net (3 levels, 8 base channels, skip connections): 64×64 scenes with 8-24 px objects",
    ),
    "unet_no_skips": _segmenter(
        lambda: UNet(len(SHAPES) + 1, skip_connections=False), SMALL_SEGMENTATION_TRAIN, SMALL_SEGMENTATION_TEST,
        epochs=UNET_EPOCHS, description="the ablation of `unet`: the same network and training without skip connections",
    ),
    "unet_lesions": _segmenter(
        lambda: UNet(2), LESIONS_TRAIN, LESIONS_TEST, epochs=UNET_EPOCHS, classes=("background", "lesion"),
        metric_names=("foreground_dice", "mean_iou", "boundary_iou", "pixel_accuracy"),
        description="the course's U-Net (3 levels, 8 base channels) on grey-level scans: which pixels are lesion",
    ),
    "mask_rcnn": _detector(
        lambda: MaskRCNN(num_classes=len(SHAPES) + 1), epochs=5, batch_size=8, masks=True,
        description="the course's Mask R-CNN (SmallBackbone, 4-conv mask head on 14×14 RoIAlign, 28×28 masks): "
        "boxes and instance masks of 1-4 shapes in a 128×128 scene; labels 1-5",
    ),
}


def _spec(name: str) -> ZooModel:
    if name not in MODELS:
        raise ValueError(f"name must be one of {sorted(MODELS)} (or, for load, {sorted(PRETRAINED)}), got {name!r}")
    return MODELS[name]


def manifest(weights_dir: Path = WEIGHTS_DIR) -> dict[str, dict]:
    """The manifest: for each model its file, sha256, metrics and the command that reproduces it."""
    path = Path(weights_dir) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


PRETRAINED = {"mobilenet_v2_imagenet": imagenet.load_mobilenet_v2}  # real models, not trained by the course


def load(name: str, weights_dir: Path = WEIGHTS_DIR) -> nn.Module:
    """The trained model ``name`` in eval mode, after checking its checkpoint's sha256.

    ``"mobilenet_v2_imagenet"`` is torchvision's ImageNet MobileNetV2 (``imagenet.load_mobilenet_v2``),
    from torchvision's weight cache where set-up puts it.
    """
    if name in PRETRAINED:
        return PRETRAINED[name]()
    spec = _spec(name)
    entry = manifest(weights_dir).get(name)
    path = Path(weights_dir) / f"{name}.pt"
    if entry is None or not path.exists():
        raise FileNotFoundError(f"no trained weights for {name!r} in {weights_dir}; run `make weights`")
    if _sha256(path) != entry["sha256"]:
        raise ValueError(f"{path} does not match the sha256 in the manifest; retrain it with `make weights`")
    model = spec.build()
    model.load_state_dict(load_checkpoint(path)["model"])
    return model.eval()


def evaluate(name: str, model: nn.Module) -> dict[str, float]:
    """The model's metrics on each of its test sets."""
    spec = _spec(name)
    metrics: dict[str, float] = {}
    for set_name, make in spec.test_sets.items():
        score = spec.score(model, spec.cache(make(), desc=set_name))
        if spec.metric_names:
            metrics.update({metric: float(score[metric]) for metric in spec.metric_names})
        else:
            metrics[set_name] = float(score)
    return metrics


def load_test_set(name: str, weights_dir: Path = WEIGHTS_DIR, **overrides: Any) -> Dataset:
    """The test set recorded in the manifest's ``data`` field of ``name``; ``seed=...`` draws fresh scenes."""
    _spec(name)
    entry = manifest(weights_dir).get(name)
    if entry is None or "data" not in entry:
        raise ValueError(f"the manifest has no 'data' field for {name!r} (only detectors and segmenters have one)")
    return DataSpec(entry["data"]["dataset"], entry["data"]["kwargs"])(**overrides)


def train(name: str, weights_dir: Path = WEIGHTS_DIR, epochs: int | None = None) -> dict[str, float]:
    """Train ``name`` from scratch (seeded), save its checkpoint and manifest entry; return its metrics.

    Trains on the GPU when there is one. Under ``torchrun`` only rank 0 evaluates and writes (the
    other ranks return ``{}``).
    """
    spec = _spec(name)
    seed_everything(spec.seed)
    model = spec.build()
    train_data = spec.cache(spec.train_set(), desc=f"{name}: drawing scenes")
    loader = DataLoader(
        train_data, batch_size=spec.batch_size, shuffle=True, collate_fn=spec.collate,
        generator=torch.Generator().manual_seed(spec.seed),
    )
    optimizer = spec.optimizer(model.parameters(), lr=spec.lr)
    n_epochs = epochs or spec.epochs
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=n_epochs)
    fit(model, loader, spec.loss, optimizer, n_epochs, scheduler=scheduler)
    if not distributed.is_main_process():
        return {}
    model.cpu()
    metrics = evaluate(name, model)
    weights_dir = Path(weights_dir)
    path = save_checkpoint({"model": model.state_dict()}, weights_dir / f"{name}.pt")
    entries = manifest(weights_dir)
    entries[name] = {
        "file": path.name,
        "sha256": _sha256(path),
        "metrics": {k: round(v, 4) for k, v in metrics.items()},
        "description": spec.description,
        "classes": list(spec.classes),
        "command": f"python -m course_utils.zoo train {name}",
        "epochs": n_epochs,
        "torch": torch.__version__.split("+")[0],
    }
    if distributed.world_size() > 1:
        entries[name]["processes"] = distributed.world_size()  # batch_size per process: another training
    if spec.data is not None:
        entries[name]["data"] = spec.data
    (weights_dir / MANIFEST).write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils.zoo", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train zoo models and update data/weights/")
    p_train.add_argument("names", nargs="*", help=f"models to train: {', '.join(MODELS)}")
    p_train.add_argument("--all", action="store_true", help="train every model")
    p_train.add_argument("--epochs", type=int, help="train this many epochs instead of each model's own number")
    p_train.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR, help="where checkpoints and the manifest go")
    args = parser.parse_args(argv)
    names = list(MODELS) if args.all else args.names
    if not names:
        parser.error("name a model or pass --all")
    for name in names:
        metrics = train(name, args.weights_dir, epochs=args.epochs)
        if distributed.is_main_process():
            print(f"{name}: {metrics}")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
