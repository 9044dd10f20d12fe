"""One-stage explorer: what a YOLO grid or SSD's default boxes learn from, and what the detector outputs.

Pure functions compute what is shown; ``one_stage_explorer`` is a thin dashboard over them.

* ``responsible_cells``: the grid cell of each object (YOLO's own assignment, ``yolo.encode_targets``);
  ``shared_cells``: the objects that lose their cell to a larger object (one object per cell).
* ``positive_anchors``: the default boxes / anchors matched to an object (IoU >= threshold, and each
  object's best ones: torchvision's ``Matcher(allow_low_quality_matches=True)``, as RetinaNet);
  ``anchor_matches`` says to which object.
* ``model_anchors``: every default box (SSD, ``ssd.default_boxes``) or anchor (any torchvision-style
  anchor detector, e.g. RetinaNet) of a model, in an image's own pixels.
* ``detections_above``: a detector's output dict restricted to the detections scoring above a threshold.
* ``one_stage_figure``: the scene with the grid (YOLO) or the matched default boxes (SSD, anchors),
  the detections above the threshold, or both.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping, Sequence

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Rectangle
from torch import Tensor, nn

from ..anchors import match_anchors
from ..boxes import box_iou
from ..data import SHAPES
from ..detection._utils import check_images
from ..detection.retinanet import RetinaNet
from ..detection.yolo import YOLO, encode_targets
from ..training import eval_mode
from ..validation import check_boxes, check_choice, check_positive_int, check_probability, check_tensor
from ..viz import PALETTE, draw_boxes, show_image
from ._base import dashboard, labels_inside, model_device

Detections = dict[str, Tensor]  # boxes [K, 4] xyxy, labels [K] int64, scores [K]
CLASS_NAMES = ("background", *SHAPES)
OVERLAYS = ("targets", "detections", "both")  # what one_stage_figure draws over the image
EXPLORER_SCENES = 30  # the default explorer shows the first scenes of the zoo detectors' test set
DEFAULT_IOU = 0.5  # SSD's and RetinaNet's matching threshold, when the model does not say


# ----------------------------------------------------------------------------------------------
# YOLO: which cell is responsible for each object
# ----------------------------------------------------------------------------------------------
def _one_per_image(boxes: Tensor) -> list[dict[str, Tensor]]:
    """Each box as the only object of its own image: ``encode_targets`` then keeps every one of them."""
    return [{"boxes": box[None], "labels": torch.ones(1, dtype=torch.int64)} for box in boxes]


def _grid_args(boxes: object, image_size: object, grid_size: object) -> tuple[Tensor, int, int]:
    return (check_boxes(boxes, "boxes").detach().cpu().float(), check_positive_int(image_size, "image_size"),
            check_positive_int(grid_size, "grid_size"))  # fmt: skip


def responsible_cells(boxes: Tensor, image_size: int, grid_size: int) -> list[tuple[int, int]]:
    """The cell ``(row, col)`` responsible for each object: the one holding its centre, as YOLO assigns it.

    Args:
        boxes (Tensor[G, 4]): xyxy pixels of the ``image_size`` × ``image_size`` input (G may be 0).
        image_size (int): side of the model's (square) input.
        grid_size (int): S, cells per side.

    Returns:
        list of G ``(row, col)`` int pairs, in the order of ``boxes``: ``row = floor(cy / cell)``,
        ``col = floor(cx / cell)``, clamped to the grid (``cell = image_size / grid_size``). Two objects
        may share a cell; of those YOLO learns only the larger (see ``shared_cells``).
    """
    boxes, image_size, grid_size = _grid_args(boxes, image_size, grid_size)
    if len(boxes) == 0:
        return []
    encoded = encode_targets(_one_per_image(boxes), grid_size, image_size)
    return [(int(r), int(c)) for r, c in zip(encoded.row.tolist(), encoded.col.tolist())]


def shared_cells(boxes: Tensor, image_size: int, grid_size: int) -> Tensor:
    """bool Tensor[G]: the objects that YOLO does *not* learn because a larger one (ties: an earlier one)
    has its centre in the same cell (``yolo.encode_targets`` keeps one object per cell)."""
    boxes, image_size, grid_size = _grid_args(boxes, image_size, grid_size)
    dropped = torch.ones(len(boxes), dtype=torch.bool)
    if len(boxes):
        kept = encode_targets([{"boxes": boxes, "labels": torch.ones(len(boxes), dtype=torch.int64)}], grid_size, image_size).box
        j = 0  # the kept boxes are a subsequence of the input, in its order (of identical boxes, the first is kept)
        for i in range(len(boxes)):
            if j < len(kept) and torch.equal(boxes[i], kept[j]):
                dropped[i], j = False, j + 1
    return dropped


# ----------------------------------------------------------------------------------------------
# SSD / anchors: which default boxes are matched to each object
# ----------------------------------------------------------------------------------------------
def anchor_matches(anchors: Tensor, boxes: Tensor, iou_thresh: float = DEFAULT_IOU) -> Tensor:
    """int64 Tensor[A]: the object each anchor is matched to (index into ``boxes``), -1 for none.

    An anchor is matched when its best IoU with an object is ``>= iou_thresh``, and every object also
    gets the anchors of its highest IoU (ties included), as torchvision's
    ``Matcher(iou_thresh, iou_thresh, allow_low_quality_matches=True)``.
    """
    anchors = check_boxes(anchors, "anchors").detach().cpu()
    boxes = check_boxes(boxes, "boxes").detach().cpu()
    iou_thresh = check_probability(iou_thresh, "iou_thresh")
    if len(boxes) == 0 or len(anchors) == 0:
        return torch.full((len(anchors),), -1, dtype=torch.int64)
    matches = match_anchors(box_iou(boxes, anchors), iou_thresh, iou_thresh, allow_low_quality_matches=True)
    return matches.clamp(min=-1)  # with equal thresholds nothing is "between"


def positive_anchors(anchors: Tensor, boxes: Tensor, iou_thresh: float = DEFAULT_IOU) -> Tensor:
    """bool Tensor[A]: the anchors (default boxes) learned as objects: IoU ``>= iou_thresh`` with an object,
    or the best anchor of some object (SSD / RetinaNet's low-quality matches). No object: all False."""
    return anchor_matches(anchors, boxes, iou_thresh) >= 0


def _is_ssd(model: object) -> bool:
    from torchvision.models.detection.ssd import SSD

    return isinstance(model, SSD)


def _has_anchor_generator(model: object) -> bool:
    return all(hasattr(model, name) for name in ("anchor_generator", "transform", "backbone"))


def _check_model(model: object) -> nn.Module:
    if isinstance(model, (YOLO, RetinaNet)) or _is_ssd(model) or (isinstance(model, nn.Module) and _has_anchor_generator(model)):
        return model
    raise TypeError("model must be a one-stage detector: a course_utils.detection.YOLO or RetinaNet, a torchvision SSD (see "
                    "detection.ssd.build_ssd) or a torchvision-style anchor detector (anchor_generator, transform, backbone), "
                    f"got {type(model).__name__}")  # fmt: skip


def _check_image(image: object, name: str = "image") -> Tensor:
    image = check_tensor(image, name, ndim=3, floating=True)
    if image.shape[0] != 3:
        raise ValueError(f"{name} must have shape [3, H, W], got {tuple(image.shape)}")
    return image


@contextlib.contextmanager
def _eval(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode without gradients (``training.eval_mode``: every module's mode comes back)."""
    with eval_mode(model), torch.no_grad():
        yield model


def model_anchors(model: nn.Module, image: Tensor) -> Tensor:
    """Every default box / anchor of ``model`` for ``image`` [3, H, W]: Tensor[A, 4] xyxy in the image's own pixels.

    SSD: ``ssd.default_boxes(model)`` (in the order of the head's predictions), scaled from the model's
    fixed input size to the image's. The course's ``RetinaNet``: its ``anchors`` of every level; other
    torchvision-style anchor detectors: the model's ``anchor_generator``; both on the image after the
    model's ``transform``, scaled back to the image.
    """
    model = _check_model(model)
    if isinstance(model, YOLO):
        raise TypeError("model is a YOLO: it has a grid of cells, not anchors (see responsible_cells)")
    image = _check_image(image)
    height, width = int(image.shape[1]), int(image.shape[2])
    if _is_ssd(model):
        from ..detection.ssd import default_boxes

        anchors, _ = default_boxes(model)
        in_width, in_height = model.transform.fixed_size  # SSD's size is (width, height)
        size = (int(in_height), int(in_width))
    else:
        with _eval(model):
            batch, _ = model.transform([image.to(model_device(model))])
            if isinstance(model, RetinaNet):
                anchors = torch.cat(model.anchors(batch.tensors.shape[-2:], model.features(batch.tensors)))
            else:
                features = model.backbone(batch.tensors)
                features = [features] if isinstance(features, Tensor) else list(features.values())
                anchors = model.anchor_generator(batch, features)[0]
        size = tuple(int(v) for v in batch.image_sizes[0])
    scale = torch.tensor([width / size[1], height / size[0]] * 2, dtype=anchors.dtype, device=anchors.device)
    return (anchors * scale).detach().cpu()


def _iou_thresh(model: nn.Module, iou_thresh: float | None) -> float:
    if iou_thresh is not None:
        return check_probability(iou_thresh, "iou_thresh")
    if isinstance(model, RetinaNet):
        return model.fg_iou_thresh
    return float(getattr(getattr(model, "proposal_matcher", None), "high_threshold", DEFAULT_IOU))


# ----------------------------------------------------------------------------------------------
# detections
# ----------------------------------------------------------------------------------------------
def detections_above(output_dict: Mapping[str, Tensor], score_thresh: float) -> Detections:
    """``output_dict`` (one image's output of a torchvision-style detector: ``boxes``, ``labels``, ``scores``,
    maybe ``masks``) restricted to its detections scoring ``> score_thresh``, in their order.

    Every tensor whose first dimension has one entry per detection is filtered; other entries are
    passed on unchanged. The input is not modified.
    """
    if not isinstance(output_dict, Mapping):
        raise TypeError(f"output_dict must be a dict with 'boxes', 'labels' and 'scores', got {type(output_dict).__name__}")
    if "scores" not in output_dict:
        raise ValueError(f"output_dict has no 'scores' (keys: {', '.join(map(repr, output_dict)) or 'none'})")
    scores = check_tensor(output_dict["scores"], "output_dict['scores']", ndim=1)
    score_thresh = check_probability(score_thresh, "score_thresh")
    n = len(scores)
    for key, value in output_dict.items():
        if key in ("boxes", "labels") and (not isinstance(value, Tensor) or value.ndim == 0 or len(value) != n):
            raise ValueError(f"output_dict[{key!r}] must have one entry per score ({n}), got "
                             f"{tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__}")  # fmt: skip
    keep = scores > score_thresh
    return {key: value[keep] if isinstance(value, Tensor) and value.ndim and len(value) == n else value
            for key, value in output_dict.items()}  # fmt: skip


def run_detector(model: nn.Module, image: Tensor) -> Detections:
    """``model``'s detections on one image [3, H, W] (eval mode, no gradients, modes restored), on the CPU."""
    model = _check_model(model)
    image = _check_image(image)
    with _eval(model):
        (output,) = model([image.to(model_device(model))])
    return {key: value.detach().cpu() if isinstance(value, Tensor) else value for key, value in output.items()}


# ----------------------------------------------------------------------------------------------
# the figure
# ----------------------------------------------------------------------------------------------
def _colours(target: Mapping[str, Tensor]) -> list[tuple[float, float, float]]:
    """One colour per object: its class's (as ``draw_boxes`` gives its detections), else one per object."""
    labels = target.get("labels")
    if isinstance(labels, Tensor) and len(labels) == len(target["boxes"]):
        return [PALETTE[int(label) % len(PALETTE)] for label in labels.tolist()]
    return [PALETTE[(2 * i) % len(PALETTE)] for i in range(len(target["boxes"]))]


def _draw_grid(ax, model: YOLO, image: Tensor, target: Mapping[str, Tensor] | None) -> str:
    """The grid of ``model`` over the image, each object's responsible cell filled in its colour; returns the title."""
    height, width = int(image.shape[1]), int(image.shape[2])
    grid = model.grid_size
    cell_w, cell_h = width / grid, height / grid
    for k in range(grid + 1):  # imshow's pixel i spans [i - 0.5, i + 0.5]
        ax.axvline(k * cell_w - 0.5, color="white", linewidth=0.6, alpha=0.6)
        ax.axhline(k * cell_h - 0.5, color="white", linewidth=0.6, alpha=0.6)
    if target is None or len(target["boxes"]) == 0:
        return f"{grid}×{grid} grid ({cell_w:g} × {cell_h:g} px cells)" + ("" if target is None else ": no object")
    boxes = check_boxes(target["boxes"], "target['boxes']").detach().cpu()
    size = model.image_size
    scaled = boxes * torch.tensor([size / width, size / height] * 2)  # the model's input pixels
    cells = responsible_cells(scaled, size, grid)
    lost = shared_cells(scaled, size, grid)
    for i, ((row, col), box, colour) in enumerate(zip(cells, boxes.tolist(), _colours(target))):
        if not lost[i]:
            ax.add_patch(Rectangle((col * cell_w - 0.5, row * cell_h - 0.5), cell_w, cell_h, facecolor=colour, alpha=0.4,
                                   edgecolor=colour, linewidth=1.5))  # fmt: skip
        ax.plot((box[0] + box[2]) / 2 - 0.5, (box[1] + box[3]) / 2 - 0.5, "x" if lost[i] else "o", color=colour,
                markersize=6, markeredgecolor="white" if not lost[i] else colour, markeredgewidth=1.5 if lost[i] else 0.8)  # fmt: skip
    text = f"{grid}×{grid} grid: the cell holding each object's centre learns it"
    if int(lost.sum()):
        text += f"\n{int(lost.sum())} object(s) (×) share a cell with a larger one: not learned"
    return text


def _draw_anchors(ax, anchors: Tensor, target: Mapping[str, Tensor] | None, iou_thresh: float, kind: str) -> str:
    """Each object's matched anchors (dashed, in its colour); returns the title."""
    if target is None or len(target["boxes"]) == 0:
        return f"{len(anchors)} {kind}" + ("" if target is None else ": no object, none matched")
    boxes = check_boxes(target["boxes"], "target['boxes']").detach().cpu()
    matches = anchor_matches(anchors, boxes, iou_thresh)
    for i, colour in enumerate(_colours(target)):
        for x1, y1, x2, y2 in anchors[matches == i].tolist():
            ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.0,
                                   linestyle="--"))  # fmt: skip
    counts = ", ".join(str(int((matches == i).sum())) for i in range(len(boxes)))
    return (f"{len(anchors)} {kind}: {int((matches >= 0).sum())} matched (IoU ≥ {iou_thresh:.2f} or an object's best)\n"
            f"per object: {counts}")  # fmt: skip


def one_stage_figure(
    model: nn.Module,
    image: Tensor,
    target: Mapping[str, Tensor] | None = None,
    score_threshold: float = 0.3,
    overlay: str = "both",
    *,
    detections: Mapping[str, Tensor] | None = None,
    anchors: Tensor | None = None,
    iou_thresh: float | None = None,
    class_names: Sequence[str] = CLASS_NAMES,
) -> plt.Figure:
    """One image with what a one-stage detector learns from and what it finds.

    ``overlay``: ``"targets"`` — for a YOLO its grid with each object's responsible cell filled in the
    colour of the object's class (× marks an object that loses its cell to a larger one); for SSD or
    an anchor detector the default boxes / anchors matched to each object (dashed, same colours);
    ``"detections"`` — the detections scoring ``> score_threshold`` (class colour and score);
    ``"both"``. The ground truth (``target``, optional) is drawn white and dotted.

    ``detections`` (the model's output on ``image``) and ``anchors`` (``model_anchors(model, image)``)
    are computed when not given; ``iou_thresh`` defaults to the model's matcher's (0.5).
    """
    model = _check_model(model)
    image = _check_image(image)
    score_threshold = check_probability(score_threshold, "score_threshold")
    overlay = check_choice(overlay, "overlay", OVERLAYS)
    if target is not None and (not isinstance(target, Mapping) or "boxes" not in target):
        raise TypeError(f"target must be a dict with 'boxes' (and 'labels'), got {type(target).__name__}")
    fig, ax = plt.subplots(figsize=(5, 5.6))
    show_image(image, ax)
    titles = []
    if overlay in ("targets", "both"):
        if isinstance(model, YOLO):
            titles.append(_draw_grid(ax, model, image, target))
        else:
            anchors = model_anchors(model, image) if anchors is None else check_boxes(anchors, "anchors").detach().cpu()
            kind = "default boxes" if _is_ssd(model) else "anchors"
            titles.append(_draw_anchors(ax, anchors, target, _iou_thresh(model, iou_thresh), kind))
    if target is not None and len(target["boxes"]):
        draw_boxes(None, target["boxes"], ax=ax, color="white", linestyle=":", linewidth=1.5)
    if overlay in ("detections", "both"):
        found = detections_above(run_detector(model, image) if detections is None else detections, score_threshold)
        labels = found.get("labels")
        names = class_names if labels is None or not len(labels) or int(labels.max()) < len(class_names) else None
        draw_boxes(None, found["boxes"], labels, found["scores"], names, ax=ax)
        titles.append(f"{len(found['scores'])} detection(s) scoring > {score_threshold:.2f}")
    labels_inside(ax, height=6.0)
    height, width = int(image.shape[1]), int(image.shape[2])
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_title("\n".join(titles), fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------
# the dashboard
# ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _zoo_detector() -> nn.Module:
    """The zoo's ``yolo`` (loaded once)."""
    from .. import zoo  # imported here: loading weights is only needed by the default widget

    return zoo.load("yolo")


@functools.lru_cache(maxsize=1)
def _zoo_scenes(count: int = EXPLORER_SCENES) -> list[tuple[Tensor, dict[str, Tensor]]]:
    """The first ``count`` scenes of the zoo detectors' test set (the same for ``yolo`` and ``ssd``)."""
    from .. import zoo

    test_set = zoo.load_test_set("yolo")
    return [test_set[i] for i in range(count)]


def _split_scenes(images: object, targets: object) -> tuple[list[Tensor], list[Mapping[str, Tensor]] | None]:
    """``images`` as a list of Tensor[3, H, W] (pairs (image, target) are split), ``targets`` as a list or None."""
    if isinstance(images, (list, tuple)) and images and all(isinstance(s, (list, tuple)) and len(s) == 2 for s in images):
        if targets is not None:
            raise ValueError("images holds (image, target) pairs: do not give targets as well")
        images, targets = [s[0] for s in images], [s[1] for s in images]
    images = check_images(images, 3)
    if targets is not None:
        if not isinstance(targets, (list, tuple)):
            raise TypeError(f"targets must be a list of dicts (one per image) or None, got {type(targets).__name__}")
        if len(targets) != len(images):
            raise ValueError(f"targets must have one dict per image ({len(images)}), got {len(targets)}")
        for i, t in enumerate(targets):
            if not isinstance(t, Mapping) or "boxes" not in t:
                raise TypeError(f"targets[{i}] must be a dict with 'boxes' (and 'labels'), got {type(t).__name__}")
            check_boxes(t["boxes"], f"targets[{i}]['boxes']")
        targets = list(targets)
    return images, targets


def one_stage_explorer(
    model: nn.Module | None = None,
    images: Sequence[Tensor] | Sequence[tuple[Tensor, Mapping[str, Tensor]]] | None = None,
    targets: Sequence[Mapping[str, Tensor]] | None = None,
    *,
    score_threshold: float = 0.3,
    overlay: str = "both",
    iou_thresh: float | None = None,
    class_names: Sequence[str] = CLASS_NAMES,
) -> W.VBox:
    """Image, score threshold and overlay → the grid's responsible cells (YOLO) or the matched default
    boxes (SSD, anchor detectors), and the detections above the threshold.

    Args:
        model: a ``detection.YOLO``, a torchvision SSD (``detection.ssd.build_ssd``) or a torchvision-style
            anchor detector; default the zoo's ``yolo``.
        images: list of Tensor[3, H, W] (or of (image, target) pairs); default the first 30 scenes of the
            zoo detectors' test set (with their targets).
        targets: one dict with ``boxes`` (and ``labels``) per image, or None (no ground truth is drawn).
        score_threshold, overlay: the controls' initial values (``overlay`` in ``"targets"``,
            ``"detections"``, ``"both"``).
        iou_thresh: the matching threshold of the default boxes (default: the model's matcher's, 0.5).

    The model runs once per image (at its own score threshold, results cached); the slider filters.
    """
    model = _check_model(_zoo_detector() if model is None else model)
    if images is None:
        if targets is not None:
            raise ValueError("targets without images: give the images they belong to")
        images = _zoo_scenes()
    images, targets = _split_scenes(images, targets)
    score_threshold = check_probability(score_threshold, "score_threshold")
    overlay = check_choice(overlay, "overlay", OVERLAYS)
    if iou_thresh is not None:
        iou_thresh = check_probability(iou_thresh, "iou_thresh")
    grid = isinstance(model, YOLO)
    name = "YOLO" if grid else "SSD" if _is_ssd(model) else type(model).__name__
    assigned = "responsible cells" if grid else "matched default boxes" if _is_ssd(model) else "matched anchors"
    controls = {
        "index": W.IntSlider(value=0, min=0, max=len(images) - 1, description="image", continuous_update=False),
        "score_threshold": W.FloatSlider(value=score_threshold, min=0.0, max=1.0, step=0.05, description="min score",
                                         continuous_update=False),  # fmt: skip
        "overlay": W.ToggleButtons(options=[(assigned, "targets"), ("detections", "detections"), ("both", "both")], value=overlay,
                                   description="show"),  # fmt: skip
    }

    @functools.lru_cache(maxsize=None)
    def detections(index: int) -> Detections:
        return run_detector(model, images[index])

    @functools.lru_cache(maxsize=None)
    def anchors(index: int) -> Tensor | None:
        return None if grid else model_anchors(model, images[index])

    def render(index: int, score_threshold: float, overlay: str) -> plt.Figure:
        target = targets[index] if targets is not None else None
        return one_stage_figure(model, images[index], target, score_threshold, overlay, detections=detections(index),
                                anchors=anchors(index), iou_thresh=iou_thresh, class_names=class_names)  # fmt: skip

    return dashboard(render, controls, f"One-stage detector ({name}): {assigned} and detections")
