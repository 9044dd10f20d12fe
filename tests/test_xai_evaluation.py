"""Pointing game, deletion/insertion and the model-randomization sanity check."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.stats import pearsonr, spearmanr
from torch import nn
from torchvision.transforms.v2.functional import gaussian_blur

from course_utils.xai import (
    deletion_insertion,
    grad_cam,
    pointing_game,
    randomization_layers,
    randomization_sanity_check,
    randomize_layers,
)
from course_utils.xai.evaluation import pearson_correlation, spearman_rank_correlation

# --- pointing game -----------------------------------------------------------------------------


def test_pointing_game_constructed_cases() -> None:
    heatmaps = torch.zeros(5, 6, 8)
    heatmaps[0, 2, 3] = 1  # centre (3.5, 2.5)
    heatmaps[1, 2, 3] = 1
    heatmaps[2, 5, 7] = 1  # centre (7.5, 5.5): on the border of the last box below
    heatmaps[3, 0, 0] = 1
    heatmaps[4, 1, 1] = heatmaps[4, 4, 6] = 2  # a tie: the first maximum in row-major order is (1, 1)
    boxes = [
        torch.tensor([[0.0, 0, 1, 1], [3, 2, 4, 3]]),  # the second box holds pixel (3, 2)
        torch.tensor([[4.0, 2, 8, 6]]),  # starts one pixel right of it
        torch.tensor([[7.5, 5.5, 9, 9]]),  # borders are included
        torch.zeros(0, 4),  # no object: a miss
        torch.tensor([[5.0, 3, 8, 6]]),  # holds only the second maximum
    ]
    result = pointing_game(heatmaps, boxes)
    assert result["hits"].tolist() == [True, False, True, False, False]
    assert result["hit_rate"] == pytest.approx(2 / 5)
    assert result["points"].tolist() == [[3, 2], [3, 2], [7, 5], [0, 0], [1, 1]]
    # [N, 1, H, W] maps give the same answer.
    assert pointing_game(heatmaps[:, None], boxes)["hits"].tolist() == result["hits"].tolist()


def test_pointing_game_tolerance() -> None:
    heatmap = torch.zeros(1, 20, 20)
    heatmap[0, 10, 10] = 1  # centre (10.5, 10.5)
    box = [torch.tensor([[13.5, 14.5, 18, 18]])]  # 3 px right and 4 px below: 5 px away
    assert not pointing_game(heatmap, box, tolerance=4.99)["hits"].item()
    assert pointing_game(heatmap, box, tolerance=5)["hits"].item()
    assert pointing_game(heatmap, box, tolerance=15)["hits"].item()


@st.composite
def heatmap_and_box(draw):
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    x1, x2 = sorted(draw(st.integers(0, w)) for _ in range(2))
    y1, y2 = sorted(draw(st.integers(0, h)) for _ in range(2))
    seed = draw(st.integers(0, 2**16))
    heatmap = torch.rand(h, w, generator=torch.Generator().manual_seed(seed))
    return heatmap, torch.tensor([[x1, y1, x2, y2]], dtype=torch.float32)


@settings(max_examples=100, deadline=None)
@given(case=heatmap_and_box(), data=st.data())
def test_a_maximum_inside_the_box_always_hits(case, data) -> None:
    heatmap, box = case
    x1, y1, x2, y2 = box[0].int().tolist()
    assume(x2 > x1 and y2 > y1)
    row, col = data.draw(st.integers(y1, y2 - 1)), data.draw(st.integers(x1, x2 - 1))
    heatmap[row, col] = 2.0
    distractor = torch.zeros(0, 4)
    result = pointing_game(heatmap[None].repeat(2, 1, 1), [box, distractor])
    assert result["hits"].tolist() == [True, False]


@settings(max_examples=100, deadline=None)
@given(case=heatmap_and_box())
def test_hit_equals_mask_lookup_for_integer_boxes(case) -> None:
    """TorchRay's rule with tolerance 0: the maximum's pixel lies in the boxes' occupancy mask."""
    heatmap, box = case
    x1, y1, x2, y2 = box[0].int().tolist()
    mask = torch.zeros_like(heatmap, dtype=torch.bool)
    mask[y1:y2, x1:x2] = True
    row, col = divmod(int(heatmap.flatten().argmax()), heatmap.shape[1])
    assert pointing_game(heatmap[None], [box])["hits"].item() == bool(mask[row, col])


def test_pointing_game_bad_input() -> None:
    heatmaps = torch.rand(2, 4, 4)
    box = torch.tensor([[0.0, 0, 2, 2]])
    with pytest.raises(ValueError, match="one tensor per heatmap"):
        pointing_game(heatmaps, [box])
    with pytest.raises(TypeError, match="boxes must be a list"):
        pointing_game(heatmaps, torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"boxes\[1\]\[0\].*degenerate"):
        pointing_game(heatmaps, [box, torch.tensor([[3.0, 0, 1, 2]])])
    with pytest.raises(ValueError, match="heatmaps contains NaN"):
        pointing_game(torch.full((2, 4, 4), float("nan")), [box, box])
    with pytest.raises(ValueError, match="heatmaps must have shape"):
        pointing_game(torch.rand(2, 3, 4, 4), [box, box])
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game(heatmaps, [box, box], tolerance=-1)
    with pytest.raises(ValueError, match="at least one pixel"):
        pointing_game(torch.rand(2, 0, 4), [box, box])


# --- deletion / insertion -------------------------------------------------------------------


class RegionModel(nn.Module):
    """Two logits: ``scale * mean of the pixels in a fixed region`` and 0."""

    def __init__(self, region: tuple[slice, slice], scale: float = 20.0) -> None:
        super().__init__()
        self.region, self.scale = region, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        evidence = x[:, :, self.region[0], self.region[1]].mean(dim=(1, 2, 3)) * self.scale
        return torch.stack([evidence, torch.zeros_like(evidence)], dim=1)


def region_case(seed: int) -> tuple[RegionModel, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    model = RegionModel((slice(2, 6), slice(3, 9)))
    inputs = torch.rand(3, 2, 10, 12, generator=generator) + 0.5  # positive: the pixels are evidence
    heatmaps = torch.rand(3, 10, 12, generator=generator) * 0.1
    heatmaps[:, 2:6, 3:9] += 1  # ranks the region first
    return model, inputs, heatmaps


def test_a_heatmap_on_the_evidence_scores_better_than_its_reverse() -> None:
    model, inputs, heatmaps = region_case(0)
    good = deletion_insertion(model, inputs, 0, heatmaps, steps=10)
    reverse = deletion_insertion(model, inputs, 0, -heatmaps, steps=10)
    assert (good["deletion_auc"] < reverse["deletion_auc"] - 0.2).all()
    assert (good["insertion_auc"] > reverse["insertion_auc"] + 0.2).all()


def reference_curves(model, inputs, target, heatmaps, steps, canvas) -> tuple[np.ndarray, np.ndarray]:
    """One image at a time, in plain loops, as RISE describes it."""
    deletion, insertion = np.zeros((len(inputs), steps + 1)), np.zeros((len(inputs), steps + 1))
    n_pixels = heatmaps[0].numel()
    for i in range(len(inputs)):
        order = np.argsort(-heatmaps[i].flatten().numpy(), kind="stable")
        for k in range(steps + 1):
            chosen = torch.from_numpy(order[: int(round(k * n_pixels / steps))])
            deleted, inserted = inputs[i].clone().flatten(1), canvas[i].clone().flatten(1)
            deleted[:, chosen] = canvas[i].flatten(1)[:, chosen]
            inserted[:, chosen] = inputs[i].flatten(1)[:, chosen]
            for curve, image in ((deletion, deleted), (insertion, inserted)):
                logits = model(image.view_as(inputs[i])[None])
                curve[i, k] = float(F.softmax(logits, dim=1)[0, target[i]])
    return deletion, insertion


@pytest.mark.parametrize("baseline", [0.0, 0.25, "tensor", "blur"])
@pytest.mark.parametrize("steps", [1, 7, 16])
def test_deletion_insertion_equals_a_loop_reference(baseline, steps: int) -> None:
    torch.manual_seed(steps)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )
    model = model.double().eval()
    inputs = torch.rand(3, 2, 7, 9, dtype=torch.float64)
    heatmaps = torch.randint(0, 5, (3, 7, 9)).double()  # many ties: row-major order decides
    target = torch.tensor([0, 2, 1])
    if baseline == "tensor":
        baseline = torch.rand(2, 1, 1, dtype=torch.float64)
    if baseline == "blur":
        canvas = gaussian_blur(inputs, [11, 11], [5.0, 5.0])
    else:
        canvas = torch.as_tensor(baseline, dtype=torch.float64).expand_as(inputs)
    with torch.no_grad():
        deletion, insertion = reference_curves(model, inputs, target, heatmaps, steps, canvas)
    result = deletion_insertion(model, inputs, target, heatmaps, steps=steps, baseline=baseline, batch_size=5)
    np.testing.assert_allclose(result["deletion_curve"].numpy(), deletion, rtol=1e-10)
    np.testing.assert_allclose(result["insertion_curve"].numpy(), insertion, rtol=1e-10)
    fractions = np.round(np.linspace(0, 63, steps + 1)) / 63
    np.testing.assert_allclose(result["fractions"].numpy(), fractions)
    np.testing.assert_allclose(result["deletion_auc"].numpy(), np.trapezoid(deletion, fractions, axis=1), rtol=1e-10)
    np.testing.assert_allclose(result["insertion_auc"].numpy(), np.trapezoid(insertion, fractions, axis=1), rtol=1e-10)
    # The curves join the image's and the canvas's probabilities.
    np.testing.assert_allclose(result["deletion_curve"][:, -1].numpy(), result["insertion_curve"][:, 0].numpy())
    np.testing.assert_allclose(result["deletion_curve"][:, 0].numpy(), result["insertion_curve"][:, -1].numpy())


def test_deletion_insertion_batched_equals_one_by_one() -> None:
    model, inputs, heatmaps = region_case(1)
    target = torch.tensor([0, 1, 0])
    batched = deletion_insertion(model, inputs, target, heatmaps[:, None], steps=5, baseline="blur", batch_size=4)
    for i in range(len(inputs)):
        one = slice(i, i + 1)
        single = deletion_insertion(model, inputs[one], int(target[i]), heatmaps[one], steps=5, baseline="blur")
        for key in ("deletion_auc", "insertion_auc", "deletion_curve", "insertion_curve"):
            torch.testing.assert_close(batched[key][i : i + 1], single[key])


def test_a_model_that_ignores_the_image_has_flat_curves() -> None:
    class Constant(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(len(x), 4)

    result = deletion_insertion(Constant(), torch.rand(2, 3, 5, 5), 1, torch.rand(2, 5, 5), steps=4)
    torch.testing.assert_close(result["deletion_auc"], torch.full((2,), 0.25))
    torch.testing.assert_close(result["insertion_curve"], torch.full((2, 5), 0.25))


def test_deletion_insertion_leaves_the_model_alone() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(3 * 4 * 4, 2)).train()
    inputs = torch.rand(2, 3, 4, 4, requires_grad=True)
    deletion_insertion(model, inputs, 0, torch.rand(2, 4, 4), steps=3)
    assert model.training and inputs.grad is None
    assert all(p.grad is None for p in model.parameters())


def test_deletion_insertion_bad_input() -> None:
    model, inputs, heatmaps = region_case(2)
    with pytest.raises(ValueError, match="upsample_heatmap"):
        deletion_insertion(model, inputs, 0, heatmaps[:, :5])
    with pytest.raises(ValueError, match="baseline must be"):
        deletion_insertion(model, inputs, 0, heatmaps, baseline="mean")
    with pytest.raises(ValueError, match="baseline of shape"):
        deletion_insertion(model, inputs, 0, heatmaps, baseline=torch.zeros(5, 1, 1))
    with pytest.raises(ValueError, match="steps must be positive"):
        deletion_insertion(model, inputs, 0, heatmaps, steps=0)
    with pytest.raises(ValueError, match=r"target must be in \[0, 2\)"):
        deletion_insertion(model, inputs, 2, heatmaps)
    with pytest.raises(ValueError, match="inputs must have 4 dimensions"):
        deletion_insertion(model, inputs[0], 0, heatmaps)


# --- randomization sanity check ---------------------------------------------------------------


def small_cnn(seed: int) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.MaxPool2d(2), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5),
    )  # fmt: skip
    return model.eval(), torch.rand(4, 3, 16, 16)


def explain_grad_cam(model: nn.Module, inputs: torch.Tensor, target) -> torch.Tensor:
    return grad_cam(model, "6", inputs, target)


def edge_detector(model: nn.Module, inputs: torch.Tensor, target) -> torch.Tensor:
    """Ignores the model: the horizontal and vertical gradient magnitude of the image."""
    return (inputs.diff(dim=-1)[..., :-1, :].abs() + inputs.diff(dim=-2)[..., :, :-1].abs()).sum(dim=1)


def test_grad_cam_drifts_while_an_edge_detector_stays() -> None:
    model, inputs = small_cnn(1)
    assert (explain_grad_cam(model, inputs, 2).flatten(1).std(dim=1) > 0).all(), "need informative maps"
    grad_cam_scores = randomization_sanity_check(model, inputs, 2, explain_grad_cam)
    edge_scores = randomization_sanity_check(model, inputs, 2, edge_detector)
    names = ["10", "6", "3", "2", "0"]  # the parameterised layers, from the output down
    assert [name for name, _ in grad_cam_scores] == names == [name for name, _ in edge_scores]
    assert all(score == pytest.approx(1.0) for _, score in edge_scores)
    assert all(score < 0.9 for _, score in grad_cam_scores)
    assert np.mean([score for _, score in grad_cam_scores]) < 0.5


def test_sanity_check_leaves_the_model_and_the_rng_alone() -> None:
    model, inputs = small_cnn(2)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    rng = torch.random.get_rng_state()
    first = randomization_sanity_check(model, inputs, 1, explain_grad_cam, layers=["10", model[6]], seed=3)
    assert torch.equal(rng, torch.random.get_rng_state())
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    assert not model.training
    assert [name for name, _ in first] == ["10", "6"]
    assert first == randomization_sanity_check(model, inputs, 1, explain_grad_cam, layers=["10", "6"], seed=3)


def test_randomizing_only_the_last_layer_is_what_grad_cam_sees_first() -> None:
    """After re-initialising the fc layer the copy's map is Grad-CAM with the new fc weights."""
    model, inputs = small_cnn(4)
    [(name, score)] = randomization_sanity_check(model, inputs, 0, explain_grad_cam, layers=["10"], seed=9)
    fresh = nn.Linear(16, 5)
    with torch.random.fork_rng():
        torch.manual_seed(9)
        fresh.reset_parameters()
    expected_model = nn.Sequential(*model[:10], fresh).eval()
    original, randomized = explain_grad_cam(model, inputs, 0), explain_grad_cam(expected_model, inputs, 0)
    expected = spearman_rank_correlation(original, randomized)
    assert name == "10" and score == pytest.approx(expected.mean().item())


def test_sanity_check_bad_input() -> None:
    model, inputs = small_cnn(0)
    with pytest.raises(ValueError, match="layer 'fc'"):
        randomization_sanity_check(model, inputs, 0, explain_grad_cam, layers=["fc"])
    with pytest.raises(ValueError, match="has no reset_parameters"):
        randomization_sanity_check(model, inputs, 0, explain_grad_cam, layers=["1"])
    with pytest.raises(ValueError, match="one map per input"):
        randomization_sanity_check(model, inputs, 0, lambda m, x, t: x[:2])
    with pytest.raises(TypeError, match="explain"):
        randomization_sanity_check(model, inputs, 0, lambda m, x, t: 1.0)


def test_randomization_layers_are_the_parameterised_layers_from_the_output_down() -> None:
    model, _ = small_cnn(0)
    assert randomization_layers(model) == ["10", "6", "3", "2", "0"]
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        randomization_layers("features")


def test_randomize_layers_is_the_model_of_each_sanity_check_step() -> None:
    model, inputs = small_cnn(6)
    layers = randomization_layers(model)
    scores = randomization_sanity_check(model, inputs, 3, explain_grad_cam, seed=4)
    original = explain_grad_cam(model, inputs, 3)
    for step, (name, score) in enumerate(scores):
        randomized = randomize_layers(model, layers[: step + 1], seed=4)
        correlation = spearman_rank_correlation(original, explain_grad_cam(randomized, inputs, 3)).mean().item()
        assert name == layers[step] and correlation == pytest.approx(score, abs=1e-9)


def test_randomize_layers_changes_only_the_layers_named_on_a_copy() -> None:
    model, _ = small_cnn(7)
    with torch.no_grad():  # a "trained" BatchNorm, so that its re-initialisation shows
        model[3].weight.fill_(2.0), model[3].running_mean.fill_(0.5), model[3].running_var.fill_(3.0)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    rng = torch.random.get_rng_state()
    randomized = randomize_layers(model, ["10", model[3]], seed=1)
    assert torch.equal(rng, torch.random.get_rng_state())
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    after = randomized.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert {name.split(".")[0] for name in changed} == {"10", "3"}
    assert {"10.weight", "10.bias", "3.weight", "3.running_mean", "3.running_var"} <= changed
    assert after["3.weight"].eq(1).all() and after["3.running_mean"].eq(0).all() and after["3.running_var"].eq(1).all()
    # seed + k for the k-th layer: the fc layer gets seed 1 whichever layers follow it
    assert torch.equal(after["10.weight"], randomize_layers(model, ["10"], seed=1).state_dict()["10.weight"])
    copy_only = randomize_layers(model, [])
    assert copy_only is not model and all(torch.equal(before[name], value) for name, value in copy_only.state_dict().items())


def test_randomize_layers_bad_input() -> None:
    model, _ = small_cnn(0)
    with pytest.raises(ValueError, match="layer 'fc'"):
        randomize_layers(model, ["fc"])
    with pytest.raises(ValueError, match="has no reset_parameters"):
        randomize_layers(model, ["1"])
    with pytest.raises(ValueError, match="seed"):
        randomize_layers(model, ["10"], seed=-1)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 4), d=st.integers(2, 30), levels=st.integers(1, 6))
def test_spearman_equals_scipy(seed: int, n: int, d: int, levels: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    a = torch.randint(0, levels, (n, d), generator=generator).float()  # few levels: many ties
    b = torch.randint(0, levels, (n, d), generator=generator).float()
    ours = spearman_rank_correlation(a, b)
    for i in range(n):
        if a[i].std() == 0 or b[i].std() == 0:
            assert ours[i] == 0  # scipy: NaN
        else:
            assert ours[i].item() == pytest.approx(spearmanr(a[i], b[i]).statistic, abs=1e-12)
    torch.testing.assert_close(spearman_rank_correlation(a, a * 3 + 1), (a.std(dim=1) > 0).double())


def test_a_block_is_re_initialised_layer_by_layer() -> None:
    """Randomizing a block (a module without reset_parameters) re-initialises each of its layers, with one seed."""
    torch.manual_seed(5)
    block = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    model = nn.Sequential(block, nn.Conv2d(8, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()
    with torch.no_grad():
        block[1].running_mean.fill_(0.3)
    inputs = torch.rand(4, 3, 12, 12)
    explain = lambda m, x, t: grad_cam(m, "1", x, t)  # noqa: E731
    [(name, score)] = randomization_sanity_check(model, inputs, 0, explain, layers=["0"], seed=2)
    expected = copy.deepcopy(model)
    with torch.random.fork_rng():
        torch.manual_seed(2)
        expected[0][0].reset_parameters()
        expected[0][1].reset_parameters()  # BatchNorm: affine and running statistics
    assert expected[0][1].running_mean.abs().max() == 0
    correlation = spearman_rank_correlation(explain(model, inputs, 0), explain(expected, inputs, 0)).mean().item()
    assert name == "0" and score == pytest.approx(correlation) and score < 0.99


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 4), d=st.integers(2, 40), levels=st.integers(1, 6))
def test_pearson_equals_scipy_and_numpy(seed: int, n: int, d: int, levels: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    a = torch.randint(0, levels, (n, 3, d), generator=generator).float() + torch.rand(n, 3, d, generator=generator) * (levels > 1)
    b = torch.randint(0, levels, (n, 3, d), generator=generator).float()
    ours = pearson_correlation(a, b)
    assert ours.shape == (n,) and ours.dtype == torch.float64
    for i in range(n):
        if a[i].std() == 0 or b[i].std() == 0:
            assert ours[i] == 0  # scipy: NaN
        else:
            assert ours[i].item() == pytest.approx(pearsonr(a[i].flatten().double(), b[i].flatten().double()).statistic, abs=1e-10)
            assert ours[i].item() == pytest.approx(np.corrcoef(a[i].flatten().double(), b[i].flatten().double())[0, 1], abs=1e-10)
    torch.testing.assert_close(pearson_correlation(a, -2 * a + 1), -(a.flatten(1).std(dim=1) > 0).double())


def test_pearson_and_spearman_reject_bad_input() -> None:
    for correlation in (pearson_correlation, spearman_rank_correlation):
        with pytest.raises(ValueError, match="same shape"):
            correlation(torch.zeros(2, 3), torch.zeros(2, 4))
        with pytest.raises(ValueError, match=r"\[N, \.\.\.\]"):
            correlation(torch.zeros(3), torch.zeros(3))
        with pytest.raises(ValueError, match="b"):
            correlation(torch.zeros(1, 3), torch.tensor([[0.0, float("inf"), 1.0]]))
        with pytest.raises(TypeError, match="a"):
            correlation(torch.zeros(1, 3, dtype=torch.bool), torch.zeros(1, 3))
