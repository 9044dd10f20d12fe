"""Activation maximization and DeepDream: the objective climbs, the model is left as it was."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torchvision.transforms.v2.functional import gaussian_blur

from course_utils import data, zoo
from course_utils.xai import activation_maximization, deep_dream
from course_utils.xai.feature_visualization import dream_objective, eval_mode

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: extra threads only wait

NUM_CLASSES = len(data.SHAPES)


@pytest.fixture(scope="module")
def shapes_cnn() -> nn.Module:
    return zoo.load("shapes_cnn")


@pytest.fixture(scope="module")
def scene() -> torch.Tensor:
    return data.SceneClassification(1, seed=3)[0][0]


def grey_start(size: tuple[int, int] = (64, 64), seed: int = 0) -> torch.Tensor:
    """The documented default start: ``sigmoid(0.1 · N(0, 1))`` from a generator seeded with ``seed``."""
    return torch.sigmoid(0.1 * torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(seed)))


def class_logit(model: nn.Module, image: torch.Tensor, unit: int) -> float:
    with torch.no_grad():
        return float(model(image)[0, unit])


def channel_mean(model: nn.Module, depth: int, image: torch.Tensor, unit: int) -> float:
    """Mean of channel ``unit`` of ``model.features[depth]``'s output, computed without hooks."""
    with torch.no_grad():
        return float(model.features[: depth + 1](image)[0, unit].mean())


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def mixed_mode_copy(model: nn.Module) -> nn.Module:
    """A copy in training mode except one BatchNorm left in eval mode: the flags must all come back."""
    model = copy.deepcopy(model).train()
    model.features[5].eval()
    return model


def assert_untouched(model: nn.Module, reference: nn.Module) -> None:
    """Same weights and BatchNorm statistics, same training flags, no hook, no ``.grad``."""
    assert hook_count(model) == 0
    assert [m.training for m in model.modules()] == [m.training for m in reference.modules()]
    for (name, value), expected in zip(model.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(value, expected), name
    assert all(p.grad is None for p in model.parameters())


class Linear(nn.Module):
    """Logits linear in the image: ``W · flatten(x) + b``, so that every step can be predicted."""

    def __init__(self, size: tuple[int, int], seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(3 * size[0] * size[1], 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(x))


class FailsOnCall(nn.Module):
    """Wraps a model and raises at its ``n``-th forward pass."""

    def __init__(self, model: nn.Module, n: int) -> None:
        super().__init__()
        self.model, self.n, self.calls = model, n, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.n:
            raise RuntimeError("boom")
        return self.model(x)


# --------------------------------------------------------------------------- activation maximization


@pytest.mark.parametrize("unit", range(NUM_CLASSES))
def test_class_logit_climbs_and_wins(shapes_cnn: nn.Module, unit: int) -> None:
    image, history = activation_maximization(shapes_cnn, None, unit, steps=30)
    before, after = class_logit(shapes_cnn, grey_start(), unit), class_logit(shapes_cnn, image, unit)
    # measured at 30 steps: every class climbs by 23 to 65 logits from about 0
    assert after > before + 10
    assert int(shapes_cnn(image).argmax()) == unit
    assert history.shape == (30,) and history[-1] > history[0] + 10


def test_channel_mean_climbs(shapes_cnn: nn.Module) -> None:
    image, history = activation_maximization(shapes_cnn, "features.12", 0, steps=30)
    before, after = channel_mean(shapes_cnn, 12, grey_start(), 0), channel_mean(shapes_cnn, 12, image, 0)
    assert after > before + 3  # measured: -1.6 -> 9.2
    assert history[-1] > history[0] + 3


def test_layer_given_as_module_is_the_same(shapes_cnn: nn.Module) -> None:
    by_name, _ = activation_maximization(shapes_cnn, "features.12", 5, steps=3)
    by_module, _ = activation_maximization(shapes_cnn, shapes_cnn.features[12], 5, steps=3)
    assert torch.equal(by_name, by_module)


def test_shape_range_and_seed(shapes_cnn: nn.Module) -> None:
    a, history_a = activation_maximization(shapes_cnn, None, 2, image_size=(40, 48), steps=5, seed=1)
    b, history_b = activation_maximization(shapes_cnn, None, 2, image_size=(40, 48), steps=5, seed=1)
    c, _ = activation_maximization(shapes_cnn, None, 2, image_size=(40, 48), steps=5, seed=2)
    assert a.shape == (1, 3, 40, 48) and a.dtype == torch.float32 and not a.requires_grad
    assert 0 < float(a.min()) and float(a.max()) < 1
    assert torch.equal(a, b) and torch.equal(history_a, history_b)
    assert not torch.equal(a, c)
    square, _ = activation_maximization(shapes_cnn, None, 2, image_size=32, steps=1)
    assert square.shape == (1, 3, 32, 32)


def adam_first_step(theta: torch.Tensor, weight: torch.Tensor, lr: float) -> torch.Tensor:
    """``theta`` after Adam's first step up the gradient ``g = w · sigmoid'(theta)`` of a linear logit.

    Adam's bias-corrected moments are ``g`` and ``g²`` at the first step: the update is ``lr · g / (|g| + 1e-8)``.
    """
    pixels = torch.sigmoid(theta)
    gradient = weight * pixels * (1 - pixels)
    return theta + lr * gradient / (gradient.abs() + 1e-8)


@pytest.mark.parametrize("decay", [0.0, 0.05])
def test_one_step_is_adam_then_decay(decay: float) -> None:
    """With a linear logit, the first step is predictable: Adam on the logits, then the decay."""
    size, lr = (5, 6), 0.05
    model = Linear(size)
    start = grey_start(size, seed=4)
    image, history = activation_maximization(
        model, None, 2, init=start[0], steps=1, lr=lr, jitter=0, blur_every=0, decay=decay
    )
    weight = model.fc.weight[2].detach().reshape(1, 3, *size)
    theta = torch.logit(start)
    expected = torch.sigmoid(adam_first_step(theta, weight, lr) * (1 - decay))
    torch.testing.assert_close(image, expected, atol=1e-5, rtol=0)
    assert math.isclose(float(history[0]), class_logit(model, start, 2), rel_tol=1e-5)


def test_blur_every_step_is_a_gaussian_blur_of_the_pixels() -> None:
    size, lr, sigma = (9, 8), 0.05, 0.8
    model = Linear(size, seed=1)
    start = grey_start(size, seed=5)
    image, _ = activation_maximization(
        model, None, 0, init=start, steps=1, lr=lr, jitter=0, blur_every=1, blur_sigma=sigma, decay=0
    )
    weight = model.fc.weight[0].detach().reshape(1, 3, *size)
    stepped = torch.sigmoid(adam_first_step(torch.logit(start), weight, lr))
    kernel = 2 * math.ceil(3 * sigma) + 1
    torch.testing.assert_close(image, gaussian_blur(stepped, [kernel, kernel], [sigma, sigma]), atol=1e-5, rtol=0)


def test_jitter_changes_the_path_and_is_seeded() -> None:
    model = Linear((8, 8), seed=2)
    runs = [activation_maximization(model, None, 1, image_size=8, steps=4, jitter=j, seed=s)[0] for j, s in
            [(0, 0), (0, 1), (3, 0), (3, 0), (3, 1)]]  # fmt: skip
    # without jitter the seed only draws the start; with it, the rolls change the gradients too
    assert not torch.equal(runs[0], runs[2])
    assert torch.equal(runs[2], runs[3]) and not torch.equal(runs[2], runs[4])


def test_model_left_unchanged(shapes_cnn: nn.Module) -> None:
    model = mixed_mode_copy(shapes_cnn)
    reference = copy.deepcopy(model)
    activation_maximization(model, "features.13", 3, steps=2)  # BatchNorm then an in-place ReLU
    activation_maximization(model, None, 0, steps=2)
    assert_untouched(model, reference)


@pytest.mark.parametrize(
    "layer, unit, message",
    [(None, NUM_CLASSES, r"unit must be in \[0, 5\)"), ("features.12", 64, "unit.*64 channels"), (None, -1, "unit")],
)
def test_unit_out_of_range_leaves_the_model_unchanged(shapes_cnn: nn.Module, layer, unit, message) -> None:
    model = mixed_mode_copy(shapes_cnn)
    reference = copy.deepcopy(model)
    with pytest.raises(ValueError, match=message):
        activation_maximization(model, layer, unit, steps=2)
    assert_untouched(model, reference)


def test_failure_mid_ascent_leaves_the_model_unchanged(shapes_cnn: nn.Module) -> None:
    model = FailsOnCall(mixed_mode_copy(shapes_cnn), n=3)
    reference = copy.deepcopy(model)
    with pytest.raises(RuntimeError, match="boom"):
        activation_maximization(model, "model.features.8", 1, steps=5)
    assert model.calls == 3
    assert_untouched(model, reference)


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(layer="features.99"), ValueError, "layer"),
        (dict(layer=nn.Conv2d(3, 3, 1)), ValueError, "layer"),
        (dict(unit=1.0), TypeError, "unit"),
        (dict(unit=True), TypeError, "unit"),
        (dict(steps=0), ValueError, "steps"),
        (dict(lr=-0.1), ValueError, "lr"),
        (dict(jitter=-1), ValueError, "jitter"),
        (dict(blur_every=1.5), TypeError, "blur_every"),
        (dict(blur_sigma=0), ValueError, "blur_sigma"),
        (dict(decay=-1e-3), ValueError, "decay"),
        (dict(decay=float("nan")), ValueError, "decay"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(image_size=(0, 64)), ValueError, "image_size"),
        (dict(image_size=(64, 64, 3)), TypeError, "image_size"),
        (dict(init=torch.rand(2, 3, 8, 8)), ValueError, "init"),
        (dict(init=torch.rand(1, 8, 8)), ValueError, "init"),
        (dict(init=torch.rand(3, 8, 8) + 1), ValueError, "init"),
        (dict(init=torch.full((3, 8, 8), float("nan"))), ValueError, "init"),
        (dict(init=torch.ones(3, 8, 8, dtype=torch.uint8)), TypeError, "init"),
    ],
)
def test_activation_maximization_bad_input(shapes_cnn: nn.Module, kwargs: dict, error: type, name: str) -> None:
    with pytest.raises(error, match=name):
        activation_maximization(shapes_cnn, **{"steps": 1, **kwargs})
    assert hook_count(shapes_cnn) == 0


@settings(max_examples=50, deadline=None)
@given(
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    unit=st.integers(0, 3),
    steps=st.integers(1, 4),
    jitter=st.integers(0, 5),
    blur_every=st.integers(0, 2),
    seed=st.integers(0, 2**31),
)
def test_activation_maximization_properties(height, width, unit, steps, jitter, blur_every, seed) -> None:
    """Any size, any regularizer: an image in (0, 1) of the asked shape, a finite history of ``steps`` values."""
    model = Linear((height, width), seed=seed % 7)
    image, history = activation_maximization(
        model, None, unit, image_size=(height, width), steps=steps, lr=0.5, jitter=jitter, blur_every=blur_every,
        seed=seed,
    )
    assert image.shape == (1, 3, height, width)
    assert bool(((image > 0) & (image < 1)).all())
    assert history.shape == (steps,) and bool(torch.isfinite(history).all())


# --------------------------------------------------------------------------- DeepDream


@pytest.mark.parametrize("layer", ["features.8", "features.13"])
def test_deep_dream_amplifies_the_layer(shapes_cnn: nn.Module, scene: torch.Tensor, layer: str) -> None:
    dream = deep_dream(shapes_cnn, layer, scene, steps=5)
    assert dream.shape == scene.shape and dream.dtype == scene.dtype
    assert 0 <= float(dream.min()) and float(dream.max()) <= 1
    with torch.no_grad():
        before = float(dream_objective(shapes_cnn, layer, scene[None]))
        after = float(dream_objective(shapes_cnn, layer, dream[None]))
    assert after > 2 * before  # measured at 5 steps on three scenes: x6 to x12


def test_dream_objective_is_the_l2_norm(shapes_cnn: nn.Module, scene: torch.Tensor) -> None:
    with torch.no_grad():
        expected = shapes_cnn.features[:9](scene[None]).norm()
        torch.testing.assert_close(dream_objective(shapes_cnn, "features.8", scene[None]), expected)


def normalized_step(model: nn.Module, image: torch.Tensor, lr: float) -> torch.Tensor:
    """One DeepDream step written out: ``clamp(x + lr · g / mean|g|)``, ``g`` the gradient of ``||features[:9](x)||``."""
    image = image.clone().requires_grad_()
    (gradient,) = torch.autograd.grad(model.features[:9](image).norm(), image)
    return (image + lr * gradient / gradient.abs().mean()).clamp(0, 1).detach()


def test_one_octave_one_step_is_a_normalized_gradient_step(shapes_cnn: nn.Module, scene: torch.Tensor) -> None:
    dream = deep_dream(shapes_cnn, "features.8", scene[None], octaves=1, steps=1, lr=0.03, jitter=0)
    torch.testing.assert_close(dream, normalized_step(shapes_cnn, scene[None], 0.03))
    change = (dream - scene).abs()
    assert float(change.max()) > 0.03  # the step is lr on average, larger where the gradient is


def test_two_octaves_carry_the_detail(shapes_cnn: nn.Module, scene: torch.Tensor) -> None:
    dream = deep_dream(shapes_cnn, "features.8", scene, octaves=2, octave_scale=1.6, steps=1, lr=0.05, jitter=0)
    resize = lambda x, size: F.interpolate(x, size=size, mode="bilinear", align_corners=False)  # noqa: E731
    small = resize(scene[None], (40, 40))  # round(64 / 1.6)
    detail = normalized_step(shapes_cnn, small, 0.05) - small
    expected = normalized_step(shapes_cnn, (scene[None] + resize(detail, (64, 64))).clamp(0, 1), 0.05)
    torch.testing.assert_close(dream, expected[0])


def test_deep_dream_seed_and_jitter(shapes_cnn: nn.Module, scene: torch.Tensor) -> None:
    run = lambda **kw: deep_dream(shapes_cnn, "features.8", scene, octaves=1, steps=2, **kw)  # noqa: E731
    assert torch.equal(run(seed=3), run(seed=3))
    assert not torch.equal(run(seed=3), run(seed=4))
    assert torch.equal(run(jitter=0, seed=3), run(jitter=0, seed=4))


def test_deep_dream_leaves_model_and_image_unchanged(shapes_cnn: nn.Module, scene: torch.Tensor) -> None:
    model = mixed_mode_copy(shapes_cnn)
    reference = copy.deepcopy(model)
    image = scene[None].clone().requires_grad_()
    deep_dream(model, model.features[13], image, octaves=2, steps=1)
    assert_untouched(model, reference)
    assert image.grad is None and torch.equal(image.detach(), scene[None])
    failing = FailsOnCall(model, n=2)
    with pytest.raises(RuntimeError, match="boom"):
        deep_dream(failing, "model.features.8", scene, steps=3)
    assert_untouched(model, reference)


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(layer="nope"), ValueError, "layer"),
        (dict(image=torch.rand(2, 3, 64, 64)), ValueError, "image"),
        (dict(image=torch.rand(1, 1, 64, 64)), ValueError, "image"),
        (dict(image=torch.rand(64, 64)), ValueError, "image"),
        (dict(image=torch.rand(3, 64, 64) * 2), ValueError, "image"),
        (dict(image=torch.rand(3, 64, 64).numpy()), TypeError, "image"),
        (dict(octaves=0), ValueError, "octaves"),
        (dict(octaves=20), ValueError, "octaves"),
        (dict(octave_scale=0.5), ValueError, "octave_scale"),
        (dict(octave_scale=float("inf")), ValueError, "octave_scale"),
        (dict(steps=0), ValueError, "steps"),
        (dict(lr=0), ValueError, "lr"),
        (dict(jitter=-2), ValueError, "jitter"),
        (dict(seed=1.5), TypeError, "seed"),
    ],
)
def test_deep_dream_bad_input(shapes_cnn: nn.Module, scene: torch.Tensor, kwargs: dict, error: type, name: str) -> None:
    arguments = {"layer": "features.8", "image": scene, "steps": 1, **kwargs}
    with pytest.raises(error, match=name):
        deep_dream(shapes_cnn, arguments.pop("layer"), arguments.pop("image"), **arguments)
    assert hook_count(shapes_cnn) == 0


def test_eval_mode_restores_each_flag_even_after_an_error(shapes_cnn: nn.Module) -> None:
    model = mixed_mode_copy(shapes_cnn)
    flags = [m.training for m in model.modules()]
    with pytest.raises(KeyError):
        with eval_mode(model):
            assert not any(m.training for m in model.modules())
            raise KeyError("inside")
    assert [m.training for m in model.modules()] == flags
    with pytest.raises(TypeError, match="model"):
        with eval_mode("not a model"):  # type: ignore[arg-type]
            pass
