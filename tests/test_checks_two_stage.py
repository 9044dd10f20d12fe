"""course_utils.checks.check_roi_pool / check_filter_proposals / check_fastrcnn_loss: right answers pass, typical
mistakes get their hint, and the references equal torchvision's roi_pool, RPN filtering and Fast R-CNN loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torchvision.models.detection import roi_heads as tv_roi_heads
from torchvision.models.detection import rpn as tv_rpn

from course_utils import boxes
from course_utils.checks import (
    NOT_ATTEMPTED,
    Case,
    CheckFailed,
    check_fastrcnn_loss,
    check_filter_proposals,
    check_roi_pool,
    mistakes,
    run_cases,
)
from course_utils.checks._core import _same
from course_utils.checks.two_stage import reference_fastrcnn_loss, reference_filter_proposals, reference_roi_pool
from course_utils.detection import FasterRCNN

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------------
# _same on tuples of results
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "answer, expected, same",
    [
        ((torch.tensor(1.0), torch.tensor(2.0)), (torch.tensor(1.0), torch.tensor(2.0)), True),
        ([1.0, torch.tensor(2.00001)], (torch.tensor(1.0), torch.tensor(2.0)), True),  # a list, floats, within atol
        ((torch.tensor(1.0), torch.tensor(2.1)), (torch.tensor(1.0), torch.tensor(2.0)), False),
        ((torch.tensor(1.0),), (torch.tensor(1.0), torch.tensor(2.0)), False),  # one result missing
        (torch.tensor([1.0, 2.0]), (torch.tensor(1.0), torch.tensor(2.0)), False),  # one tensor, not two results
        ((torch.tensor(1.0), torch.tensor(float("nan"))), (torch.tensor(1.0), torch.tensor(0.0)), False),
        ((torch.zeros(2, 4), 3.0), (torch.zeros(2, 4), 3.0), True),
        ((torch.zeros(1, 4), 3.0), (torch.zeros(2, 4), 3.0), False),  # a shape differs
        (((1.0, 2.0), 3.0), ((1.0, 2.0), 3.0), True),  # nested
    ],
)
def test_same_compares_tuples_element_by_element(answer, expected, same):
    assert _same(answer, expected, 1e-4) is same


def test_same_keeps_its_behaviour_on_single_values():
    assert _same(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.00001]), 1e-4)
    assert not _same(torch.tensor([1.0]), torch.tensor([1.0, 2.0]), 1e-4)
    assert _same([1, 2], torch.tensor([1, 2]), 1e-4) and _same(0.50001, 0.5, 1e-4) and not _same("x", 0.5, 1e-4)
    assert _same("a", "a", 1e-4) and not _same(3, 4, 1e-4)


def test_run_cases_on_a_pair_reports_both_values():
    cases = [Case("two losses", (1.0,), (torch.tensor(1.0), torch.tensor(0.5)), "the second is half the first")]
    run_cases(lambda x: (torch.tensor(x), torch.tensor(x / 2)), cases, "f")
    with pytest.raises(CheckFailed, match=r"your answer: \(tensor\(1.\), tensor\(1.\)\)\n  expected:    \(tensor\(1.\), tensor\(0.5000\)\)"):
        run_cases(lambda x: (torch.tensor(x), torch.tensor(x)), cases, "f")


# ----------------------------------------------------------------------------------------------
# RoI pooling
# ----------------------------------------------------------------------------------------------
def round_half_away(v: float) -> int:
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def python_roi_pool(feature, box, output_size, *, snap=round_half_away, plus_one=1, start=math.floor, end=math.ceil,
                    clip=True, empty=0.0, initial=-math.inf, per_channel=True):
    """An independent solution with plain loops, whose every rule can be swapped for a mistaken one."""
    c, height, width = feature.shape
    x1, y1, x2, y2 = (snap(v) for v in box.tolist())
    bin_h, bin_w = max(y2 - y1 + plus_one, 1) / output_size, max(x2 - x1 + plus_one, 1) / output_size
    # without clipping, as slicing feature[:, a:b] does: a negative start counts from the end
    cells = (lambda a, b, size: range(min(max(a, 0), size), min(max(b, 0), size))) if clip else (lambda a, b, size: range(size)[a:b])
    out = torch.zeros(c, output_size, output_size)
    for i in range(output_size):
        rows = cells(y1 + start(i * bin_h), y1 + end((i + 1) * bin_h), height)
        for j in range(output_size):
            cols = cells(x1 + start(j * bin_w), x1 + end((j + 1) * bin_w), width)
            for k in range(c):
                values = [float(feature[kk, r, q]) for r in rows for q in cols for kk in ([k] if per_channel else range(c))]
                out[k, i, j] = max([initial, *values]) if values else empty
    return out


def torchvision_roi_pool(feature, box, output_size):
    return torchvision.ops.roi_pool(feature[None], [box[None]], output_size, spatial_scale=1.0)[0]


@pytest.mark.parametrize("solution", [reference_roi_pool, torchvision_roi_pool, python_roi_pool],
                         ids=["course_utils", "torchvision", "python-loops"])  # fmt: skip
def test_correct_roi_pool_passes(solution, capsys):
    check_roi_pool(solution)
    assert "✅ my_roi_pool: all 20 cases pass" in capsys.readouterr().out


def roi_pool_with(**mistake):
    return lambda feature, box, output_size: python_roi_pool(feature, box, output_size, **mistake)


@pytest.mark.parametrize(
    "student, expected",
    [
        (mistakes.roi_pool_without_rounding, r"wrong on case: fractional corners .*\n.*\n.*\n  hint: round each corner"),
        (roi_pool_with(snap=math.floor), r"wrong on case: fractional corners .*\n.*\n.*\n  hint: round each corner"),
        (roi_pool_with(plus_one=0), r"wrong on case: box \[0, 0, 7, 7\] .*\n.*\n.*\n  hint: the RoI includes its last row"),
        (roi_pool_with(start=int, end=int), r"wrong on case: box \[0, 0, 4, 4\] .*overlap.*\n.*\n.*\n  hint: bin i covers rows floor"),
        (roi_pool_with(clip=False), r"wrong on case: a box past the top-left border .*\n.*\n.*\n  hint: clip each bin"),
        (roi_pool_with(empty=-math.inf), r"wrong on case: a box past the bottom-right border .*\n.*\n.*\n  hint: clip each bin"),
        (roi_pool_with(initial=0.0, empty=0.0),
         r"wrong on case: negative feature values.*\n  your answer: \[\[\[0.0, 0.0\], \[0.0, 0.0\]\]\]\n.*\n  hint: take the max"),
        (roi_pool_with(per_channel=False), r"wrong on case: 3 channels.*\n.*\n.*\n  hint: pool each channel on its own"),
        (lambda f, b, n: reference_roi_pool(f, b, n)[0], r"wrong on case: box \[0, 0, 7, 7\].*\n  your answer: shape \(2, 2\)"),
    ],
    ids=["shipped-truncation", "floor", "no-plus-one", "int-bins", "no-clip", "empty-minus-inf", "max-from-zero",
         "channels-merged", "drops-channels"],
)  # fmt: skip
def test_roi_pool_mistakes_get_their_hint(student, expected):
    with pytest.raises(CheckFailed, match=expected):
        check_roi_pool(student)


def test_a_one_cell_mistake_is_caught_on_the_one_cell_box():
    def no_minimum(feature, box, output_size):  # bins computed without the RoI's 1×1 minimum: empty when x2 < x1 + 1
        if box[2] == box[0] and box[3] == box[1]:
            return torch.zeros(feature.shape[0], output_size, output_size)
        return reference_roi_pool(feature, box, output_size)

    with pytest.raises(CheckFailed, match=r"a 1-cell box .*\n.*\n.*\n  hint: a 1×1 RoI"):
        check_roi_pool(no_minimum)


def test_roi_pool_reference_equals_torchvision_on_random_cases():
    g = torch.Generator().manual_seed(123)
    for _ in range(300):
        c, height, width = int(torch.randint(1, 4, (1,), generator=g)), *(int(v) for v in torch.randint(1, 15, (2,), generator=g))
        feature = torch.randn((c, height, width), generator=g)
        corner = torch.rand(2, generator=g) * torch.tensor([width + 6.0, height + 6.0]) - 6
        box = torch.cat([corner, corner + torch.rand(2, generator=g) * 12])
        n = int(torch.randint(1, 6, (1,), generator=g))
        assert torch.equal(reference_roi_pool(feature, box, n), torchvision_roi_pool(feature, box, n))
        if _ < 30:  # the loops are slow: a few are enough to cross-check them
            assert torch.equal(python_roi_pool(feature, box, n), torchvision_roi_pool(feature, box, n))


# ----------------------------------------------------------------------------------------------
# The RPN's proposal filtering
# ----------------------------------------------------------------------------------------------
def course_rpn_filter(box_list, logits, image_size, pre, post, iou):
    """The course FasterRCNN's own ``rpn.filter_proposals`` (eval mode, score_thresh 0) on one image."""
    rpn = FasterRCNN(num_classes=2, rpn_pre_nms_top_n_test=pre, rpn_post_nms_top_n_test=post, rpn_nms_thresh=iou).rpn.eval()
    return rpn.filter_proposals(box_list[None], logits[None], [image_size])[0]


def torchvision_rpn_filter(box_list, logits, image_size, pre, post, iou):
    """torchvision's ``RegionProposalNetwork.filter_proposals`` on one image and one feature level."""
    generator = torchvision.models.detection.anchor_utils.AnchorGenerator(((32,),), ((1.0,),))
    network = tv_rpn.RegionProposalNetwork(generator, tv_rpn.RPNHead(8, 1), 0.7, 0.3, 64, 0.5,
                                           dict(training=pre, testing=pre), dict(training=post, testing=post), iou).eval()
    return network.filter_proposals(box_list[None], logits[None], [image_size], [len(logits)])[0][0]


def random_proposal_inputs(g: torch.Generator, ties: bool):
    n = int(torch.randint(0, 120, (1,), generator=g))
    height, width = (int(v) for v in torch.randint(20, 150, (2,), generator=g))
    centre = torch.rand((n, 2), generator=g) * torch.tensor([width + 40.0, height + 40.0]) - 20
    size = torch.rand((n, 2), generator=g) * 40
    box_list = torch.cat([centre - size / 2, centre + size / 2], 1)
    logits = 3 * torch.randn(n, generator=g)
    if ties:
        logits = logits.round()
    pre, post = int(torch.randint(1, 150, (1,), generator=g)), int(torch.randint(1, 60, (1,), generator=g))
    return box_list, logits, (height, width), pre, post, round(float(torch.rand(1, generator=g)), 2)


@pytest.mark.parametrize("ties", [False, True], ids=["distinct-logits", "tied-logits"])
def test_filter_proposals_reference_equals_the_course_rpn_and_torchvision(ties):
    g = torch.Generator().manual_seed(7 + ties)
    for _ in range(60):
        args = random_proposal_inputs(g, ties)
        ours = reference_filter_proposals(*args)
        assert torch.equal(ours, course_rpn_filter(*args)), args[2:]
        assert torch.equal(ours, torchvision_rpn_filter(*args)), args[2:]


@pytest.mark.parametrize("solution", [reference_filter_proposals, course_rpn_filter, torchvision_rpn_filter],
                         ids=["reference", "course-rpn", "torchvision-rpn"])  # fmt: skip
def test_correct_filter_proposals_passes(solution, capsys):
    check_filter_proposals(solution)
    assert "✅ my_filter_proposals: all 21 cases pass" in capsys.readouterr().out


def filter_with(*, top=None, clip=None, thin=True, thin_first=False, cut_first=False, nms=boxes.nms):
    """A proposal filter whose every step can be swapped for a mistaken one (``None``: the right step)."""

    def right_clip(b, size):
        height, width = size
        return torch.stack([b[:, 0].clamp(0, width), b[:, 1].clamp(0, height), b[:, 2].clamp(0, width), b[:, 3].clamp(0, height)], 1)

    def drop_thin(b, s):
        keep = (b[:, 2] - b[:, 0] >= 1e-3) & (b[:, 3] - b[:, 1] >= 1e-3) if thin else torch.ones(len(b), dtype=torch.bool)
        return b[keep], s[keep]

    def solution(box_list, logits, image_size, pre, post, iou):
        index = (top or (lambda s, k: s.topk(min(k, len(s))).indices))(logits, pre)
        b, s = box_list[index], torch.sigmoid(logits[index])
        if thin_first:
            b, s = drop_thin(b, s)
        b = (clip or right_clip)(b, image_size)
        if not thin_first:
            b, s = drop_thin(b, s)
        if cut_first:
            order = torch.sort(s, descending=True, stable=True).indices[:post]
            return b[order][nms(b[order], s[order], iou)]
        return b[nms(b, s, iou)[:post]]

    return solution


def at_least_kth(logits, k):
    """Every logit >= the k-th largest: more than k when logits tie at the cut."""
    if len(logits) <= k:
        return torch.arange(len(logits))
    kth = logits.topk(k).values[-1]
    keep = torch.where(logits >= kth)[0]
    return keep[torch.sort(logits[keep], descending=True, stable=True).indices]


def swapped_clip(b, size):
    width, height = size  # reads image_size as (width, height)
    return torch.stack([b[:, 0].clamp(0, width), b[:, 1].clamp(0, height), b[:, 2].clamp(0, width), b[:, 3].clamp(0, height)], 1)


@pytest.mark.parametrize(
    "student, expected",
    [
        (mistakes.filter_proposals_nms_before_topk,
         r"wrong on case: top-k before NMS.*\n  your answer: shape \(2, 4\).*\n  expected:    shape \(1, 4\).*\n  hint: take the pre_nms_top_n"),
        (filter_with(top=lambda s, k: s.topk(k).indices), r"my_filter_proposals raised RuntimeError: .*\n  on case: fewer boxes"),
        (filter_with(top=lambda s, k: torch.arange(len(s))), r"wrong on case: top-k before NMS.*\n.*\n.*\n  hint: take the pre_nms"),
        (filter_with(top=at_least_kth), r"wrong on case: ties at the top-k cut .*\n.*\n.*\n  hint: topk keeps exactly"),
        (filter_with(clip=lambda b, size: b), r"wrong on case: boxes partly outside the image.*\n.*\n.*\n  hint: clip x1, x2"),
        (filter_with(clip=swapped_clip), r"wrong on case: a wide image .*\n.*\n.*\n  hint: clip .*image_size is \(height, width\)"),
        (filter_with(thin=False), r"wrong on case: a box left of the image .*\n.*\n.*\n  hint: after clipping, drop"),
        (filter_with(thin_first=True), r"wrong on case: a box left of the image .*\n.*\n.*\n  hint: after clipping, drop"),
        (filter_with(cut_first=True), r"wrong on case: post_nms_top_n 2 after NMS.*\n.*\n.*\n  hint: cut to post_nms_top_n \*after\*"),
        (filter_with(nms=lambda b, s, t: torch.arange(len(b))), r"wrong on case: fewer boxes .*\n.*\n.*\n  hint: NMS at iou_threshold"),
        (lambda b, s, size, pre, post, iou: torch.zeros(0, 4), r"wrong on case: fewer boxes .*\n  your answer: shape \(0, 4\)"),
    ],
    ids=["shipped-nms-first", "topk-crash", "no-topk", "at-least-kth", "no-clip", "swapped-hw", "keeps-thin",
         "thin-before-clip", "post-cut-first", "no-nms", "nothing"],
)  # fmt: skip
def test_filter_proposals_mistakes_get_their_hint(student, expected):
    with pytest.raises(CheckFailed, match=expected):
        check_filter_proposals(student)


def test_nms_before_clipping_is_caught():
    def nms_before_clipping(box_list, logits, image_size, pre, post, iou):
        index = logits.topk(min(pre, len(logits))).indices
        b, s = box_list[index], torch.sigmoid(logits[index])
        keep = boxes.nms(b, s, iou)
        return filter_with()(b[keep], logits[index][keep], image_size, len(keep), post, 1.0)

    with pytest.raises(CheckFailed, match=r"wrong on case: clipping before NMS.*\n.*\n.*\n  hint: clip before NMS"):
        check_filter_proposals(nms_before_clipping)


# ----------------------------------------------------------------------------------------------
# The Fast R-CNN loss
# ----------------------------------------------------------------------------------------------
def torchvision_fastrcnn_loss(class_logits, box_regression, labels, regression_targets):
    return tv_roi_heads.fastrcnn_loss(class_logits, box_regression, [labels], [regression_targets])


def course_heads_fastrcnn_loss(class_logits, box_regression, labels, regression_targets):
    heads = FasterRCNN(num_classes=class_logits.shape[1]).roi_heads
    return heads.fastrcnn_loss(class_logits, box_regression, [labels], [regression_targets])


def as_floats(*args):
    return tuple(float(v) for v in reference_fastrcnn_loss(*args))


@pytest.mark.parametrize("solution", [reference_fastrcnn_loss, torchvision_fastrcnn_loss, course_heads_fastrcnn_loss, as_floats],
                         ids=["reference", "torchvision", "course-roi-heads", "returns-floats"])  # fmt: skip
def test_correct_fastrcnn_loss_passes(solution, capsys):
    check_fastrcnn_loss(solution)
    assert "✅ my_fastrcnn_loss: all 16 cases pass" in capsys.readouterr().out


def test_fastrcnn_loss_reference_equals_torchvision_on_random_cases():
    g = torch.Generator().manual_seed(11)
    for _ in range(200):
        r, c = int(torch.randint(1, 64, (1,), generator=g)), int(torch.randint(2, 9, (1,), generator=g))
        logits, regression = 3 * torch.randn((r, c), generator=g), torch.randn((r, 4 * c), generator=g)
        labels = torch.randint(0, c, (r,), generator=g) * (torch.rand(r, generator=g) < torch.rand(1, generator=g))
        targets = torch.randn((r, 4), generator=g) * torch.rand(1, generator=g)
        ours, theirs = reference_fastrcnn_loss(logits, regression, labels, targets), torchvision_fastrcnn_loss(logits, regression, labels, targets)
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


def loss_with(*, column=lambda labels: labels, beta=1 / 9, reduction="sum", divide_by=len, positives_only_ce=False):
    """A Fast R-CNN loss whose every rule can be swapped for a mistaken one."""

    def solution(class_logits, box_regression, labels, regression_targets):
        positive = torch.where(labels > 0)[0]
        deltas = box_regression.reshape(len(labels), -1, 4)[positive, column(labels[positive])]
        box = F.smooth_l1_loss(deltas, regression_targets[positive], beta=beta, reduction=reduction)
        box = box / divide_by(labels) if reduction == "sum" else box
        ce = F.cross_entropy(class_logits[positive], labels[positive]) if positives_only_ce else F.cross_entropy(class_logits, labels)
        return ce, box

    return solution


@pytest.mark.parametrize(
    "student, expected",
    [
        (mistakes.fastrcnn_loss_over_positives,
         r"wrong on case: 2 positives among 8 RoIs.*\n.*\n.*\n  hint: divide the box loss's sum by R"),
        (loss_with(divide_by=lambda labels: (labels > 0).sum()), r"wrong on case: 2 positives among 8 RoIs.*\n.*\n.*\n  hint: divide"),
        (loss_with(column=lambda labels: torch.zeros_like(labels)), r"wrong on case: class-specific columns.*\n.*\n.*\n  hint: each positive"),
        (loss_with(column=lambda labels: labels - 1), r"wrong on case: class-specific columns.*\n.*\n.*\n  hint: each positive"),
        (loss_with(beta=1.0), r"wrong on case: a small error \(0.05 < beta = 1/9\).*\n.*\n.*\n  hint: smooth-L1 with beta = 1/9"),
        (loss_with(reduction="mean"), r"wrong on case: a small error.*\n.*\n.*\n  hint: smooth-L1 .*summed over the deltas"),
        (loss_with(positives_only_ce=True), r"wrong on case: cross-entropy over all 6 RoIs.*\n.*\n.*\n  hint: the classification loss"),
        (lambda *args: reference_fastrcnn_loss(*args)[1], r"wrong on case: cross-entropy over all 6 RoIs"),  # one value, not two
        (lambda *args: reference_fastrcnn_loss(*args)[::-1], r"wrong on case: cross-entropy over all 6 RoIs"),  # swapped
    ],
    ids=["shipped-over-positives", "over-positives", "class-agnostic", "label-minus-one", "beta-1", "mean", "ce-positives",
         "one-value", "swapped"],
)  # fmt: skip
def test_fastrcnn_loss_mistakes_get_their_hint(student, expected):
    with pytest.raises(CheckFailed, match=expected):
        check_fastrcnn_loss(student)


def test_no_positive_nan_is_caught_on_the_background_case():
    def nan_without_positives(*args):
        labels = args[2]
        cls, box = reference_fastrcnn_loss(*args)
        return (cls, box) if bool((labels > 0).any()) else (cls, torch.tensor(float("nan")))

    with pytest.raises(CheckFailed, match=r"every RoI is background.*\n  your answer: \(.*nan\)\)\n.*\n  hint: with no positive RoI"):
        check_fastrcnn_loss(nan_without_positives)


# ----------------------------------------------------------------------------------------------
# Stubs and the notebook's shipped mistakes
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("check, name", [(check_roi_pool, "my_roi_pool"), (check_filter_proposals, "my_filter_proposals"),
                                         (check_fastrcnn_loss, "my_fastrcnn_loss")])  # fmt: skip
def test_a_stub_prints_the_not_attempted_line(check, name, capsys):
    def stub(*args):
        raise NotImplementedError("your code here")

    check(stub)
    assert capsys.readouterr().out == (
        f"{NOT_ATTEMPTED} {name} is not implemented yet: replace `raise NotImplementedError` with your code, then run this cell again.\n"
    )
