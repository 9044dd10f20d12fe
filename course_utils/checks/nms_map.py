"""Checks for notebook 03 (NMS and mAP): greedy NMS and all-point average precision."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..boxes import nms
from ..metrics import average_precision
from ._core import Case, reference, run_cases

reference("nms")(nms)

STRICT = "suppress only when IoU > iou_threshold (strictly): a box whose IoU equals the threshold is kept."
ORDER = "return the kept indices by decreasing score (the order NMS keeps them), not in input order."
STABLE = "equal scores keep their input order: sort with torch.sort(scores, descending=True, stable=True)."
ONLY_KEPT = "only a box you KEEP suppresses others; a box that was already suppressed suppresses nothing."


def _t(rows: list[list[float]]) -> Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


def _nms_case(description: str, boxes: Tensor, scores: list[float], threshold: float, hint: str) -> Case:
    scores_t = torch.tensor(scores, dtype=torch.float32)
    return Case(description, (boxes, scores_t, threshold), nms(boxes, scores_t, threshold), hint)


def _random_boxes(generator: torch.Generator, n: int) -> Tensor:
    """``n`` boxes in a 100×100 image, in a few clusters so that many of them overlap."""
    centres = 100 * torch.rand((max(n // 4, 1), 2), generator=generator)
    cluster = torch.randint(len(centres), (n,), generator=generator)
    centre = centres[cluster] + 6 * torch.randn((n, 2), generator=generator)
    size = 10 + 30 * torch.rand((n, 2), generator=generator)
    return torch.cat([centre - size / 2, centre + size / 2], dim=1)


def check_nms(student_fn: Callable[[Tensor, Tensor, float], Tensor]) -> None:
    """Greedy NMS ``my_nms(boxes [N, 4], scores [N], iou_threshold) -> kept indices [K]`` vs ``boxes.nms``."""
    square = [0.0, 0.0, 10.0, 10.0]
    cases = [
        _nms_case("two boxes, the second overlapping the first with IoU 0.8", _t([square, [0, 0, 10, 8]]), [0.9, 0.8], 0.5,
                  "compute the IoU of the best box with the others and drop those above the threshold."),
        _nms_case("the best box comes last in the input", _t([[0, 0, 10, 8], [50, 50, 60, 60], square]), [0.6, 0.7, 0.9], 0.5,
                  "start from the highest score wherever it sits in the input; " + ORDER),
        _nms_case("IoU exactly equal to the threshold (0.5): both kept", _t([square, [0, 0, 10, 5]]), [0.9, 0.8], 0.5, STRICT),
        _nms_case("disjoint boxes: all kept", _t([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [0, 20, 10, 30]]),
                  [0.2, 0.9, 0.5, 0.7], 0.5, ORDER),
        _nms_case("a chain: A suppresses B; B overlaps C but is gone, so C stays", _t([[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10]]),
                  [0.9, 0.8, 0.7], 0.3, ONLY_KEPT),
        _nms_case("boxes that only touch (IoU 0) with threshold 0: kept", _t([square, [10, 0, 20, 10]]), [0.9, 0.8], 0.0,
                  "boxes that only touch have IoU 0, which is not > 0."),
        _nms_case("identical boxes with threshold 1: nothing suppressed", _t([square, square]), [0.9, 0.8], 1.0,
                  "IoU is at most 1, so with iou_threshold=1 no box is ever suppressed."),
        _nms_case("equal scores: the earlier index wins", _t([[0, 0, 10, 9], square, [30, 30, 40, 40]]), [0.5, 0.5, 0.5], 0.5, STABLE),
        _nms_case("many equal scores", _random_boxes(torch.Generator().manual_seed(7), 40), [0.5] * 40, 0.3, STABLE),
        _nms_case("a small box inside a big one (IoU 0.25), threshold 0.3: both kept", _t([[0, 0, 20, 20], [5, 5, 15, 15]]),
                  [0.9, 0.8], 0.3, "IoU of a box inside another is area(small) / area(big) = 100 / 400 = 0.25: not > 0.3."),
        _nms_case("a small box inside a big one (IoU 0.25), threshold 0.2: suppressed", _t([[0, 0, 20, 20], [5, 5, 15, 15]]),
                  [0.8, 0.9], 0.2, "the intersection of nested boxes is the small box: IoU = 100 / 400 = 0.25 > 0.2."),
        _nms_case("no boxes at all", _t([]), [], 0.5, "with no boxes, return an empty tensor of indices (torch.empty(0, dtype=torch.int64))."),
    ]
    generator = torch.Generator().manual_seed(0)
    for i in range(8):
        n = int(torch.randint(5, 60, (1,), generator=generator))
        boxes = _random_boxes(generator, n)
        scores = (torch.rand(n, generator=generator) * 20).round() / 20  # a few ties
        threshold = float(torch.rand(1, generator=generator)) * 0.8 + 0.1
        cases.append(_nms_case(f"random case #{i + 1}: {n} boxes, threshold {threshold:.3f}", boxes, scores.tolist(), threshold,
                               f"{ONLY_KEPT} Also: {STABLE}"))
    run_cases(student_fn, cases, "my_nms")


def _curve(hits: list[int], num_gt: int) -> tuple[Tensor, Tensor]:
    """Recall and precision (float64) of a ranked list of true (1) / false (0) positives."""
    tp = torch.cumsum(torch.tensor(hits, dtype=torch.float64), 0)
    return tp / num_gt, tp / torch.arange(1, len(hits) + 1, dtype=torch.float64)


@reference("average_precision")
def reference_average_precision(recall: Tensor, precision: Tensor) -> float:
    """All-point AP of a ranked list's recall [N] and precision [N]."""
    return average_precision(recall, precision, "all_points")


def _ap_case(description: str, recall: Tensor, precision: Tensor, hint: str) -> Case:
    return Case(description, (recall, precision), reference_average_precision(recall, precision), hint)


ENVELOPE = "make precision monotone from the right first: p[i] = max(p[i:]) (e.g. flip, cummax, flip)."


def check_average_precision(student_fn: Callable[[Tensor, Tensor], float]) -> None:
    """All-point AP ``my_average_precision(recall [N], precision [N]) -> float`` vs ``metrics.average_precision``."""
    cases = [
        _ap_case("a perfect ranking: precision 1 up to recall 1", *_curve([1, 1, 1, 1], 4),
                 "the area under precision 1 from recall 0 to 1 is 1: did you count the first step, from recall 0 to recall[0]?"),
        _ap_case("recall starts above 0: one detection, a hit, of 2 objects, then a false positive", *_curve([1, 0], 2),
                 "the first rectangle spans recall 0 to recall[0]: count it (prepend recall 0)."),
        _ap_case("the curve stops at recall 0.5: the other objects were never found", *_curve([1, 1, 0], 4),
                 "no area beyond the last recall: the envelope is 0 there."),
        _ap_case("a dip: a false positive, then hits again", *_curve([1, 0, 1, 1, 0, 1], 5), ENVELOPE),
        _ap_case("the first detections are false positives (precision 0 at recall 0)", *_curve([0, 0, 1, 0, 1], 2), ENVELOPE),
        _ap_case("only false positives: recall stays 0", *_curve([0, 0, 0], 3), "no recall gained, no area: AP is 0."),
        _ap_case("an empty curve (no detections)", torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64),
                 "no detection, no area: return 0.0."),
        _ap_case("a single point: recall 0.6 at precision 0.75", torch.tensor([0.6], dtype=torch.float64),
                 torch.tensor([0.75], dtype=torch.float64), "one point: the area is recall[0] × precision[0]."),
    ]
    generator = torch.Generator().manual_seed(0)
    for i in range(8):
        n = int(torch.randint(3, 40, (1,), generator=generator))
        hits = (torch.rand(n, generator=generator) < 0.6).int().tolist()
        num_gt = sum(hits) + int(torch.randint(0, 5, (1,), generator=generator))
        cases.append(_ap_case(f"random curve #{i + 1} ({n} detections, {num_gt} objects)", *_curve(hits, max(num_gt, 1)),
                              f"{ENVELOPE} Then sum (recall gained) × (envelope) at each point, starting from recall 0."))
    run_cases(student_fn, cases, "my_average_precision", atol=1e-6)
