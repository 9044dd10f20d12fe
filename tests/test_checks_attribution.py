"""checks.check_saliency / check_occlusion: correct solutions (ours, captum's) pass, each classic mistake
gets its own hint (notebook 08's solutions and stubs: test_notebook_exercises.py)."""

from __future__ import annotations

import math

import pytest
import torch
from captum.attr import Occlusion, Saliency

from course_utils.checks import CheckFailed, check_occlusion, check_saliency


pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")


# --------------------------------------------------------------------------- saliency: right and wrong answers


def backward_saliency(model, x, target):
    x = x.clone().requires_grad_(True)
    model(x)[:, target].sum().backward()
    return x.grad.abs()


def autograd_saliency(model, x, target):
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x)[:, target].sum(), x)
    return grad.abs()


def captum_saliency(model, x, target):
    return Saliency(model).attribute(x, target=target)


def one_image_at_a_time(model, x, target):
    return torch.cat([backward_saliency(model, image[None], target) for image in x])


def zeroes_the_callers_grad(model, x, target):
    x.requires_grad_(True)
    if x.grad is not None:
        x.grad.zero_()
    model(x)[:, target].sum().backward()
    return x.grad.abs().clone()


@pytest.mark.parametrize("solution", [backward_saliency, autograd_saliency, captum_saliency, one_image_at_a_time, zeroes_the_callers_grad])
def test_a_correct_saliency_passes(solution, capsys):
    check_saliency(solution)
    assert capsys.readouterr().out == "✅ my_saliency: all 11 cases pass\n"  # 5 fixed + 6 random


def signed_gradient(model, x, target):
    x = x.clone().requires_grad_(True)
    model(x)[:, target].sum().backward()
    return x.grad


def accumulates_in_the_callers_grad(model, x, target):
    x.requires_grad_(True)
    model(x)[:, target].sum().backward()
    return x.grad.abs().clone()


def softmax_gradient(model, x, target):
    x = x.clone().requires_grad_(True)
    model(x).softmax(dim=1)[:, target].sum().backward()
    return x.grad.abs()


def log_softmax_gradient(model, x, target):
    x = x.clone().requires_grad_(True)
    model(x).log_softmax(dim=1)[:, target].sum().backward()
    return x.grad.abs()


def predicted_class(model, x, target):
    x = x.clone().requires_grad_(True)
    logits = model(x)
    logits.gather(1, logits.argmax(dim=1, keepdim=True)).sum().backward()
    return x.grad.abs()


def first_image_only(model, x, target):
    x = x.clone().requires_grad_(True)
    model(x)[0, target].backward()
    return x.grad.abs()


def channel_max(model, x, target):
    return backward_saliency(model, x, target).amax(dim=1, keepdim=True)


@pytest.mark.parametrize(
    "student, expected",
    [
        (signed_gradient, r"wrong on case: a linear model with negative weights\n.*\n.*\n  hint: saliency is the \*absolute\* value"),
        (accumulates_in_the_callers_grad, r"wrong on case: the same image tensor again .*\n.*\n.*\n  hint: .*backward\(\) \*adds\* to x\.grad"),
        (softmax_gradient, r"wrong on case: a linear model with positive weights.*\n.*\n.*\n  hint: .*differentiate the \*logit\*"),
        (log_softmax_gradient, r"wrong on case: a linear model with positive weights.*\n.*\n.*\n  hint: .*not softmax"),
        (predicted_class, r"wrong on case: a small CNN asked about a class it does not predict\n.*\n.*\n  hint: explain the class `target`"),
        (first_image_only, r"wrong on case: a batch of 3 images.*\n.*\n.*\n  hint: every image needs the gradient of its \*own\*"),
        (channel_max, r"wrong on case: a linear model with positive weights.*\n.*\n.*\n  hint: .*shaped like x"),
    ],
    ids=["no-abs", "no-zero-grad", "softmax", "log-softmax", "argmax", "first-image", "channel-max"],
)
def test_typical_saliency_mistakes_get_their_hint(student, expected):
    with pytest.raises(CheckFailed, match=expected):
        check_saliency(student)


def test_a_gradient_under_no_grad_is_reported_with_the_failing_case():
    def under_no_grad(model, x, target):
        with torch.no_grad():
            return backward_saliency(model, x, target)

    with pytest.raises(CheckFailed, match=r"my_saliency raised RuntimeError: .*\n  on case: a linear model with positive weights"):
        check_saliency(under_no_grad)


# --------------------------------------------------------------------------- occlusion: right and wrong answers


def loop_occlusion(model, image, target, window, stride, positions=None, average=True, sign=1.0, all_channels=True):
    """The exercise's plain loop; the keyword arguments switch on one classic mistake each."""
    _, height, width = image.shape
    positions = positions or (lambda size: range(0, math.ceil((size - window) / stride) * stride + 1, stride))
    total, count = torch.zeros(height, width), torch.zeros(height, width)
    with torch.no_grad():
        clean = model(image[None])[0, target]
        for top in positions(height):
            for left in positions(width):
                hidden = image.clone()
                hidden[slice(None) if all_channels else 0, top : top + window, left : left + window] = 0
                total[top : top + window, left : left + window] += sign * (clean - model(hidden[None])[0, target])
                count[top : top + window, left : left + window] += 1
    return total / count if average else total


def captum_occlusion(model, image, target, window, stride):
    channels = image.shape[0]
    attribution = Occlusion(model).attribute(
        image[None], sliding_window_shapes=(channels, window, window), strides=(channels, stride, stride), target=target
    )
    return attribution[0, 0]


def batched_occlusion(model, image, target, window, stride):
    """All occluded copies in one batch, then a scatter of the drops: another correct way."""
    _, height, width = image.shape
    rows = range(0, height - window + stride, stride)  # ceil((H - w) / s) + 1 starts, written differently
    cols = range(0, width - window + stride, stride)
    masks = torch.zeros(len(rows) * len(cols), height, width, dtype=torch.bool)
    for k, (top, left) in enumerate((t, l) for t in rows for l in cols):
        masks[k, top : top + window, left : left + window] = True
    with torch.no_grad():
        drops = model(image[None])[0, target] - model(image * ~masks[:, None])[:, target]
    return (drops[:, None, None] * masks).sum(0) / masks.sum(0)


@pytest.mark.parametrize("solution", [loop_occlusion, captum_occlusion, batched_occlusion])
def test_a_correct_occlusion_passes(solution, capsys):
    check_occlusion(solution)
    assert capsys.readouterr().out == "✅ my_occlusion: all 14 cases pass\n"  # 8 fixed + 6 random


def with_mistake(**mistake):
    return lambda model, image, target, window, stride: loop_occlusion(model, image, target, window, stride, **mistake)


@pytest.mark.parametrize(
    "student, expected",
    [
        (with_mistake(sign=-1.0), r"wrong on case: a linear model on a 1×4×4 image.*\n.*\n.*\n  hint: .*f\(x\) - f\(x hidden\)"),
        (with_mistake(positions=lambda size: range(0, size - 2, 2)), r"wrong on case: a linear model on a 1×4×4 image.*\n.*\n.*\n  hint: .*ceil\(\(H - window\) / stride\) \+ 1"),
        (with_mistake(positions=lambda size: range(0, size - 2 + 1, 2)), r"wrong on case: a 1×5×5 image, window 2, stride 2.*\n.*\n.*\n  hint: off by one"),
        (with_mistake(average=False), r"wrong on case: overlapping windows.*\n.*\n.*\n  hint: .*the \*mean\* drop"),
        (with_mistake(all_channels=False), r"wrong on case: a 3-channel image.*\n.*\n.*\n  hint: the window hides a square in \*every\* channel"),
        (lambda model, image, target, window, stride: captum_occlusion(model, image, int(model(image[None]).argmax()), window, stride),
         r"wrong on case: a small CNN asked about a class it does not predict\n.*\n.*\n  hint: explain the class `target`"),
    ],
    ids=["sign", "misses-last-window", "misses-truncated-window", "sum-not-mean", "one-channel", "target"],
)
def test_typical_occlusion_mistakes_get_their_hint(student, expected):
    with pytest.raises(CheckFailed, match=expected):
        check_occlusion(student)


def test_swapped_loop_bounds_on_a_non_square_image_get_the_rows_and_columns_hint():
    def swapped(model, image, target, window, stride):
        _, height, width = image.shape
        bounds = {height: width, width: height}  # each side's positions computed from the other side
        return loop_occlusion(model, image, target, window, stride,
                              positions=lambda size: range(0, math.ceil((bounds[size] - window) / stride) * stride + 1, stride))

    with pytest.raises(CheckFailed, match=r"wrong on case: a non-square image.*\n.*\n.*\n  hint: image\.shape is \(C, H, W\)"):
        check_occlusion(swapped)


# --------------------------------------------------------------------------- the checks themselves


def test_the_checks_leave_the_global_random_state_alone():
    state = torch.get_rng_state()
    check_saliency(backward_saliency)
    check_occlusion(captum_occlusion)
    assert torch.equal(torch.get_rng_state(), state)


def test_the_checks_are_deterministic(capsys):
    """The same mistake always fails on the same case with the same numbers."""
    messages = []
    for _ in range(2):
        with pytest.raises(CheckFailed) as info:
            check_occlusion(with_mistake(average=False))
        messages.append(str(info.value))
    assert messages[0] == messages[1]
