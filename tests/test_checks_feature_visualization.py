"""checks.check_dream_step: correct solutions pass, typical mistakes get their specific message, the
expected images are one step of xai.deep_dream (notebook 10's solution and stub: test_notebook_exercises.py)."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from course_utils.checks import CheckFailed, check_dream_step
from course_utils.checks import feature_visualization as checks_fv
from course_utils.xai.feature_visualization import dream_objective

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: extra threads only wait

N_CASES = 12  # 8 fixed + 4 random


# --------------------------------------------------------------------------- correct solutions


def one_line(image, gradient, lr):
    return (image + lr * gradient / (gradient.abs().mean() + 1e-8)).clamp(0, 1)


def in_place(image, gradient, lr):
    """Writes into its input: the check must still judge it on the right inputs."""
    image += lr * gradient / (gradient.abs().mean() + 1e-8)
    return image.clamp_(0.0, 1.0)


def numpy_step(image, gradient, lr):
    """NumPy: an ndarray."""
    g = gradient.numpy()
    return np.clip(image.numpy() + lr * g / (np.abs(g).mean() + 1e-8), 0.0, 1.0)


def guarded(image, gradient, lr):
    """No ε, a test for an all-zero gradient instead."""
    scale = gradient.abs().mean()
    step = torch.zeros_like(gradient) if scale == 0 else lr * gradient / scale
    return torch.clamp(image + step, min=0.0, max=1.0)


@pytest.mark.parametrize("solution", [one_line, in_place, numpy_step, guarded])
def test_a_correct_solution_passes(solution, capsys):
    check_dream_step(solution)
    assert f"✅ dream_step: all {N_CASES} cases pass" in capsys.readouterr().out


# --------------------------------------------------------------------------- the expected values


def test_random_cases_are_one_deep_dream_step_on_real_gradients():
    """The expected image (from xai.deep_dream) equals the formula on a gradient we take ourselves."""
    for seed, size, layer, lr in checks_fv._RANDOM:
        model = checks_fv._small_cnn(seed, width=4 + seed % 3)
        image = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(100 + seed), dtype=torch.float64)
        x = image.clone().requires_grad_()
        objective = dream_objective(model, layer, x)
        plain = model[: int(layer) + 1](image).norm()
        torch.testing.assert_close(objective.detach(), plain, atol=1e-12, rtol=1e-12)
        (gradient,) = torch.autograd.grad(objective, x)
        assert gradient.abs().mean() > 1e-3, "a near-zero gradient would test nothing"
        case = checks_fv._random_case(1, seed, size, layer, lr)
        torch.testing.assert_close(case.args[1], gradient, atol=0, rtol=0)
        torch.testing.assert_close(case.expected, one_line(image, gradient, lr), atol=1e-12, rtol=0)


def test_the_large_step_case_pushes_pixels_past_both_ends():
    """lr=0.3 sends pixels below 0 and above 1 before the clamp: the clamp is tested on real gradients too."""
    (case,) = [checks_fv._random_case(4, *spec) for spec in checks_fv._RANDOM if spec[3] == 0.3]
    image, gradient, lr = case.args
    raw = image + lr * gradient / gradient.abs().mean()
    assert (raw < 0).sum() >= 5 and (raw > 1).sum() >= 5
    assert case.expected.min() == 0 and case.expected.max() == 1


@pytest.mark.parametrize("lr", [0.01, 0.1, 0.3])
def test_the_mean_change_per_pixel_is_lr_without_clamping(lr):
    """The point of the normalization: lr is the mean absolute change per pixel, whatever the gradient's scale."""
    generator = torch.Generator().manual_seed(4)
    image = torch.full((1, 3, 6, 6), 0.5, dtype=torch.float64)
    signs = torch.randint(0, 2, (1, 3, 6, 6), generator=generator).double() * 2 - 1
    gradient = signs * (0.5 + torch.rand(1, 3, 6, 6, generator=generator, dtype=torch.float64))  # max|g| / mean|g| < 1.5
    for scale in (1e-2, 1.0, 1e4):
        step = one_line(image, scale * gradient, lr) - image
        assert (step.abs() < 0.5).all(), "no pixel reaches 0 or 1: nothing is clamped"
        assert abs(float(step.abs().mean()) - lr) < 1e-6


def test_the_check_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_dream_step(one_line)
    assert torch.equal(torch.rand(3), expected)


# --------------------------------------------------------------------------- typical mistakes


@pytest.mark.parametrize(
    "student, expected",
    [
        (lambda x, g, lr: (x - lr * g / (g.abs().mean() + 1e-8)).clamp(0, 1),
         r"wrong on case: a gradient of 1 everywhere.*\n  your answer: .*\[\[\[\[0\.4000.*\n.*\n  hint: gradient \*ascent\*"),
        (lambda x, g, lr: (x + lr * g / (g.norm() + 1e-8)).clamp(0, 1), r"wrong on case: a gradient of 1 everywhere.*\n.*\n.*\n  hint: gradient \*ascent\*"),
        (lambda x, g, lr: (x + lr * g.abs() / (g.abs().mean() + 1e-8)).clamp(0, 1),
         r"wrong on case: a gradient of -1 everywhere.*\n  your answer: .*\[\[\[\[0\.5999.*\n.*\n  hint: use the gradient itself"),
        (lambda x, g, lr: (x + lr * g / (g.abs().max() + 1e-8)).clamp(0, 1), r"wrong on case: a random gradient.*\n.*\n.*\n  hint: .*not the max, not the L2 norm"),
        (lambda x, g, lr: (x + lr * g).clamp(0, 1), r"wrong on case: the same gradient × 1000.*\n.*\n.*\n  hint: the step must not depend on the gradient's scale"),
        (lambda x, g, lr: (x + lr * g / (g.abs().mean(dim=(2, 3), keepdim=True) + 1e-8)).clamp(0, 1),
         r"wrong on case: channels of very different gradient scales.*\n.*\n.*\n  hint: one normalizer for the whole image"),
        (lambda x, g, lr: x + lr * g / (g.abs().mean() + 1e-8), r"wrong on case: bright pixels \(0\.98\).*\n  your answer: .*\[\[\[\[1\.0299.*\n.*\n  hint: clamp the result to \[0, 1\]"),
        (lambda x, g, lr: (x + lr * g / (g.abs().mean() + 1e-8)).clamp(max=1), r"wrong on case: dark pixels \(0\.02\).*\n.*\n.*\n  hint: clamp the result to \[0, 1\]"),
        (lambda x, g, lr: (x + lr * g / g.abs().mean()).clamp(0, 1), r"wrong on case: a gradient of 0 everywhere.*\n  your answer: .*nan.*\n.*\n  hint: .*mean\|g\| \+ 1e-8"),
        (lambda x, g, lr: (x + lr * g / (g.abs().mean() + 1e-8)).clamp(0, 1).squeeze(0), r"wrong on case: a gradient of 1 everywhere.*\n  your answer: .*\(3, 4, 4\).*\[\[\[0\.5999"),
    ],
    ids=["descent", "l2-norm", "abs-gradient", "max", "no-normalization", "per-channel", "no-clamp", "clamp-top-only", "no-epsilon", "squeezed"],
)  # fmt: skip
def test_typical_mistakes_get_a_specific_message(student, expected):
    with pytest.raises(CheckFailed, match=expected) as info:
        check_dream_step(student)
    assert info.value.__cause__ is None


def test_the_random_cases_catch_a_mistake_the_fixed_cases_miss():
    def wrong_on_larger_images(image, gradient, lr):  # every fixed image has at most 5·6 pixels per channel
        step = one_line(image, gradient, lr)
        return step if image[0, 0].numel() <= 30 else (step * 1.01).clamp(0, 1)

    with pytest.raises(CheckFailed, match=r"wrong on case: random CNN #1: layer 1, image \(1, 3, 8, 8\), lr=0\.05"):
        check_dream_step(wrong_on_larger_images)


def test_a_crash_is_reported_with_the_case():
    def crashes(image, gradient, lr):
        return image + lr * gradient.view(-1, 5)

    with pytest.raises(CheckFailed, match=r"dream_step raised RuntimeError: .*\n  on case: a gradient of 1 everywhere"):
        check_dream_step(crashes)
