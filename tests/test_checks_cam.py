"""checks.check_gradcam_weights / check_gradcam: correct solutions pass, typical mistakes get their specific
message, the expected maps agree with captum, and the student version of notebook 09 fails the checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from captum.attr import LayerGradCam

from course_utils.checks import CheckFailed, check_gradcam, check_gradcam_weights
from course_utils.checks import cam as checks_cam



# --------------------------------------------------------------------------- correct solutions


def sum_over_count_weights(activations, gradients):
    """Sum over the positions divided by their number."""
    h, w = gradients.shape[2:]
    return gradients.sum(dim=(2, 3)) / (h * w)


def numpy_weights(activations, gradients):
    """NumPy, flattening the positions: an ndarray."""
    g = gradients.numpy()
    return g.reshape(g.shape[0], g.shape[1], -1).mean(axis=2)


def einsum_gradcam(activations, gradients):
    weights = sum_over_count_weights(activations, gradients)
    return torch.einsum("nc,nchw->nhw", weights, activations).clamp(min=0).unsqueeze(1)


def loop_gradcam(activations, gradients):
    """One image and one channel at a time."""
    n, c, h, w = activations.shape
    maps = torch.zeros(n, 1, h, w, dtype=activations.dtype)
    for i in range(n):
        for k in range(c):
            maps[i, 0] += gradients[i, k].mean() * activations[i, k]
    return torch.relu(maps)


@pytest.mark.parametrize("solution", [sum_over_count_weights, numpy_weights, lambda a, g: g.mean(dim=(-2, -1))])
def test_a_correct_weights_solution_passes(solution, capsys):
    check_gradcam_weights(solution)
    assert "✅ gradcam_weights: all 12 cases pass" in capsys.readouterr().out  # 5 fixed + 1 GAP + 6 random


@pytest.mark.parametrize("solution", [einsum_gradcam, loop_gradcam, lambda a, g: torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True))])
def test_a_correct_gradcam_solution_passes(solution, capsys):
    check_gradcam(solution)
    assert "✅ gradcam: all 13 cases pass" in capsys.readouterr().out  # 7 fixed + 6 random


# --------------------------------------------------------------------------- the expected values


def test_random_maps_equal_captum_layer_grad_cam():
    """The reference maps (from course_utils.xai.grad_cam) agree with captum on the same models and inputs."""
    for kind, seed, n, size in checks_cam._RANDOM:
        model, layer, inputs, target, activations, gradients = checks_cam._recording(kind, seed, n, size)
        expected = LayerGradCam(model, model.get_submodule(layer)).attribute(inputs, target, relu_attributions=True)
        torch.testing.assert_close(einsum_gradcam(activations, gradients), expected.detach(), atol=1e-10, rtol=1e-10)
        assert (expected > 0).any(), "an all-zero map would test nothing"


def test_random_cases_have_gradients_of_order_one_and_vary_over_space():
    for kind, seed, n, size in checks_cam._RANDOM:
        *_, activations, gradients = checks_cam._recording(kind, seed, n, size)
        assert 0.05 < gradients.abs().max() < 50
        assert activations.shape == gradients.shape and activations.dtype == torch.float64
        spread = gradients.flatten(2).std(dim=2)
        assert (spread > 0).any() == (kind != "gap_fc"), "only behind global average pooling is the gradient flat"


def test_the_gap_fc_weights_are_the_fc_row_over_h_w():
    model, _, _, target, activations, gradients = checks_cam._recording("gap_fc", 7, 2, (6, 4))
    torch.testing.assert_close(gradients.mean(dim=(2, 3)), model[-1].weight.detach()[target] / 24, atol=1e-12, rtol=0)


def test_the_checks_leave_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_gradcam_weights(sum_over_count_weights)
    check_gradcam(einsum_gradcam)
    assert torch.equal(torch.rand(3), expected)


# --------------------------------------------------------------------------- typical mistakes


@pytest.mark.parametrize(
    "student, expected",
    [
        (lambda a, g: g.sum(dim=(2, 3)), r"wrong on case: gradient constant over space .*\n  your answer: [^\n]*\[\[4\.5, -18\.0\]\]\n.*\n  hint: .*\*mean\* \(not the sum\)"),
        (lambda a, g: g.mean(dim=(1, 2, 3)), r"wrong on case: gradient constant over space .*\n  your answer: [^\n]*\[-0\.75\]\n.*\n  hint: one weight per image and channel, shape \[N, C\]"),
        (lambda a, g: g.mean(dim=(2, 3), keepdim=True), r"wrong on case: gradient constant over space .*\n  your answer: [^\n]*\[\[\[\[0\.5\]\], \[\[-2\.0\]\]\]\]"),
        (lambda a, g: a.mean(dim=(2, 3)), r"wrong on case: gradient constant over space"),
        (lambda a, g: g.mean(dim=(0, 2, 3), keepdim=True)[:, :, 0, 0], r"wrong on case: a batch of 3 images.*\n.*\n.*\n  hint: keep the batch dim"),
        (lambda a, g: g.sum(dim=(2, 3)) / g.shape[3] ** 2, r"wrong on case: a 2×5 map \(h ≠ w\)\n.*\n.*\n  hint: divide by h·w"),
        (lambda a, g: g.amax(dim=(2, 3)), r"wrong on case: a gradient of 9 at a single position.*\n  your answer: [^\n]*\[\[9\.0\]\]\n.*\n  hint: a mean, not a sum"),
    ],
    ids=["sum", "mean-over-channels", "keepdim", "activations", "batch-mean", "square-only", "max"],
)
def test_typical_weights_mistakes_get_a_specific_message(student, expected):
    with pytest.raises(CheckFailed, match=expected) as info:
        check_gradcam_weights(student)
    assert info.value.__cause__ is None


def relu_before_sum(activations, gradients):
    return torch.relu(gradients.mean((2, 3), keepdim=True) * activations).sum(1, keepdim=True)


def no_relu(activations, gradients):
    return (gradients.mean((2, 3), keepdim=True) * activations).sum(1, keepdim=True)


def mean_over_channels(activations, gradients):
    return torch.relu((gradients.mean((2, 3), keepdim=True) * activations).mean(1, keepdim=True))


def batch_weights(activations, gradients):
    return torch.relu((gradients.mean((0, 2, 3), keepdim=True) * activations).sum(1, keepdim=True))


def min_max_scaled(activations, gradients):  # what pytorch-grad-cam shows, not the raw map
    maps = einsum_gradcam(activations, gradients)
    return maps / maps.amax(dim=(2, 3), keepdim=True).clamp(min=1e-12)


def elementwise(activations, gradients):  # HiResCAM: no averaging of the gradient
    return torch.relu((gradients * activations).sum(1, keepdim=True))


@pytest.mark.parametrize(
    "student, expected",
    [
        (lambda a, g: einsum_gradcam(a, g)[:, 0], r"wrong on case: one channel, gradient 2 everywhere.*\n.*\n.*\n  hint: .*shape \[N, 1, h, w\]"),
        (mean_over_channels, r"wrong on case: two channels with weights 1 and 2.*\n.*\n.*\n  hint: .*a sum over dim 1, not a mean"),
        (relu_before_sum, r"wrong on case: two identical channels with weights \+1 and -1.*\n.*\n  expected:    [^\n]*\[\[\[\[0\.0, 0\.0, 0\.0\], .*\n  hint: apply the ReLU after"),
        (no_relu, r"wrong on case: evidence against the class everywhere.*\n  your answer: [^\n]*\[\[\[\[-.*\n.*\n  hint: where Σ_c w_c A_c < 0 the map is 0"),
        (batch_weights, r"wrong on case: a batch of 2 images whose gradients have opposite signs.*\n.*\n.*\n  hint: keep the batch dim"),
        (min_max_scaled, r"wrong on case: one channel, gradient 2 everywhere.*\n.*\n.*\n  hint: .*not rescaled"),
        (elementwise, r"wrong on case: a 2×5 map|wrong on case: random CNN"),
    ],
    ids=["no-keepdim", "channel-mean", "relu-first", "no-relu", "batch-weights", "min-max", "elementwise"],
)
def test_typical_gradcam_mistakes_get_a_specific_message(student, expected):
    with pytest.raises(CheckFailed, match=expected):
        check_gradcam(student)


def test_random_cases_catch_a_mistake_the_fixed_cases_miss():
    def wrong_with_many_channels(activations, gradients):  # every fixed case has at most 3 channels
        maps = einsum_gradcam(activations, gradients)
        return maps if activations.shape[1] <= 3 else maps * 1.01

    with pytest.raises(CheckFailed, match=r"wrong on case: random CNN #1"):
        check_gradcam(wrong_with_many_channels)
    with pytest.raises(CheckFailed, match=r"wrong on case: global average pooling \+ fc"):
        check_gradcam_weights(lambda a, g: sum_over_count_weights(a, g) * (1.01 if a.shape[1] > 3 else 1.0))


def test_a_crash_is_reported_with_the_case():
    def crashes(activations, gradients):
        return gradients.mean(dim=(2, 3)).view(-1, 4)

    with pytest.raises(CheckFailed, match=r"gradcam_weights raised RuntimeError: .*\n  on case: gradient constant over space"):
        check_gradcam_weights(crashes)


def test_the_hand_derived_maps_are_what_xai_grad_cam_gives():
    """The fixed cases state their expected maps by hand (2·A, 3·A, 0, 0); xai.grad_cam agrees through the probe."""
    for case in checks_cam._map_cases()[:7]:
        activations, gradients = case.args
        torch.testing.assert_close(checks_cam.reference_gradcam(activations, gradients), case.expected, atol=1e-12, rtol=0)
        torch.testing.assert_close(einsum_gradcam(activations, gradients), case.expected, atol=1e-12, rtol=0)


def test_the_probe_has_exactly_the_given_gradient():
    generator = torch.Generator().manual_seed(3)
    activations, gradients = (torch.randn(2, 3, 4, 5, generator=generator, dtype=torch.float64) for _ in range(2))
    probe = checks_cam._Probe(gradients)
    inputs = activations.clone().requires_grad_()
    probe(inputs)[:, 0].sum().backward()
    assert torch.equal(inputs.grad, gradients)
