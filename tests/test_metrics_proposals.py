import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_utils import metrics


def _brute_force(proposals, targets, threshold):
    """Each GT box, each proposal, one IoU at a time."""
    found = total = 0
    for props, target in zip(proposals, targets):
        for g in target["boxes"].tolist():
            total += 1
            for p in props.tolist():
                iw = max(0.0, min(g[2], p[2]) - max(g[0], p[0]))
                ih = max(0.0, min(g[3], p[3]) - max(g[1], p[1]))
                union = (g[2] - g[0]) * (g[3] - g[1]) + (p[2] - p[0]) * (p[3] - p[1]) - iw * ih
                if union > 0 and iw * ih / union >= threshold:
                    found += 1
                    break
    return found / total if total else 0.0


def _boxes(n, generator):
    xy = torch.rand((n, 2), generator=generator) * 80
    wh = 4 + torch.rand((n, 2), generator=generator) * 40
    return torch.cat([xy, xy + wh], 1)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.lists(st.tuples(st.integers(0, 30), st.integers(0, 5)), min_size=1, max_size=4),
       st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0]))
def test_equals_brute_force(seed, sizes, threshold):
    generator = torch.Generator().manual_seed(seed)
    proposals = [_boxes(p, generator) for p, _ in sizes]
    targets = [{"boxes": _boxes(g, generator)} for _, g in sizes]
    assert metrics.proposal_recall(proposals, targets, threshold) == pytest.approx(_brute_force(proposals, targets, threshold), abs=1e-12)


def test_fixed_cases():
    box = torch.tensor([[10.0, 10.0, 30.0, 30.0]])
    half = torch.tensor([[10.0, 10.0, 30.0, 20.0]])  # IoU 0.5 with box: the threshold is inclusive
    assert metrics.proposal_recall([box], [{"boxes": box}], 1.0) == 1.0
    assert metrics.proposal_recall([half], [{"boxes": box}], 0.5) == 1.0
    assert metrics.proposal_recall([half], [{"boxes": box}], 0.51) == 0.0
    assert metrics.proposal_recall([torch.zeros(0, 4), box], [{"boxes": box}, {"boxes": torch.cat([box, box + 50])}]) == pytest.approx(1 / 3)
    assert metrics.proposal_recall([box], [{"boxes": torch.zeros(0, 4)}]) == 0.0  # no ground truth at all


@pytest.mark.parametrize("proposals, targets, threshold, error, message", [
    ([torch.zeros(0, 4)], [], 0.5, ValueError, "one entry per image"),
    (torch.zeros(0, 4), [{"boxes": torch.zeros(0, 4)}], 0.5, TypeError, "sequences"),
    ([torch.zeros(3)], [{"boxes": torch.zeros(0, 4)}], 0.5, ValueError, r"proposals\[0\]"),
    ([torch.zeros(0, 4)], [{"labels": torch.zeros(0)}], 0.5, ValueError, r"targets\[0\]"),
    ([torch.zeros(0, 4)], [{"boxes": torch.zeros(0, 4)}], 1.5, ValueError, "iou_threshold"),
])  # fmt: skip
def test_bad_input_names_the_argument(proposals, targets, threshold, error, message):
    with pytest.raises(error, match=message):
        metrics.proposal_recall(proposals, targets, threshold)
