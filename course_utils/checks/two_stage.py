"""Checks for notebook 04 (two-stage detectors): RoI pooling, the RPN's proposal filtering, the Fast R-CNN loss."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..boxes import nms
from ..detection import roi_pool, smooth_l1_loss
from ..detection._utils import clip_boxes_to_image, remove_small_boxes
from ..detection.rpn import RPN_MIN_SIZE
from ._core import Case, reference, run_cases


# ---------------------------------------------------------------------------------------------
# RoI max pooling
# ---------------------------------------------------------------------------------------------
@reference("roi_pool")
def reference_roi_pool(feature: Tensor, box: Tensor, output_size: int) -> Tensor:
    """Max-pool one RoI ``box`` [4] (xyxy, in cells) of ``feature`` [C, H, W] into [C, output_size, output_size]."""
    return roi_pool(feature[None], [box[None]], output_size)[0]


ROUND = "round each corner to the nearest cell first (x1 = round(x1), ...): truncating with int() or floor() snaps 1.7 to 1, not 2."
PLUS_ONE = "the RoI includes its last row and column: it is y2 - y1 + 1 cells tall and x2 - x1 + 1 wide (at least 1)."
BINS = "bin i covers rows floor(i·s) + y1 up to (not including) ceil((i + 1)·s) + y1, with s = RoI height / output_size (a float)."
OVERLAP = BINS + " When s is not a whole number, neighbouring bins share a row or column."
CLIP = "clip each bin's start and end to [0, H] (rows) and [0, W] (columns); a bin left with no cell gives 0."
ONE_CELL = "a 1×1 RoI has s = 1 / output_size: every bin is [floor(i·s), ceil((i + 1)·s)) = that one cell."
NEGATIVE = "take the max of the bin's values (bin.amax()); do not start the max at 0: only an *empty* bin gives 0."
CHANNELS = "pool each channel on its own: reduce over rows and columns only (amax(dim=(1, 2))), keep the channel dimension."


def _feature(seed: int, channels: int, height: int, width: int) -> Tensor:
    """A feature map [C, H, W] holding 1 ... C·H·W once each, in random places: every max is one cell."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randperm(channels * height * width, generator=g) + 1).float().reshape(channels, height, width)


def _pool_case(description: str, feature: Tensor, box: list[float], output_size: int, hint: str) -> Case:
    box_t = torch.tensor(box, dtype=torch.float32)
    return Case(description, (feature, box_t, output_size), reference_roi_pool(feature, box_t, output_size), hint)


def check_roi_pool(student_fn: Callable[[Tensor, Tensor, int], Tensor]) -> None:
    """``my_roi_pool(feature [C, H, W], box [4], output_size) -> [C, output_size, output_size]`` vs ``torchvision.ops.roi_pool``."""
    cases = [
        _pool_case("box [0, 0, 7, 7] on an 8×8 map into 2×2 bins: 8 cells a side, 4 per bin", _feature(1, 1, 8, 8),
                   [0, 0, 7, 7], 2, PLUS_ONE),
        _pool_case("box [1, 2, 4, 5] into 2×2 bins: 4×4 cells, not 3×3", _feature(2, 1, 8, 8), [1, 2, 4, 5], 2, PLUS_ONE),
        _pool_case("fractional corners [1.3, 0.6, 5.7, 4.4] are rounded to [1, 1, 6, 4]", _feature(3, 1, 8, 8),
                   [1.3, 0.6, 5.7, 4.4], 2, ROUND),
        _pool_case("box [0, 0, 4, 4] (5 cells a side) into 2×2 bins: the bins overlap on the middle row and column",
                   _feature(4, 1, 8, 8), [0, 0, 4, 4], 2, OVERLAP),
        _pool_case("box [1, 0, 7, 6] (7 cells a side) into 3×3 bins", _feature(5, 1, 8, 8), [1, 0, 7, 6], 3, OVERLAP),
        _pool_case("a box past the bottom-right border [3, 3, 10, 10] of a 6×6 map: bins outside give 0",
                   _feature(6, 1, 6, 6), [3, 3, 10, 10], 2, CLIP),
        _pool_case("a box past the top-left border [-4.2, -3.8, 2, 1]", _feature(7, 1, 6, 6), [-4.2, -3.8, 2, 1], 3, CLIP),
        _pool_case("a 1-cell box [2, 3, 2, 3] into 3×3 bins: every bin is that cell", _feature(8, 1, 6, 6), [2, 3, 2, 3], 3,
                   ONE_CELL),
        _pool_case("negative feature values: the max of a bin is negative, not 0", -_feature(9, 1, 6, 6), [1, 1, 4, 4], 2,
                   NEGATIVE),
        _pool_case("3 channels: each channel is pooled separately", _feature(10, 3, 6, 6), [0, 1, 5, 4], 2, CHANNELS),
        _pool_case("a wide box [0, 2, 7, 3] (8×2 cells) into 2×2 bins", _feature(11, 1, 6, 8), [0, 2, 7, 3], 2, BINS),
        _pool_case("output_size 1: the max over the whole RoI", _feature(12, 2, 5, 7), [1.2, 0.9, 5.6, 3.1], 1, ROUND),
    ]
    generator = torch.Generator().manual_seed(0)
    for i in range(8):
        c = int(torch.randint(1, 4, (1,), generator=generator))
        h, w = (int(v) for v in torch.randint(4, 13, (2,), generator=generator))
        corner = torch.rand(2, generator=generator) * torch.tensor([w, h]) - 2
        size = torch.rand(2, generator=generator) * torch.tensor([w, h])
        box = torch.cat([corner, corner + size]).tolist()
        n = int(torch.randint(1, 5, (1,), generator=generator))
        cases.append(_pool_case(f"random case #{i + 1}: a {c}×{h}×{w} map, box {[round(v, 2) for v in box]}, {n}×{n} bins",
                                _feature(100 + i, c, h, w), box, n, f"{ROUND} {PLUS_ONE} {BINS} {CLIP}"))
    run_cases(student_fn, cases, "my_roi_pool")


# ---------------------------------------------------------------------------------------------
# The RPN's proposal filtering
# ---------------------------------------------------------------------------------------------
@reference("filter_proposals")
def reference_filter_proposals(
    boxes: Tensor, logits: Tensor, image_size: tuple[int, int], pre_nms_top_n: int, post_nms_top_n: int, iou_threshold: float
) -> Tensor:
    """The RPN's proposals of one image and feature level: boxes [N, 4] and objectness logits [N] -> Tensor[K, 4].

    Top ``pre_nms_top_n`` logits, clip to the image ``(height, width)``, drop boxes thinner than
    1e-3, NMS on the sigmoid scores, the first ``post_nms_top_n``.
    """
    top = logits.topk(min(pre_nms_top_n, len(logits))).indices
    boxes, scores = clip_boxes_to_image(boxes[top], image_size), torch.sigmoid(logits[top])
    wide = remove_small_boxes(boxes, RPN_MIN_SIZE)  # the RPN's own clipping and filtering
    boxes, scores = boxes[wide], scores[wide]
    return boxes[nms(boxes, scores, iou_threshold)[:post_nms_top_n]]


TOPK_FIRST = "take the pre_nms_top_n highest logits first (logits.topk), then clip, drop thin boxes and run NMS on what is left."
TOPK_EXACT = "topk keeps exactly pre_nms_top_n boxes, even when logits tie at the cut: do not keep every logit >= the k-th."
CLIP_BOXES = "clip x1, x2 to [0, width] and y1, y2 to [0, height]; image_size is (height, width)."
THIN = "after clipping, drop the boxes whose width or height is < 1e-3: a box outside the image is clipped to a line."
NMS_THEN_CUT = "cut to post_nms_top_n *after* NMS: the best post_nms_top_n survivors, by decreasing score."
SUPPRESS = "NMS at iou_threshold on the scores (sigmoid of the logits): a box overlapping a better one by IoU > threshold goes."


def _proposal_case(
    description: str, boxes: list[list[float]], logits: list[float], image_size: tuple[int, int], pre: int, post: int, iou: float, hint: str
) -> Case:
    boxes_t = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    logits_t = torch.tensor(logits, dtype=torch.float32)
    args = (boxes_t, logits_t, image_size, pre, post, iou)
    return Case(description, args, reference_filter_proposals(*args), hint)


def _random_proposals(generator: torch.Generator, n: int, height: int, width: int) -> Tensor:
    """``n`` boxes [n, 4] in clusters around an image of ``height`` × ``width``, some partly or wholly outside it."""
    centres = torch.rand((max(n // 5, 1), 2), generator=generator) * torch.tensor([width + 20.0, height + 20.0]) - 10
    centre = centres[torch.randint(len(centres), (n,), generator=generator)] + 4 * torch.randn((n, 2), generator=generator)
    size = 4 + 30 * torch.rand((n, 2), generator=generator)
    return torch.cat([centre - size / 2, centre + size / 2], dim=1)


def check_filter_proposals(student_fn: Callable[[Tensor, Tensor, tuple[int, int], int, int, float], Tensor]) -> None:
    """``my_filter_proposals(boxes [N, 4], logits [N], (h, w), pre_nms_top_n, post_nms_top_n, iou) -> [K, 4]`` vs the RPN's."""
    a, b, c = [10, 10, 40, 40], [12, 10, 42, 40], [60, 10, 90, 40]  # a and b overlap (IoU 0.875); c is apart
    cases = [
        _proposal_case("fewer boxes (3) than pre_nms_top_n (10): all go on to NMS (topk of min(k, N))", [a, b, c],
                       [1.0, 0.5, -1.0], (100, 100), 10, 10, 0.7, SUPPRESS),
        _proposal_case("a duplicate (IoU 0.875 > 0.7) is removed by NMS", [b, c, a], [0.5, -1.0, 1.0], (100, 100), 10, 10, 0.7,
                       SUPPRESS),
        _proposal_case("top-k before NMS: with pre_nms_top_n 2, the duplicate takes the second place and c never gets in",
                       [a, b, c], [2.0, 1.0, 0.0], (100, 100), 2, 10, 0.7, TOPK_FIRST),
        _proposal_case("post_nms_top_n 2 of 4 survivors: the 2 best", [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10],
                       [60, 0, 70, 10]], [-1.0, 2.0, 0.5, 1.0], (100, 100), 10, 2, 0.7, NMS_THEN_CUT),
        _proposal_case("post_nms_top_n 2 after NMS: the duplicate is gone, so the third best box makes it", [a, b, c],
                       [2.0, 1.5, 1.0], (100, 100), 10, 2, 0.7, NMS_THEN_CUT),
        _proposal_case("boxes partly outside the image are clipped to it", [[-10, -5, 30, 20], [80, 70, 130, 120]], [1.0, 0.5],
                       (100, 100), 10, 10, 0.7, CLIP_BOXES),
        _proposal_case("a box left of the image is clipped to a line of width 0 and dropped", [[-20, 10, -5, 30], a],
                       [3.0, 1.0], (100, 100), 10, 10, 0.7, THIN),
        _proposal_case("a box below the image (y1 > height) is dropped", [[10, 120, 40, 150], c], [3.0, 1.0], (100, 100), 10, 10,
                       0.7, THIN),
        _proposal_case("a sliver 1e-4 px wide is dropped", [[20, 20, 20.0001, 50], a], [3.0, 1.0], (100, 100), 10, 10, 0.7, THIN),
        _proposal_case("a wide image (height 40, width 100): clip y to 40 and x to 100", [[60, 10, 90, 30], [20, 30, 80, 60],
                       [70, 20, 120, 50]], [1.0, 2.0, 0.0], (40, 100), 10, 10, 0.7, CLIP_BOXES),
        _proposal_case("clipping before NMS: two boxes overlap little, but much once clipped", [[-60, 0, 30, 30], [-5, 0, 30, 30]],
                       [1.0, 0.0], (100, 100), 10, 10, 0.7, "clip before NMS: NMS compares the clipped boxes."),
        _proposal_case("ties at the top-k cut (logits 2, 1, 1, 1; pre_nms_top_n 3, no suppression): exactly 3 kept",
                       [c, a, a, a], [2.0, 1.0, 1.0, 1.0], (100, 100), 3, 10, 1.0, TOPK_EXACT),
        _proposal_case("no boxes at all", [], [], (100, 100), 10, 10, 0.7,
                       "with no boxes, return an empty Tensor[0, 4] (topk of 0 and NMS of nothing both work)."),
    ]
    generator = torch.Generator().manual_seed(0)
    for i in range(8):
        n = int(torch.randint(10, 80, (1,), generator=generator))
        height, width = (int(v) for v in torch.randint(40, 120, (2,), generator=generator))
        boxes = _random_proposals(generator, n, height, width)
        logits = 2 * torch.randn(n, generator=generator)
        pre, post = int(torch.randint(5, n + 10, (1,), generator=generator)), int(torch.randint(3, 30, (1,), generator=generator))
        iou = round(float(torch.rand(1, generator=generator)) * 0.6 + 0.3, 2)
        args = (boxes, logits, (height, width), pre, post, iou)
        cases.append(Case(f"random case #{i + 1}: {n} boxes, image {height}×{width}, pre {pre}, post {post}, IoU {iou}", args,
                          reference_filter_proposals(*args), f"{TOPK_FIRST} {CLIP_BOXES} {NMS_THEN_CUT}"))
    run_cases(student_fn, cases, "my_filter_proposals")


# ---------------------------------------------------------------------------------------------
# The Fast R-CNN loss
# ---------------------------------------------------------------------------------------------
@reference("fastrcnn_loss")
def reference_fastrcnn_loss(
    class_logits: Tensor, box_regression: Tensor, labels: Tensor, regression_targets: Tensor
) -> tuple[Tensor, Tensor]:
    """(classification, box) losses of R sampled RoIs: logits [R, C], deltas [R, 4C], labels [R] (0 = background), targets [R, 4].

    Cross-entropy over all R; smooth-L1 (beta 1/9) of each positive's deltas for its own class,
    summed and divided by R.
    """
    classification = F.cross_entropy(class_logits, labels)
    positive = torch.where(labels > 0)[0]
    deltas = box_regression.reshape(len(labels), -1, 4)[positive, labels[positive]]
    box = smooth_l1_loss(deltas, regression_targets[positive], beta=1 / 9, reduction="sum") / labels.numel()
    return classification, box


OVER_R = "divide the box loss's sum by R, the number of sampled RoIs (labels.numel()), not by the number of positives."
ALL_ROIS = "the classification loss is the cross-entropy over all R RoIs, background ones included (F.cross_entropy)."
NO_POSITIVE = "with no positive RoI the box loss is a sum over nothing, 0 (divided by R): not 0 / 0 = NaN."
OWN_CLASS = "each positive RoI's deltas are those of its own class: box_regression.reshape(R, C, 4)[r, labels[r]] (column 0 is the background's)."
BETA = ("smooth-L1 with beta = 1/9: 0.5·d²/beta when d < beta, else d - 0.5·beta (F.smooth_l1_loss's default beta is 1), "
        "summed over the deltas (reduction='sum').")
SUMMED = "sum the smooth-L1 over the positives' 4 deltas (reduction='sum'), then divide by R: not a mean over the elements."


def _loss_case(description: str, logits: Tensor, regression: Tensor, labels: list[int], targets: Tensor, hint: str) -> Case:
    args = (logits, regression, torch.tensor(labels, dtype=torch.int64), targets)
    return Case(description, args, reference_fastrcnn_loss(*args), hint)


def _random_loss_inputs(generator: torch.Generator, r: int, c: int, positive: float) -> tuple[Tensor, Tensor, list[int], Tensor]:
    """Logits [r, c], deltas [r, 4c], labels (a share ``positive`` of them in 1 ... c - 1) and targets [r, 4]."""
    logits = 2 * torch.randn((r, c), generator=generator)
    regression = 0.5 * torch.randn((r, 4 * c), generator=generator)
    labels = torch.randint(1, c, (r,), generator=generator) * (torch.rand(r, generator=generator) < positive)
    targets = 0.5 * torch.randn((r, 4), generator=generator)
    return logits, regression, labels.tolist(), targets


def check_fastrcnn_loss(student_fn: Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]) -> None:
    """``my_fastrcnn_loss(class_logits [R, C], box_regression [R, 4C], labels [R], targets [R, 4]) -> (cls, box)`` vs torchvision's."""
    g = torch.Generator().manual_seed(1)
    logits, regression, _, targets = _random_loss_inputs(g, 6, 4, 1.0)
    logits_8, regression_8, _, targets_8 = _random_loss_inputs(g, 8, 3, 0.0)
    own = torch.zeros(2, 12)  # R = 2, C = 3: each positive's own 4 columns hold 1, the others 0
    own[0, 4:8], own[1, 8:12] = 1.0, 1.0
    small, large = torch.zeros(1, 8), torch.zeros(1, 8)
    small[0, 4], large[0, 4] = 0.05, 2.0  # the class-1 dx of one positive RoI: an error below and above beta = 1/9
    cases = [
        _loss_case("cross-entropy over all 6 RoIs, background included (every class's deltas exact: box loss 0)", logits,
                   targets.repeat(1, 4), [0, 3, 0, 1, 0, 0], targets, ALL_ROIS),
        _loss_case("class-specific columns: the positives (classes 1 and 2) are exact only in their own columns",
                   torch.zeros(2, 3), own, [1, 2], torch.ones(2, 4), OWN_CLASS),
        _loss_case("a small error (0.05 < beta = 1/9): quadratic, 0.5 · 0.05² · 9", torch.zeros(1, 2), small, [1],
                   torch.zeros(1, 4), BETA),
        _loss_case("a large error (2.0 > beta = 1/9): linear, 2.0 - 0.5 / 9", torch.zeros(1, 2), large, [1], torch.zeros(1, 4), BETA),
        _loss_case("one positive whose 4 deltas are all off by 1: the 4 terms are summed", torch.zeros(1, 2), torch.zeros(1, 8), [1],
                   torch.ones(1, 4), SUMMED),
        _loss_case("2 positives among 8 RoIs: the box loss is divided by 8", logits_8, regression_8, [0, 2, 0, 0, 1, 0, 0, 0],
                   targets_8, OVER_R),
        _loss_case("every RoI is background: the box loss is exactly 0", logits[:4], regression[:4], [0, 0, 0, 0], targets[:4],
                   NO_POSITIVE),
        _loss_case("every RoI is positive", logits, regression, [1, 2, 3, 1, 2, 3], targets, OWN_CLASS),
    ]
    for i in range(8):
        r, c = int(torch.randint(4, 33, (1,), generator=g)), int(torch.randint(2, 7, (1,), generator=g))
        logits, regression, labels, targets = _random_loss_inputs(g, r, c, 0.3)
        cases.append(_loss_case(f"random case #{i + 1}: {r} RoIs, {c} classes, {sum(v > 0 for v in labels)} positive",
                                logits, regression, labels, targets, f"{OWN_CLASS} {BETA} {OVER_R}"))
    run_cases(student_fn, cases, "my_fastrcnn_loss", atol=1e-5)
