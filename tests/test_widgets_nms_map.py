"""course_utils.widgets.nms_map: the simulated detector, NMS traces, PR curves, figures and dashboards (headless)."""

from __future__ import annotations

import functools

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

from course_utils import boxes, data, metrics
from course_utils.widgets import nms_map as M


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------
def random_detections(seed: int, n: int, *, num_classes: int = 3, size: float = 100.0) -> dict[str, torch.Tensor]:
    """``n`` clustered boxes (so that many overlap) with scores that sometimes tie, and labels."""
    g = torch.Generator().manual_seed(seed)
    centres = size * torch.rand((max(n // 3, 1), 2), generator=g)
    centre = centres[torch.randint(len(centres), (n,), generator=g)] + 5 * torch.randn((n, 2), generator=g)
    wh = 5 + 30 * torch.rand((n, 2), generator=g)
    return {
        "boxes": torch.cat([centre - wh / 2, centre + wh / 2], 1),
        "scores": (torch.rand(n, generator=g) * 10).round() / 10,  # ties
        "labels": torch.randint(1, num_classes + 1, (n,), generator=g),
    }


def as_target(detections: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"boxes": detections["boxes"], "labels": detections["labels"]}


@functools.lru_cache(maxsize=1)
def scene_targets(n: int = 16) -> list[dict[str, torch.Tensor]]:
    return [target for _, target in data.SyntheticScenes(n, seed=5, **M.SCENE_OPTIONS)]


def no_noise(**overrides) -> dict:
    options = dict(miss_rate=0.0, jitter=0.0, wrong_label_rate=0.0, false_positives=0)
    return {**options, **overrides}


# ----------------------------------------------------------------------------------------------
# simulate_detections
# ----------------------------------------------------------------------------------------------
def test_simulation_format_and_ranges():
    for seed, target in enumerate(scene_targets()):
        det = M.simulate_detections(target, seed)
        n = len(det["boxes"])
        assert det["boxes"].dtype == torch.float32 and det["boxes"].shape == (n, 4)
        assert det["scores"].dtype == torch.float32 and det["scores"].shape == (n,)
        assert det["labels"].dtype == torch.int64 and det["labels"].shape == (n,)
        b = det["boxes"]
        assert bool((b[:, 2:] >= b[:, :2]).all()) and bool((b >= 0).all()) and bool((b <= 128).all())
        assert bool(((det["scores"] >= 0.01) & (det["scores"] <= 0.99)).all())
        assert bool(((det["labels"] >= 1) & (det["labels"] <= len(data.SHAPES))).all())


def test_simulation_is_deterministic_by_seed():
    target = scene_targets()[0]
    a, b, c = M.simulate_detections(target, 3), M.simulate_detections(target, 3), M.simulate_detections(target, 4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(a[k].shape == c[k].shape and torch.equal(a[k], c[k]) for k in a)


def test_without_noise_every_detection_is_an_exact_copy_of_its_object():
    for seed, target in enumerate(scene_targets()):
        det = M.simulate_detections(target, seed, **no_noise(max_duplicates=3))
        iou = boxes.box_iou(det["boxes"], target["boxes"])
        best = iou.argmax(1)
        assert torch.allclose(iou.max(1).values, torch.ones(len(det["boxes"])))
        assert torch.equal(det["labels"], target["labels"][best])
        counts = torch.bincount(best, minlength=len(target["boxes"]))
        assert bool(((counts >= 1) & (counts <= 3)).all())  # every object found, 1 to 3 copies
        single = M.simulate_detections(target, seed, **no_noise(max_duplicates=1))
        order = torch.sort(boxes.box_iou(single["boxes"], target["boxes"]).argmax(1)).indices
        assert torch.equal(single["boxes"][order], target["boxes"])


def test_all_missed_and_no_false_positives_gives_empty_tensors():
    det = M.simulate_detections(scene_targets()[0], 0, **no_noise(miss_rate=1.0))
    assert det["boxes"].shape == (0, 4) and det["scores"].shape == (0,) and det["labels"].shape == (0,)


def test_an_empty_image_only_gets_false_positives():
    empty = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)}
    counts = [len(M.simulate_detections(empty, seed, false_positives=2.0, num_classes=3)["boxes"]) for seed in range(200)]
    assert abs(np.mean(counts) - 2.0) < 5 * np.sqrt(2.0 / 200)  # Poisson(2): mean 2, variance 2
    det = M.simulate_detections(empty, 1, false_positives=5.0, num_classes=3)
    assert bool(((det["labels"] >= 1) & (det["labels"] <= 3)).all())


def test_number_of_copies_follows_the_miss_rate_and_max_duplicates():
    targets = scene_targets()
    n_objects = sum(len(t["boxes"]) for t in targets)
    total = sum(
        len(M.simulate_detections(t, seed, **no_noise(miss_rate=0.2, max_duplicates=5))["boxes"])
        for _ in range(5) for seed, t in enumerate(targets, _ * 100)
    )  # fmt: skip
    draws = 5 * n_objects
    mean_copies = 0.8 * 3.0  # found with prob 0.8, then uniform on 1..5 (mean 3)
    variance = 0.8 * (np.var(np.arange(1, 6)) + 9.0) - mean_copies**2
    assert abs(total / draws - mean_copies) < 5 * np.sqrt(variance / draws)


def test_sloppier_boxes_get_lower_scores():
    ious, scores = [], []
    for seed, target in enumerate(scene_targets() * 3):
        det = M.simulate_detections(target, seed, wrong_label_rate=0.0, false_positives=0, miss_rate=0.0)
        ious.append(boxes.box_iou(det["boxes"], target["boxes"]).max(1).values)
        scores.append(det["scores"])
    correlation = np.corrcoef(torch.cat(ious).numpy(), torch.cat(scores).numpy())[0, 1]
    assert correlation > 0.3


def test_wrong_labels_and_their_lower_scores():
    target = {"boxes": torch.tensor([[10.0, 10.0, 50.0, 50.0]]), "labels": torch.tensor([2])}
    right, wrong = [], []
    for seed in range(300):
        det = M.simulate_detections(target, seed, **no_noise(wrong_label_rate=0.3, max_duplicates=2))
        for label, score in zip(det["labels"].tolist(), det["scores"].tolist()):
            (right if label == 2 else wrong).append(score)
    share = len(wrong) / (len(wrong) + len(right))
    assert abs(share - 0.3) < 5 * np.sqrt(0.3 * 0.7 / (len(wrong) + len(right)))
    assert np.mean(wrong) < 0.8 * np.mean(right)  # 0.7 times the score, up to the small noise


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(target=[1, 2]), TypeError, "target must be a dict"),
        (dict(target={"boxes": torch.tensor([[5.0, 0, 1, 1]]), "labels": torch.tensor([1])}), ValueError, r"target\['boxes'\]\[0\]"),
        (dict(target={"boxes": torch.zeros(2, 4), "labels": torch.tensor([1])}), ValueError, "same length"),
        (dict(target={"boxes": torch.zeros(1, 4), "labels": torch.tensor([1.0])}), TypeError, r"target\['labels'\]"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(miss_rate=1.5), ValueError, "miss_rate"),
        (dict(jitter=float("nan")), ValueError, "jitter"),
        (dict(max_duplicates=0), ValueError, "max_duplicates"),
        (dict(false_positives=-1.0), ValueError, "false_positives"),
        (dict(false_positives="many"), TypeError, "false_positives"),
        (dict(num_classes=0), ValueError, "num_classes"),
    ],
)
def test_simulation_rejects_bad_arguments(kwargs, error, match):
    arguments = {"target": {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)}, "seed": 0, **kwargs}
    with pytest.raises(error, match=match):
        M.simulate_detections(arguments.pop("target"), arguments.pop("seed"), **arguments)


# ----------------------------------------------------------------------------------------------
# filter_detections and nms_steps
# ----------------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(0, 40), score=st.sampled_from([0.0, 0.25, 0.5]),
       iou=st.floats(0.0, 1.0), class_aware=st.booleans())  # fmt: skip
def test_filter_detections_equals_torchvision(seed, n, score, iou, class_aware):
    det = random_detections(seed, n)
    out = M.filter_detections(det, score, iou, class_aware)
    confident = det["scores"] >= score
    b, s, lab = det["boxes"][confident], det["scores"][confident], det["labels"][confident]
    keep = torchvision.ops.batched_nms(b, s, lab, iou) if class_aware else torchvision.ops.nms(b, s, iou)
    for key, value in (("boxes", b), ("scores", s), ("labels", lab)):
        assert torch.equal(out[key], value[keep])


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(0, 40), score=st.floats(0.0, 1.0), iou=st.floats(0.0, 1.0))
def test_score_threshold_before_nms_equals_after(seed, n, score, iou):
    """A low-score box never suppresses a higher one, so thresholding first changes nothing."""
    det = random_detections(seed, n)
    first = M.filter_detections(det, score, iou)
    after = M.filter_detections(det, 0.0, iou)
    confident = after["scores"] >= score
    assert all(torch.equal(first[k], after[k][confident]) for k in first)


def test_filter_detections_without_nms_sorts_by_score():
    det = random_detections(1, 30)
    out = M.filter_detections(det, 0.0, 1.0)
    assert torch.equal(out["scores"], torch.sort(det["scores"], descending=True, stable=True).values)


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(0, 40), iou=st.floats(0.0, 1.0))
def test_nms_steps_trace_greedy_nms(seed, n, iou):
    det = random_detections(seed, n)
    b, s = det["boxes"], det["scores"]
    rounds = M.nms_steps(b, s, iou)
    kept = torch.tensor([best for best, _ in rounds], dtype=torch.int64)
    assert torch.equal(kept, torchvision.ops.nms(b, s, iou)) and torch.equal(kept, boxes.nms(b, s, iou))
    everything = torch.cat([kept, *[suppressed for _, suppressed in rounds]])
    assert sorted(everything.tolist()) == list(range(n))  # each box kept or suppressed exactly once
    for best, suppressed in rounds:
        assert bool((boxes.box_iou(b[[best]], b[suppressed]).double() > iou).all())
        assert bool((s[suppressed] <= s[best]).all())


def test_nms_steps_worked_chain():
    b = torch.tensor([[0.0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10]])  # IoU 1/3 between neighbours
    rounds = M.nms_steps(b, torch.tensor([0.9, 0.8, 0.7]), 0.3)
    assert [(best, s.tolist()) for best, s in rounds] == [(0, [1]), (2, [])]
    assert M.nms_steps(torch.zeros((0, 4)), torch.zeros(0), 0.5) == []


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((torch.zeros(3, 4), torch.zeros(2), 0.5), ValueError, "same length"),
        ((torch.zeros(3, 4), torch.zeros(3), 1.5), ValueError, "iou_threshold"),
        ((torch.zeros(3, 4), torch.tensor([0.0, float("nan"), 1.0]), 0.5), ValueError, "scores"),
        (([[0, 0, 1, 1]], torch.zeros(1), 0.5), TypeError, "boxes"),
    ],
)
def test_nms_steps_rejects_bad_arguments(args, error, match):
    with pytest.raises(error, match=match):
        M.nms_steps(*args)


def test_filter_detections_rejects_bad_arguments():
    det = random_detections(0, 5)
    with pytest.raises(ValueError, match="score_threshold"):
        M.filter_detections(det, -0.1)
    with pytest.raises(TypeError, match="detections must have 'scores'"):
        M.filter_detections(as_target(det))


@pytest.mark.parametrize("max_rounds, ncols", [(3, 3), (5, 3), (100, 4)])
def test_nms_steps_figure_panels(max_rounds, ncols):
    det = random_detections(3, 25)
    rounds = M.nms_steps(det["boxes"], det["scores"], 0.3)
    fig = M.nms_steps_figure(torch.rand(3, 100, 100), det["boxes"], det["scores"], 0.3, max_rounds=max_rounds, ncols=ncols)
    shown = min(max_rounds, len(rounds))
    assert len(fig.axes) == shown + 1
    best, suppressed = rounds[0]
    assert fig.axes[0].get_title() == f"round 1: keep #{best}, suppress {len(suppressed)}"
    assert fig.axes[shown - 1].get_title().startswith(f"round {shown}: keep #{rounds[shown - 1][0]}")
    assert fig.axes[-1].get_title() == f"result: {len(rounds)} of 25 boxes kept"
    assert len(fig.axes[-1].patches) == len(rounds)  # one rectangle per kept box


def test_nms_steps_figure_without_boxes():
    fig = M.nms_steps_figure(torch.rand(3, 10, 10), torch.zeros((0, 4)), torch.zeros(0), 0.5)
    assert [ax.get_title() for ax in fig.axes] == ["result: 0 of 0 boxes kept"]


def test_nms_steps_figure_names_the_kept_boxes_classes():
    det = random_detections(4, 12)
    names = [f"class {k}" for k in range(int(det["labels"].max()) + 1)]
    rounds = M.nms_steps(det["boxes"], det["scores"], 0.3)
    fig = M.nms_steps_figure(torch.rand(3, 100, 100), det["boxes"], det["scores"], 0.3, labels=det["labels"], class_names=names)
    best = rounds[0][0]
    first_captions = [t.get_text() for t in fig.axes[0].texts]
    assert first_captions == [f"{names[det['labels'][best]]} {float(det['scores'][best]):.2f}"]
    final_captions = sorted(t.get_text() for t in fig.axes[-1].texts)
    assert final_captions == sorted(f"{names[det['labels'][b]]} {float(det['scores'][b]):.2f}" for b, _ in rounds)
    with pytest.raises(ValueError, match="labels"):
        M.nms_steps_figure(torch.rand(3, 100, 100), det["boxes"], det["scores"], 0.3, labels=det["labels"][:1])


@pytest.mark.parametrize("method", ["voc11", "coco101", "all_points"])
def test_draw_pr_curve_shows_what_average_precision_computes(method):
    recall, precision = metrics.pr_curve(torch.tensor([True, False, True, True, False, False, True]), 5)
    ax = M.draw_pr_curve(recall, precision, method)
    ap = metrics.average_precision(recall, precision, method)
    assert ax.get_title() == f"{method}: AP = {ap:.3f}"
    edges, levels = ax.lines[1].get_xdata(), ax.lines[1].get_ydata()  # the envelope staircase
    if method == "all_points":
        assert float(np.sum(np.diff(edges) * levels[:-1])) == pytest.approx(ap, abs=1e-12)
    else:
        points, heights = ax.lines[2].get_xdata(), ax.lines[2].get_ydata()
        assert len(points) == (11 if method == "voc11" else 101)
        assert float(np.mean(heights)) == pytest.approx(ap, abs=1e-12)


def test_draw_pr_curve_empty_and_bad_method():
    empty = torch.zeros(0, dtype=torch.float64)
    assert M.draw_pr_curve(empty, empty, "voc11").get_title() == "voc11: AP = 0.000"
    with pytest.raises(ValueError, match="method"):
        M.draw_pr_curve(empty, empty, "voc12")


# ----------------------------------------------------------------------------------------------
# Dashboard functions
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("iou, score, class_aware", [(0.5, 0.3, True), (0.1, 0.05, False), (1.0, 0.9, True)])
def test_nms_summary_counts_add_up(iou, score, class_aware):
    for seed, target in enumerate(scene_targets()[:8]):
        det = M.simulate_detections(target, seed)
        s = M.nms_summary(det, target, iou, score, class_aware)
        assert s["raw"] == len(det["boxes"]) and s["above_score"] == int((det["scores"] >= score).sum())
        assert s["kept"] + s["suppressed"] == s["above_score"]
        assert s["found"] + s["missed"] == len(target["boxes"]) and s["found"] + s["extra"] == s["kept"]
        if iou == 1.0:
            assert s["suppressed"] == 0


def test_nms_summary_of_a_perfect_detector():
    for seed, target in enumerate(scene_targets()[:8]):
        det = M.simulate_detections(target, seed, **no_noise(max_duplicates=4))
        s = M.nms_summary(det, target, iou_threshold=0.99, score_threshold=0.0)
        assert (s["kept"], s["found"], s["missed"], s["extra"]) == (len(target["boxes"]), len(target["boxes"]), 0, 0)


def test_nms_figure_titles_report_the_summary():
    fig = M.nms_figure(seed=3, iou_threshold=0.4, score_threshold=0.2)
    image, target = data.make_scene(3, **M.SCENE_OPTIONS)
    s = M.nms_summary(M.simulate_detections(target, 3), target, 0.4, 0.2)
    left, right = fig.axes
    assert left.get_title() == f"{s['raw']} raw boxes, {s['above_score']} with score ≥ 0.20"
    assert f"{s['kept']} kept, {s['suppressed']} suppressed" in right.get_title()
    assert f"objects found {s['found']}/{len(target['boxes'])}" in right.get_title()
    assert right.get_title().startswith("per-class NMS at IoU > 0.40:")
    blind = M.nms_figure(seed=3, iou_threshold=0.4, score_threshold=0.2, class_aware=False).axes[1].get_title()
    assert blind.startswith("class-blind NMS at IoU > 0.40:")  # the checkbox always changes the picture


def test_pr_curve_figure_title():
    targets = scene_targets()[:6]
    preds = [M.filter_detections(M.simulate_detections(t, seed)) for seed, t in enumerate(targets)]
    _, hits, num_gt = metrics.match_detections(preds, targets, 2, 0.75)
    recall, precision = metrics.pr_curve(hits, num_gt)
    title = M.pr_curve_figure(preds, targets, 2, 0.75, "coco101").axes[0].get_title()
    assert title.startswith(f"square at IoU ≥ 0.75: {int(hits.sum())}/{num_gt} found")
    assert f"all_points {metrics.average_precision(recall, precision, 'all_points'):.3f}" in title
    with pytest.raises(ValueError, match="no ground-truth object has label 9"):
        M.pr_curve_figure(preds, targets, 9)


def test_dashboards_build_headless():
    box = M.nms_explorer()
    assert isinstance(box, W.VBox)
    sliders = [w for w in box.children[1].children if isinstance(w, W.FloatSlider)]
    assert [s.description for s in sliders] == ["NMS IoU", "min score"]
    targets = scene_targets()[:4]
    preds = [M.filter_detections(M.simulate_detections(t, seed)) for seed, t in enumerate(targets)]
    box = M.pr_curve_explorer(preds, targets)
    assert isinstance(box, W.VBox)
    assert [w.description for w in box.children[1].children][:2] == ["class", "IoU ≥"]
    with pytest.raises(ValueError, match="both preds and targets"):
        M.pr_curve_explorer(preds)
    plt.close("all")


def test_default_data_is_post_processed_simulation_of_crowded_scenes():
    preds, targets = M._default_data(3)
    scenes = data.SyntheticScenes(3, seed=1, **M.SCENE_OPTIONS)
    for i, (pred, target) in enumerate(zip(preds, targets)):
        assert torch.equal(target["boxes"], scenes[i][1]["boxes"])
        expected = M.filter_detections(M.simulate_detections(target, seed=i), 0.05, 0.5)
        assert all(torch.equal(pred[k], expected[k]) for k in expected)
