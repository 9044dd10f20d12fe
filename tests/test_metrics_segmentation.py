"""course_utils.metrics.confusion_matrix and segmentation_scores against scikit-learn, plus properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sklearn.metrics as skm
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_utils.metrics import confusion_matrix, segmentation_scores


def random_label_maps(seed: int, n_classes: int, shape=(2, 17, 23), *, void: float = 0.1, absent: tuple[int, ...] = ()):
    """Prediction and target maps; a fraction ``void`` of target pixels is 255 or outside the classes."""
    g = torch.Generator().manual_seed(seed)
    present = torch.tensor([c for c in range(n_classes) if c not in absent])
    pred = present[torch.randint(0, len(present), shape, generator=g)]
    target = present[torch.randint(0, len(present), shape, generator=g)]
    target = torch.where(torch.rand(shape, generator=g) < 0.5, pred, target)  # some agreement
    void_values = torch.tensor([255, n_classes, n_classes + 3, -1])
    void_pixels = torch.rand(shape, generator=g) < void
    target[void_pixels] = void_values[torch.randint(0, 4, shape, generator=g)][void_pixels]
    return pred, target


def kept_pixels(pred: torch.Tensor, target: torch.Tensor, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    keep = (target >= 0) & (target < n_classes) & (target != 255)
    return pred[keep].numpy(), target[keep].numpy()


@pytest.mark.filterwarnings("ignore:A single label was found")  # sklearn, with n_classes = 1
@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("n_classes", [1, 2, 5, 21])
def test_confusion_matrix_equals_sklearn(seed, n_classes):
    pred, target = random_label_maps(seed, n_classes)
    mat = confusion_matrix(pred, target, n_classes)
    y_pred, y_true = kept_pixels(pred, target, n_classes)
    expected = skm.confusion_matrix(y_true, y_pred, labels=list(range(n_classes)))  # sklearn: mat[true, pred]
    assert mat.dtype == torch.int64 and mat.shape == (n_classes, n_classes)
    assert np.array_equal(mat.numpy(), expected)


def test_confusion_matrix_ignore_index():
    pred, target = random_label_maps(0, 4, void=0.0)
    target[0, :3] = 2
    with_class_2 = confusion_matrix(pred, target, 4, ignore_index=None)
    without_class_2 = confusion_matrix(pred, target, 4, ignore_index=2)
    keep = target != 2
    expected = skm.confusion_matrix(target[keep].numpy(), pred[keep].numpy(), labels=[0, 1, 2, 3])
    assert np.array_equal(without_class_2.numpy(), expected)
    assert with_class_2[2].sum() > 0 and without_class_2[2].sum() == 0
    assert torch.equal(confusion_matrix(pred, target, 4), with_class_2)  # no 255 pixels here


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("n_classes", [2, 5, 21])
def test_scores_equal_sklearn(seed, n_classes):
    absent = (n_classes - 1,) if seed % 2 else ()  # sometimes a class is in neither map
    pred, target = random_label_maps(seed, n_classes, absent=absent)
    scores = segmentation_scores(confusion_matrix(pred, target, n_classes))
    y_pred, y_true = kept_pixels(pred, target, n_classes)
    labels = list(range(n_classes))
    iou = skm.jaccard_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    dice = skm.f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    assert scores["pixel_accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=1e-12)
    assert np.allclose(scores["iou"].numpy(), iou, atol=1e-12)
    assert np.allclose(scores["dice"].numpy(), dice, atol=1e-12)
    # sklearn's macro average without `labels` averages over the classes seen in either map
    assert scores["mean_iou"] == pytest.approx(skm.jaccard_score(y_true, y_pred, average="macro"), abs=1e-12)
    assert scores["mean_dice"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"), abs=1e-12)


def test_scores_equal_the_torchvision_reference_formulas():
    """torchvision's references: acc = trace / sum, IoU = diag / (row + col - diag)."""
    pred, target = random_label_maps(3, 6)
    mat = confusion_matrix(pred, target, 6)
    h = mat.double()
    scores = segmentation_scores(mat)
    assert scores["pixel_accuracy"] == pytest.approx(float(h.diag().sum() / h.sum()), abs=1e-12)
    assert torch.allclose(scores["iou"], h.diag() / (h.sum(1) + h.sum(0) - h.diag()))


def test_absent_class_gets_zero_and_is_left_out_of_the_means():
    mat = torch.tensor([[5, 1, 0], [2, 3, 0], [0, 0, 0]])  # class 2: in neither gt nor prediction
    scores = segmentation_scores(mat)
    assert scores["iou"][2] == 0.0 and scores["dice"][2] == 0.0
    assert scores["mean_iou"] == pytest.approx(float(scores["iou"][:2].mean()))
    assert scores["mean_dice"] == pytest.approx(float(scores["dice"][:2].mean()))
    assert scores["pixel_accuracy"] == pytest.approx(8 / 11)
    assert not any(math.isnan(v) for v in (scores["mean_iou"], scores["mean_dice"]))


def test_class_predicted_but_absent_from_gt_counts_with_iou_zero():
    mat = torch.tensor([[4, 1], [0, 0]])  # class 1 predicted once, never true
    scores = segmentation_scores(mat)
    assert scores["iou"].tolist() == [0.8, 0.0]
    assert scores["mean_iou"] == pytest.approx(0.4)


def test_all_pixels_ignored_gives_zeros_not_nan():
    pred = torch.zeros(4, 4, dtype=torch.long)
    target = torch.full((4, 4), 255)
    mat = confusion_matrix(pred, target, 3)
    assert mat.sum() == 0
    scores = segmentation_scores(mat)
    assert scores["pixel_accuracy"] == scores["mean_iou"] == scores["mean_dice"] == 0.0
    assert not torch.isnan(scores["iou"]).any() and not torch.isnan(scores["dice"]).any()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_classes=st.integers(1, 8), void=st.floats(0, 0.5))
def test_property_scores(seed, n_classes, void):
    pred, target = random_label_maps(seed, n_classes, shape=(9, 11), void=void)
    mat = confusion_matrix(pred, target, n_classes)
    assert int(mat.sum()) == len(kept_pixels(pred, target, n_classes)[0])
    scores = segmentation_scores(mat)
    iou, dice = scores["iou"], scores["dice"]
    assert bool(((iou >= 0) & (iou <= dice + 1e-12) & (dice <= 1)).all())
    assert torch.allclose(dice, 2 * iou / (1 + iou))  # Dice and IoU are monotone functions of each other
    assert 0.0 <= scores["pixel_accuracy"] <= 1.0 and 0.0 <= scores["mean_iou"] <= scores["mean_dice"] <= 1.0
    # renaming the classes permutes the matrix and the per-class scores
    perm = torch.randperm(n_classes, generator=torch.Generator().manual_seed(seed))
    rename = lambda x: torch.where((x >= 0) & (x < n_classes), perm[x.clamp(0, n_classes - 1)], x)  # noqa: E731
    renamed = confusion_matrix(rename(pred), rename(target), n_classes)
    assert torch.equal(renamed[perm][:, perm], mat)
    assert segmentation_scores(renamed)["mean_iou"] == pytest.approx(scores["mean_iou"], abs=1e-12)
    # a perfect prediction scores 1 on every class that is present
    perfect = segmentation_scores(confusion_matrix(target.clamp(0, n_classes - 1), target, n_classes))
    if perfect["pixel_accuracy"] > 0:
        assert perfect["pixel_accuracy"] == perfect["mean_iou"] == perfect["mean_dice"] == 1.0


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: confusion_matrix(torch.zeros(3).float(), torch.zeros(3).long(), 2), TypeError, "pred must hold integer"),
        (lambda: confusion_matrix(torch.zeros(3).long(), torch.zeros(3).bool(), 2), TypeError, "target must hold integer"),
        (lambda: confusion_matrix([0, 1], torch.zeros(2).long(), 2), TypeError, "pred must be a torch.Tensor"),
        (lambda: confusion_matrix(torch.zeros(3).long(), torch.zeros(4).long(), 2), ValueError, "same shape"),
        (lambda: confusion_matrix(torch.tensor([0, 2]), torch.tensor([0, 1]), 2), ValueError, r"pred must hold classes in \[0, 2\)"),
        (lambda: confusion_matrix(torch.tensor([0, -1]), torch.tensor([0, 1]), 2), ValueError, "pred must hold classes"),
        (lambda: confusion_matrix(torch.zeros(2).long(), torch.zeros(2).long(), 0), ValueError, "num_classes must be positive"),
        (lambda: confusion_matrix(torch.zeros(2).long(), torch.zeros(2).long(), 2.0), TypeError, "num_classes must be an int"),
        (lambda: confusion_matrix(torch.zeros(2).long(), torch.zeros(2).long(), 2, ignore_index=1.5), TypeError, "ignore_index"),
        (lambda: segmentation_scores(torch.zeros(2, 3)), ValueError, "confmat must be square"),
        (lambda: segmentation_scores(torch.zeros(4)), ValueError, "confmat must have 2 dimensions"),
        (lambda: segmentation_scores(torch.tensor([[1, -1], [0, 2]])), ValueError, "negative"),
        (lambda: segmentation_scores(torch.tensor([[1.0, math.nan], [0, 2]])), ValueError, "confmat contains NaN"),
        (lambda: segmentation_scores(np.eye(2)), TypeError, "confmat must be a torch.Tensor"),
    ],
)
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()
