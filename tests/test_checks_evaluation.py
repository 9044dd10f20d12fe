"""checks.check_pointing_game: correct solutions pass, typical mistakes get their specific message,
and the expected values agree with an independent loop (the notebook's solution and student stub
are tested in test_notebook_exercises.py)."""

from __future__ import annotations


import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_utils import xai
from course_utils.checks import CheckFailed, check_pointing_game
from course_utils.checks import evaluation as checks_evaluation



# --------------------------------------------------------------------------- correct solutions


def loop_pointing_game(heatmaps, boxes):
    """Plain Python: scan every pixel for the first strict maximum, then test every box."""
    hits = 0
    for heatmap, image_boxes in zip(heatmaps.tolist(), boxes):
        best, point = None, None
        for i, row in enumerate(heatmap):
            for j, value in enumerate(row):
                if best is None or value > best:
                    best, point = value, (j + 0.5, i + 0.5)
        x, y = point
        hits += any(x1 <= x <= x2 and y1 <= y <= y2 for x1, y1, x2, y2 in image_boxes.tolist())
    return hits / len(heatmaps)


def vectorized_pointing_game(heatmaps, boxes):
    """Flat argmax, then one broadcast comparison per image; returns a 0-dim tensor."""
    n, _, width = heatmaps.shape
    flat = heatmaps.flatten(1).argmax(dim=1)
    centres = torch.stack([flat % width, flat // width], dim=1) + 0.5
    hits = [((b[:, :2] <= c) & (c <= b[:, 2:])).all(dim=1).any() for c, b in zip(centres, boxes)]
    return torch.stack(hits).float().mean()


def library_pointing_game(heatmaps, boxes):
    return xai.pointing_game(heatmaps, boxes)["hit_rate"]


@pytest.mark.parametrize("solution", [loop_pointing_game, vectorized_pointing_game, library_pointing_game])
def test_a_correct_pointing_game_passes(solution, capsys):
    check_pointing_game(solution)
    assert "✅ pointing_game: all 22 cases pass" in capsys.readouterr().out  # 12 fixed + 10 random


# Derived by hand from each case's description (pixel (row i, column j) has its centre at (j + .5, i + .5)).
BY_HAND = {
    "one image, its maximum in the middle of the box": 1.0,  # (3.5, 3.5) in (2, 2, 6, 6)
    "the maximum one column right of the box: column 5 when x2 = 5 (a miss)": 0.0,  # x = 5.5 > 5
    "fractional box coordinates (2.4, 2.4, 4.6, 4.6), the maximum's centre at (4.5, 3.5)": 1.0,
    "the maximum's centre exactly on the box's left border x1 = 3.5": 1.0,  # x = 3.5 = x1
    "the maximum's centre exactly on the box's bottom-right corner (3.5, 3.5)": 1.0,
    "a non-square 4×9 map, its maximum at row 1, column 6": 1.0,  # (6.5, 1.5) in (6, 1, 7, 2)
    "two boxes, the maximum in the second one": 1.0,  # (8.5, 7.5) in (6, 6, 10, 10)
    "a tie: the first maximum (row-major) is outside the box, the second inside (a miss)": 0.0,  # (7.5, 0.5)
    "a constant heatmap: every pixel ties, so the point is the top-left pixel": 1.0,  # (0.5, 0.5)
    "signed values: -9 outside the box, the maximum +1 inside": 1.0,  # (6.5, 6.5) in (5, 5, 8, 8)
    "four images, three hits: hit rate 3 / 4": 0.75,
    "two images, the second without any box: hit rate 1 / 2": 0.5,
}


def test_the_fixed_expected_values_are_derived_by_hand_and_by_a_loop():
    cases = checks_evaluation._fixed_cases()
    assert [case.description for case in cases] == list(BY_HAND)
    for case in cases:
        assert case.expected == pytest.approx(BY_HAND[case.description], abs=1e-12)
        assert loop_pointing_game(*case.args) == pytest.approx(case.expected, abs=1e-12)


def test_the_random_cases_are_varied_and_agree_with_the_loop():
    generator = torch.Generator().manual_seed(12)
    cases = [checks_evaluation._random_case(i + 1, generator) for i in range(10)]
    rates = [case.expected for case in cases]
    assert len(set(rates)) >= 4 and max(rates) > 0, "the random cases must not all give the same answer"
    assert any((h.flatten(1) == h.flatten(1).amax(1, keepdim=True)).sum(1).gt(1).any() for h, _ in (c.args for c in cases))
    assert any(len(b) == 0 for _, boxes in (c.args for c in cases) for b in boxes), "some image has no box"
    for case in cases:
        assert loop_pointing_game(*case.args) == pytest.approx(case.expected, abs=1e-12)


@st.composite
def pointing_problem(draw):
    n, height, width = draw(st.integers(1, 5)), draw(st.integers(1, 10)), draw(st.integers(1, 10))
    values = st.integers(0, 3).map(float)  # few levels: many ties
    heatmaps = torch.tensor(draw(st.lists(values, min_size=n * height * width, max_size=n * height * width)))
    coordinate = st.floats(-2, 12, allow_nan=False).map(lambda v: round(v * 2) / 2)  # often on a pixel centre or edge
    boxes = []
    for _ in range(n):
        rows = []
        for _ in range(draw(st.integers(0, 3))):
            xs, ys = sorted([draw(coordinate), draw(coordinate)]), sorted([draw(coordinate), draw(coordinate)])
            rows.append([xs[0], ys[0], xs[1], ys[1]])
        boxes.append(torch.tensor(rows, dtype=torch.float32).reshape(-1, 4))
    return heatmaps.view(n, height, width), boxes


@settings(max_examples=100, deadline=None)
@given(pointing_problem())
def test_the_reference_equals_the_loop_definition(problem):
    """The check's reference (xai.pointing_game) is the exercise's definition, ties and borders included."""
    heatmaps, boxes = problem
    assert library_pointing_game(heatmaps, boxes) == pytest.approx(loop_pointing_game(heatmaps, boxes), abs=1e-12)
    assert float(vectorized_pointing_game(heatmaps, boxes)) == pytest.approx(loop_pointing_game(heatmaps, boxes), abs=1e-6)


# --------------------------------------------------------------------------- typical mistakes


def _rate(heatmaps, boxes, point_of, inside):
    """Skeleton for the mistakes: ``point_of(heatmap) -> (x, y)``, ``inside(x, y, box) -> bool``."""
    hits = sum(any(inside(*point_of(h), b) for b in bs.tolist()) for h, bs in zip(heatmaps, boxes))
    return hits / len(heatmaps)


def first_max_centre(heatmap):
    k = int(heatmap.flatten().argmax())
    return k % heatmap.shape[1] + 0.5, k // heatmap.shape[1] + 0.5


def closed_box(x, y, box):
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def no_half_pixel(heatmaps, boxes):
    def corner(heatmap):
        k = int(heatmap.flatten().argmax())
        return k % heatmap.shape[1], k // heatmap.shape[1]

    return _rate(heatmaps, boxes, corner, closed_box)


def strict_border(heatmaps, boxes):
    return _rate(heatmaps, boxes, first_max_centre, lambda x, y, b: b[0] < x < b[2] and b[1] < y < b[3])


def rows_and_columns_swapped(heatmaps, boxes):
    def swapped(heatmap):
        k = int(heatmap.flatten().argmax())
        return k // heatmap.shape[1] + 0.5, k % heatmap.shape[1] + 0.5

    return _rate(heatmaps, boxes, swapped, closed_box)


def first_box_only(heatmaps, boxes):
    return _rate(heatmaps, [b[:1] for b in boxes], first_max_centre, closed_box)


def last_maximum(heatmaps, boxes):
    def last(heatmap):
        flat = heatmap.flatten()
        k = int((flat == flat.max()).nonzero()[-1])
        return k % heatmap.shape[1] + 0.5, k // heatmap.shape[1] + 0.5

    return _rate(heatmaps, boxes, last, closed_box)


def any_maximum_in_a_box(heatmaps, boxes):
    hits = 0
    for heatmap, image_boxes in zip(heatmaps, boxes):
        rows, columns = (heatmap == heatmap.max()).nonzero(as_tuple=True)
        hits += any(closed_box(c + 0.5, r + 0.5, b) for r, c in zip(rows.tolist(), columns.tolist()) for b in image_boxes.tolist())
    return hits / len(heatmaps)


def largest_magnitude(heatmaps, boxes):
    return _rate(heatmaps.abs(), boxes, first_max_centre, closed_box)


def skips_images_without_boxes(heatmaps, boxes):
    kept = [i for i, b in enumerate(boxes) if len(b)]
    return _rate(heatmaps[kept], [boxes[i] for i in kept], first_max_centre, closed_box)


def counts_hits(heatmaps, boxes):
    return _rate(heatmaps, boxes, first_max_centre, closed_box) * len(heatmaps)


def rounds_the_boxes(heatmaps, boxes):
    return _rate(heatmaps, [b.long().float() for b in boxes], first_max_centre, closed_box)


@pytest.mark.parametrize(
    "student, expected",
    [
        (no_half_pixel, r"wrong on case: the maximum one column right of the box.*\n  your answer: 1\.0\n  expected:    0\.0\n  hint: boxes use pixel-EDGE"),
        (strict_border, r"wrong on case: the maximum's centre exactly on the box's left border.*\n.*\n.*\n  hint: .*<= and >="),
        (rows_and_columns_swapped, r"wrong on case: a non-square 4×9 map.*\n.*\n.*\n  hint: for an H×W map the flat argmax k is row k // W"),
        (first_box_only, r"wrong on case: two boxes, the maximum in the second one\n.*\n.*\n  hint: .*ANY of its boxes"),
        (last_maximum, r"wrong on case: a tie: .*\n  your answer: 1\.0\n  expected:    0\.0\n  hint: on ties take the FIRST maximum"),
        (any_maximum_in_a_box, r"wrong on case: a tie: .*\n.*\n.*\n  hint: on ties take the FIRST maximum"),
        (largest_magnitude, r"wrong on case: signed values.*\n.*\n.*\n  hint: .*not the largest magnitude"),
        (rounds_the_boxes, r"wrong on case: fractional box coordinates.*\n.*\n.*\n  hint: box coordinates can be fractions"),
        (skips_images_without_boxes, r"wrong on case: two images, the second without any box.*\n  your answer: 1\.0\n  expected:    0\.5\n  hint: an image with no box"),
        (counts_hits, r"wrong on case: four images, three hits.*\n  your answer: 3\.0\n  expected:    0\.75\n  hint: return the hit RATE"),
    ],
    ids=["no-half-pixel", "strict-border", "rows-columns", "first-box", "last-max", "any-max", "abs", "round-boxes", "skip-empty", "count"],
)
def test_typical_mistakes_get_a_specific_message(student, expected):
    with pytest.raises(CheckFailed, match=expected):
        check_pointing_game(student)


@pytest.mark.parametrize("index", range(12))
def test_every_fixed_case_reports_its_description_and_hint(index):
    """A function right everywhere but on one fixed case is caught on that case, with that case's hint."""
    bad = checks_evaluation._fixed_cases()[index]

    def wrong_on_one_case(heatmaps, boxes):
        if heatmaps.shape == bad.args[0].shape and torch.equal(heatmaps, bad.args[0]) and all(
            torch.equal(a, b) for a, b in zip(boxes, bad.args[1])
        ):
            return 0.25
        return loop_pointing_game(heatmaps, boxes)

    with pytest.raises(CheckFailed) as info:
        check_pointing_game(wrong_on_one_case)
    message = str(info.value)
    assert f"on case: {bad.description}\n  your answer: 0.25\n" in message
    assert message.endswith(f"hint: {bad.hint}")


def test_a_wrong_answer_on_a_random_case_only_is_caught():
    def off_on_big_batches(heatmaps, boxes):
        rate = loop_pointing_game(heatmaps, boxes)
        return rate + 1 / len(heatmaps) if len(heatmaps) > 4 and rate < 1 else rate

    with pytest.raises(CheckFailed, match=r"wrong on case: random #\d+"):
        check_pointing_game(off_on_big_batches)
