"""course_utils.checks.anchors: correct solutions pass, typical mistakes get their specific hint, the student stub fails.
(The notebook's own solutions and student stubs are tested in test_notebook_exercises.py.)
"""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder, Matcher
from torchvision.ops import box_convert

from course_utils.anchors import decode_boxes, encode_boxes, match_anchors
from course_utils.checks import CheckFailed, check_decode, check_encode, check_match

CLIP = math.log(1000 / 16)

# --------------------------------------------------------------------------- independent correct solutions


def cxcywh_encode(gt, anchors):
    g, a = box_convert(gt, "xyxy", "cxcywh"), box_convert(anchors, "xyxy", "cxcywh")
    return torch.cat([(g[:, :2] - a[:, :2]) / a[:, 2:], torch.log(g[:, 2:] / a[:, 2:])], dim=1)


def cxcywh_decode(offsets, anchors):
    a = box_convert(anchors, "xyxy", "cxcywh")
    centre = a[:, :2] + offsets[:, :2] * a[:, 2:]
    size = a[:, 2:] * torch.exp(offsets[:, 2:].clamp(max=CLIP))
    return box_convert(torch.cat([centre, size], dim=1), "cxcywh", "xyxy")


def loop_match(iou, high, low):
    answer = []
    for column in iou.T.tolist():
        best = max(column)
        answer.append(column.index(best) if best >= high else (-1 if best < low else -2))
    return answer  # a plain list is accepted too


def torchvision_encode(gt, anchors):
    return BoxCoder(weights=(1.0, 1.0, 1.0, 1.0)).encode_single(gt, anchors)


def torchvision_decode(offsets, anchors):
    return BoxCoder(weights=(1.0, 1.0, 1.0, 1.0)).decode_single(offsets, anchors)


def torchvision_match(iou, high, low):
    return Matcher(high, low, allow_low_quality_matches=False)(iou)


@pytest.mark.parametrize(
    "check, solution, count",
    [
        (check_encode, encode_boxes, 12),
        (check_encode, cxcywh_encode, 12),
        (check_encode, torchvision_encode, 12),
        (check_decode, decode_boxes, 12),
        (check_decode, cxcywh_decode, 12),
        (check_decode, torchvision_decode, 12),
        (check_match, match_anchors, 14),
        (check_match, loop_match, 14),
        (check_match, torchvision_match, 14),
    ],
)
def test_correct_solutions_pass(check, solution, count, capsys):
    check(solution)
    name = check.__name__.removeprefix("check_")
    assert f"✅ {name}: all {count} cases pass" in capsys.readouterr().out


# --------------------------------------------------------------------------- typical mistakes


def _centres_and_sizes(boxes):
    return box_convert(boxes, "xyxy", "cxcywh").unbind(dim=1)


def encode_with_corners(gt, anchors):  # moves the top-left corner instead of the centre
    _, _, aw, ah = _centres_and_sizes(anchors)
    _, _, gw, gh = _centres_and_sizes(gt)
    return torch.stack([(gt[:, 0] - anchors[:, 0]) / aw, (gt[:, 1] - anchors[:, 1]) / ah, torch.log(gw / aw), torch.log(gh / ah)], dim=1)


def encode_without_log(gt, anchors):
    offsets = cxcywh_encode(gt, anchors)
    return torch.cat([offsets[:, :2], offsets[:, 2:].exp()], dim=1)  # gw / aw instead of log(gw / aw)


def encode_with_swapped_units(gt, anchors):  # dx divided by the height, dy by the width
    ax, ay, aw, ah = _centres_and_sizes(anchors)
    gx, gy, gw, gh = _centres_and_sizes(gt)
    return torch.stack([(gx - ax) / ah, (gy - ay) / aw, torch.log(gw / aw), torch.log(gh / ah)], dim=1)


def encode_swapped_arguments(gt, anchors):  # the anchor relative to the box
    return cxcywh_encode(anchors, gt)


def decode_without_clamp(offsets, anchors):
    a = box_convert(anchors, "xyxy", "cxcywh")
    centre = a[:, :2] + offsets[:, :2] * a[:, 2:]
    return box_convert(torch.cat([centre, a[:, 2:] * torch.exp(offsets[:, 2:])], dim=1), "cxcywh", "xyxy")


def decode_without_exp(offsets, anchors):
    a = box_convert(anchors, "xyxy", "cxcywh")
    centre = a[:, :2] + offsets[:, :2] * a[:, 2:]
    return box_convert(torch.cat([centre, a[:, 2:] * offsets[:, 2:]], dim=1), "cxcywh", "xyxy")


def decode_to_cxcywh(offsets, anchors):  # forgets to go back to corners
    return box_convert(cxcywh_decode(offsets, anchors), "xyxy", "cxcywh")


def decode_with_swapped_units(offsets, anchors):  # dx scaled by the anchor's height, dy by its width
    a = box_convert(anchors, "xyxy", "cxcywh")
    centre = a[:, :2] + offsets[:, :2] * a[:, [3, 2]]
    size = a[:, 2:] * torch.exp(offsets[:, 2:].clamp(max=CLIP))
    return box_convert(torch.cat([centre, size], dim=1), "cxcywh", "xyxy")


def match_strict_high(iou, high, low):
    best, index = iou.max(dim=0)
    return torch.where(best > high, index, torch.where(best < low, -1, -2))


def match_low_inclusive(iou, high, low):
    best, index = iou.max(dim=0)
    return torch.where(best >= high, index, torch.where(best <= low, -1, -2))


def match_over_the_wrong_axis(iou, high, low):
    best, index = iou.max(dim=1)
    return torch.where(best >= high, index, torch.where(best < low, -1, -2))


def match_without_ignored(iou, high, low):
    best, index = iou.max(dim=0)
    return torch.where(best >= high, index, -1)


def match_first_above_high(iou, high, low):
    answer = loop_match(iou, high, low)
    for p, column in enumerate(iou.T.tolist()):
        above = [g for g, value in enumerate(column) if value >= high]
        if above:
            answer[p] = above[0]
    return answer


def match_with_low_quality(iou, high, low):
    return match_anchors(iou, high, low, allow_low_quality_matches=True)


def not_started(*args):
    raise NotImplementedError("your code here")


def forgot_return(*args):
    pass


@pytest.mark.parametrize(
    "check, student, expected",
    [
        (check_encode, encode_with_corners, r"wrong on case: the same centre, twice as wide.*\n.*\n.*\n  hint: dx and dy move the anchor's \*centre\*"),
        (check_encode, encode_without_log, r"wrong on case: an anchor equal to its ground-truth box.*\n.*\n.*\n  hint: dw = log\(gw / aw\)"),
        (check_encode, encode_with_swapped_units, r"wrong on case: a wide anchor \(40×10\).*\n.*\n.*\n  hint: dx is measured in anchor widths"),
        (check_encode, encode_swapped_arguments, r"wrong on case: a box shifted right by half.*\n  your answer: .*\[\[-0.5, 0.0, 0.0, 0.0\]\]"),
        (check_decode, decode_without_clamp, r"wrong on case: a wild prediction dw = dh = 10 is clamped.*\n.*\n.*\n  hint: clamp dw and dh at log\(1000 / 16\)"),
        (check_decode, decode_without_exp, r"wrong on case: zero offsets give back the anchor itself\n  your answer: .*\[\[30.0, 30.0, 30.0, 30.0\]\]"),
        (check_decode, decode_to_cxcywh, r"wrong on case: zero offsets give back the anchor itself\n  your answer: .*\[\[30.0, 30.0, 40.0, 20.0\]\]"),
        (check_decode, decode_with_swapped_units, r"wrong on case: dx = 1 moves the anchor by one anchor width"),
        (check_match, match_strict_high, r"wrong on case: an IoU exactly at the high threshold.*\n  your answer: .*\[-2, -1\]\n  expected:    .*\[0, -1\]\n  hint: IoU >= high is a match"),
        (check_match, match_low_inclusive, r"wrong on case: an IoU exactly at the low threshold.*\n  your answer: .*\[-1, 0\]\n  expected:    .*\[-2, 0\]\n  hint: only IoU < low is background"),
        (check_match, match_over_the_wrong_axis, r"wrong on case: one GT, three anchors.*\n  your answer: .*\[0\]\n.*\n  hint: one entry per anchor"),
        (check_match, match_without_ignored, r"wrong on case: one GT, three anchors.*\n  your answer: .*\[0, -1, -1\]\n  expected:    .*\[0, -2, -1\]"),
        (check_match, match_first_above_high, r"wrong on case: an anchor above high for both GTs takes the one it overlaps most.*\n.*\n.*\n  hint: each anchor takes the GT it overlaps most"),
        (check_match, match_with_low_quality, r"wrong on case: a GT whose best IoU \(0.45\) is below high gets no anchor.*\n.*\n.*\n  hint: this exercise has no low-quality matches"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_typical_mistakes_get_their_specific_hint(check, student, expected):
    with pytest.raises(CheckFailed, match=expected) as info:
        check(student)
    assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)


@pytest.mark.parametrize("check, name", [(check_encode, "encode"), (check_decode, "decode"), (check_match, "match")])
def test_a_stub_is_not_attempted_and_a_missing_return_fails(check, name, capsys):
    check(not_started)
    assert capsys.readouterr().out.startswith(f"⏳ {name} is not implemented yet")
    with pytest.raises(CheckFailed, match=rf"^{name} returned None on case: .*Did you forget `return`\?"):
        check(forgot_return)
