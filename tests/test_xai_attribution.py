"""course_utils.xai attributions against captum, analytic cases, side effects and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from captum.attr import InputXGradient, IntegratedGradients, NoiseTunnel, Occlusion, Saliency
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from course_utils.xai import input_x_gradient, integrated_gradients, occlusion, saliency, smoothgrad
from course_utils.xai.targets import check_target, select_target

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients"),
    pytest.mark.filterwarnings("ignore:Internal batch size cannot be less than the number of input examples"),
]

IG_METHODS = ["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"]
CLASSES = 5
F64 = dict(rtol=1e-10, atol=1e-10)
F32 = dict(rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- models and data


def make_cnn(seed: int, dtype=torch.float64, in_channels: int = 3, inplace: bool = False) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(
            nn.Conv2d(in_channels, 6, 3, padding=1),
            nn.ReLU(inplace=inplace),
            nn.Conv2d(6, 8, 3, stride=2),
            nn.Tanh(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(32, CLASSES),
        )
    return model.to(dtype).eval()


def make_mlp(seed: int, features: int, dtype=torch.float64) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(features, 16), nn.Tanh(), nn.Linear(16, CLASSES))
    return model.to(dtype).eval()


def randn(seed: int, *shape: int, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def random_target(seed: int, n: int) -> torch.Tensor:
    return torch.randint(0, CLASSES, (n,), generator=torch.Generator().manual_seed(seed + 1000))


class Linear(nn.Module):
    """f(x) = <x, W[k]> + c[k]: every gradient method has a closed form."""

    def __init__(self, shape: tuple[int, ...], seed: int, dtype=torch.float64):
        super().__init__()
        self.weight = nn.Parameter(randn(seed, CLASSES, *shape, dtype=dtype))
        self.bias = nn.Parameter(randn(seed + 1, CLASSES, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.flatten(1).T + self.bias


def cases(n_seeds: int):
    """(seed, dtype, model kind, per-sample target?) combinations."""
    return [
        (seed, dtype, kind, per_sample)
        for seed in range(n_seeds)
        for dtype in (torch.float32, torch.float64)
        for kind in ("cnn", "mlp")
        for per_sample in (False, True)
    ]


def setup(seed: int, dtype, kind: str, per_sample: bool, n: int = 4):
    if kind == "cnn":
        model, x = make_cnn(seed, dtype), randn(seed, n, 3, 7 + seed % 3, 6 + seed % 4, dtype=dtype)
    else:
        model, x = make_mlp(seed, 10, dtype), randn(seed, n, 10, dtype=dtype)
    target = random_target(seed, n) if per_sample else seed % CLASSES
    return model, x, target, (F64 if dtype == torch.float64 else F32)


# --------------------------------------------------------------------------- targets


def test_check_target_forms():
    assert check_target(3, 4).tolist() == [3, 3, 3, 3]
    assert check_target(torch.tensor(2), 3).tolist() == [2, 2, 2]
    assert check_target(torch.tensor([0, 4, 1], dtype=torch.int32), 3).dtype == torch.int64
    logits = randn(0, 3, CLASSES)
    assert torch.equal(select_target(logits, torch.tensor([0, 4, 1])), logits[[0, 1, 2], [0, 4, 1]])
    assert torch.equal(select_target(logits, 2), logits[:, 2])
    assert torch.equal(select_target(logits, torch.tensor(2)), logits[:, 2])


@pytest.mark.parametrize(
    "target, error",
    [
        (5, ValueError),  # == number of classes
        (-1, ValueError),
        (torch.tensor([0, 1]), ValueError),  # wrong length
        (torch.tensor([[0, 1, 2]]), ValueError),  # wrong rank
        (torch.tensor([0, 5, 1]), ValueError),
        (torch.tensor([0.0, 1.0, 2.0]), TypeError),
        (torch.tensor([True, False, True]), TypeError),
        (1.0, TypeError),
        (True, TypeError),
        ("cat", TypeError),
        (None, TypeError),
    ],
)
def test_select_target_rejects(target, error):
    with pytest.raises(error, match="target"):
        select_target(randn(0, 3, CLASSES), target)


def test_select_target_rejects_bad_model_output():
    with pytest.raises(ValueError, match="model output"):
        select_target(randn(0, 3, CLASSES, 1), 0)
    with pytest.raises(TypeError, match="model output"):
        select_target((randn(0, 3, CLASSES),), 0)


# --------------------------------------------------------------------------- parity with captum


@pytest.mark.parametrize("seed, dtype, kind, per_sample", cases(3))
@pytest.mark.parametrize("use_abs", [True, False])
def test_saliency_matches_captum(seed, dtype, kind, per_sample, use_abs):
    model, x, target, tol = setup(seed, dtype, kind, per_sample)
    expected = Saliency(model).attribute(x.clone(), target=target, abs=use_abs)
    torch.testing.assert_close(saliency(model, x, target, abs=use_abs), expected, **tol)


@pytest.mark.parametrize("seed, dtype, kind, per_sample", cases(3))
def test_input_x_gradient_matches_captum(seed, dtype, kind, per_sample):
    model, x, target, tol = setup(seed, dtype, kind, per_sample)
    expected = InputXGradient(model).attribute(x.clone(), target=target).detach()
    torch.testing.assert_close(input_x_gradient(model, x, target), expected, **tol)


def random_baselines(kind: str, x: torch.Tensor, seed: int):
    return {"none": None, "scalar": 0.3, "full": randn(seed + 7, *x.shape, dtype=x.dtype),
            "one": randn(seed + 8, 1, *x.shape[1:], dtype=x.dtype)}[kind]


@pytest.mark.parametrize("seed, dtype, kind, per_sample", cases(2))
@pytest.mark.parametrize("method", IG_METHODS)
def test_integrated_gradients_matches_captum(seed, dtype, kind, per_sample, method):
    model, x, target, tol = setup(seed, dtype, kind, per_sample)
    baselines = random_baselines(["none", "scalar", "full", "one"][(seed + per_sample) % 4], x, seed)
    n_steps = [7, 20, 33][seed % 3]
    expected, expected_delta = IntegratedGradients(model).attribute(
        x, baselines=baselines, target=target, n_steps=n_steps, method=method, return_convergence_delta=True
    )
    attributions, delta = integrated_gradients(
        model, x, target, baselines, n_steps=n_steps, method=method, return_convergence_delta=True
    )
    if dtype == torch.float64:
        # captum rounds the step weights (and the riemann points) to float32: a relative 1e-7
        tol = dict(rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(attributions, expected, **tol)
    # delta is a difference of O(1) sums: compare it at the scale of those sums
    scale = attributions.abs().flatten(1).sum(1).max().item()
    torch.testing.assert_close(delta, expected_delta.to(dtype), rtol=0, atol=scale * tol["rtol"] + tol["atol"])


@pytest.mark.parametrize("method", ["riemann_left", "riemann_right", "riemann_middle"])
@pytest.mark.parametrize("n_steps", [2, 8, 32])
def test_integrated_gradients_equals_captum_tightly_where_float32_rounding_is_exact(method, n_steps):
    # with a power-of-two n_steps captum's float32 points and weights are exact binary fractions
    model, x, target, _ = setup(5, torch.float64, "cnn", True)
    expected = IntegratedGradients(model).attribute(x, target=target, n_steps=n_steps, method=method)
    torch.testing.assert_close(integrated_gradients(model, x, target, n_steps=n_steps, method=method), expected,
                               rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("internal_batch_size", [1, 4, 9, 30, 1000])
def test_integrated_gradients_internal_batching_only_changes_speed(internal_batch_size):
    model, x, target, _ = setup(1, torch.float64, "cnn", True)
    full = integrated_gradients(model, x, target, n_steps=13)
    batched = integrated_gradients(model, x, target, n_steps=13, internal_batch_size=internal_batch_size)
    expected = IntegratedGradients(model).attribute(x, target=target, n_steps=13,
                                                    internal_batch_size=internal_batch_size)
    torch.testing.assert_close(batched, full, **F64)
    torch.testing.assert_close(batched, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("seed, dtype, kind, per_sample", cases(2))
@pytest.mark.parametrize("use_abs", [False, True])
def test_smoothgrad_equals_captum_with_the_same_noise(seed, dtype, kind, per_sample, use_abs):
    # captum draws float32 noise from the global generator, laid out like ours: seed it the same
    model, x, target, tol = setup(seed, dtype, kind, per_sample)
    with torch.random.fork_rng():
        torch.manual_seed(seed + 11)
        expected = NoiseTunnel(Saliency(model)).attribute(
            x, nt_type="smoothgrad", nt_samples=6, stdevs=0.4, target=target, abs=use_abs
        )
    ours = smoothgrad(model, x, target, n_samples=6, stdev=0.4, seed=seed + 11, abs=use_abs)
    torch.testing.assert_close(ours, expected, **tol)


def test_smoothgrad_is_the_mean_saliency_of_noisy_copies():
    model, x, target, _ = setup(3, torch.float64, "cnn", True, n=3)
    n_samples, stdev = 5, 0.2
    noise = torch.randn((3, n_samples, *x.shape[1:]), generator=torch.Generator().manual_seed(9)) * stdev
    for use_abs in (False, True):
        expected = torch.stack([
            torch.stack([
                saliency(model, x[i : i + 1] + noise[i, k].double(), target[i : i + 1], abs=use_abs)[0]
                for k in range(n_samples)
            ]).mean(0)
            for i in range(3)
        ])
        ours = smoothgrad(model, x, target, n_samples, stdev, seed=9, abs=use_abs)
        torch.testing.assert_close(ours, expected, **F64)


def test_smoothgrad_seed_and_stdev():
    model, x, target, _ = setup(2, torch.float64, "mlp", False)
    a = smoothgrad(model, x, target, seed=1)
    assert torch.equal(a, smoothgrad(model, x, target, seed=1))
    assert not torch.allclose(a, smoothgrad(model, x, target, seed=2))
    plain_gradient = saliency(model, x, target, abs=False)
    torch.testing.assert_close(smoothgrad(model, x, target, stdev=0.0), plain_gradient, **F64)


def test_smoothgrad_statistically_close_to_captum_with_other_noise():
    model, x, target, _ = setup(4, torch.float64, "cnn", True, n=2)
    with torch.random.fork_rng():
        torch.manual_seed(123)
        theirs = NoiseTunnel(Saliency(model)).attribute(
            x, nt_type="smoothgrad", nt_samples=400, stdevs=0.3, target=target, abs=False
        )
    ours = smoothgrad(model, x, target, n_samples=400, stdev=0.3, seed=7)
    # two independent Monte-Carlo means of the same expectation: the gap is mostly noise
    relative_gap = (ours - theirs).norm() / theirs.norm()
    assert relative_gap < 0.15
    assert (ours - saliency(model, x, target, abs=False)).norm() > (ours - theirs).norm()


OCCLUSION_CASES = [
    # (input shape after N, window, strides, baselines kind, perturbations_per_eval)
    ((3, 7, 6), (3, 3, 3), None, "scalar", 1),
    ((3, 7, 6), (1, 2, 2), (1, 2, 2), "zero", 4),
    ((3, 9, 8), (3, 4, 3), (1, 3, 2), "full", 5),  # windows that do not divide the input
    ((3, 8, 8), (2, 5, 5), 2, "one", 7),
    ((3, 7, 6), (3, 7, 6), None, "scalar", 16),  # one window over everything
    ((3, 10, 9), (3, 3, 4), (2, 2, 3), "full", 1000),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape, window, strides, baseline_kind, per_eval", OCCLUSION_CASES)
@pytest.mark.parametrize("per_sample", [False, True])
def test_occlusion_matches_captum(dtype, shape, window, strides, baseline_kind, per_eval, per_sample):
    seed = sum(shape) + len(baseline_kind)
    model, x = make_cnn(seed, dtype), randn(seed, 3, *shape, dtype=dtype)
    target = random_target(seed, 3) if per_sample else 2
    baselines = {"scalar": -0.5, "zero": 0, "full": randn(seed + 1, 3, *shape, dtype=dtype),
                 "one": randn(seed + 2, 1, *shape, dtype=dtype)}[baseline_kind]
    expected = Occlusion(model).attribute(
        x, sliding_window_shapes=window, strides=strides, baselines=baselines, target=target
    )
    ours = occlusion(model, x, target, window, strides, baselines, perturbations_per_eval=per_eval)
    assert ours.dtype == dtype and ours.shape == x.shape
    # captum divides in float32 whatever the input's dtype
    torch.testing.assert_close(ours, expected.to(dtype), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("window, strides", [((4,), None), ((3,), (2,)), ((10,), 3), ((1,), 1)])
def test_occlusion_matches_captum_on_vectors(window, strides):
    model, x = make_mlp(0, 10), randn(1, 4, 10)
    target = random_target(0, 4)
    expected = Occlusion(model).attribute(x, sliding_window_shapes=window, strides=strides, target=target)
    ours = occlusion(model, x, target, window, strides)
    torch.testing.assert_close(ours, expected.double(), rtol=1e-5, atol=1e-6)


def occlusion_by_hand(model, x, target, window, strides, baseline):
    """Direct reading of the definition: loop over every window position."""
    shape = x.shape[1:]
    # windows start every `stride` until one reaches the end of the dimension
    starts = [range(0, size - w + s, s) for size, w, s in zip(shape, window, strides)]
    total, count = torch.zeros_like(x), torch.zeros(shape, dtype=x.dtype)
    clean = model(x).gather(1, target[:, None])[:, 0]
    for corner in torch.cartesian_prod(*[torch.tensor(list(r)) for r in starts]).view(-1, len(shape)):
        region = tuple(slice(int(c), int(c) + w) for c, w in zip(corner, window))
        occluded = x.clone()
        occluded[(slice(None), *region)] = baseline
        drop = clean - model(occluded).gather(1, target[:, None])[:, 0]
        total[(slice(None), *region)] += drop.view(-1, *[1] * len(shape))
        count[region] += 1
    return total / count


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    height=st.integers(3, 9),
    width=st.integers(3, 9),
    per_eval=st.integers(1, 50),
)
def test_occlusion_equals_the_definition(data, height, width, per_eval):
    window = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, height)), data.draw(st.integers(1, width)))
    strides = tuple(data.draw(st.integers(1, w)) for w in window)
    model, x = make_cnn(height * width, in_channels=2), randn(height + width, 2, 2, height, width)
    target = random_target(height, 2)
    with torch.no_grad():
        expected = occlusion_by_hand(model, x, target, window, strides, 0.25)
    torch.testing.assert_close(occlusion(model, x, target, window, strides, 0.25, per_eval), expected, **F64)


# --------------------------------------------------------------------------- analytic cases


@pytest.mark.parametrize("shape", [(6,), (2, 4, 5)])
@pytest.mark.parametrize("method", IG_METHODS[:4])
def test_linear_model_closed_forms(shape, method):
    model, x, b = Linear(shape, 0), randn(1, 3, *shape), randn(2, 3, *shape)
    target = torch.tensor([1, 4, 0])
    w = model.weight.detach()[target]
    torch.testing.assert_close(saliency(model, x, target, abs=False), w, rtol=0, atol=1e-14)
    torch.testing.assert_close(input_x_gradient(model, x, target), x * w, rtol=0, atol=1e-14)
    attributions, delta = integrated_gradients(model, x, target, b, n_steps=9, method=method,
                                               return_convergence_delta=True)
    torch.testing.assert_close(attributions, (x - b) * w, rtol=1e-13, atol=1e-13)
    assert delta.abs().max() < 1e-12


def test_captum_trapezoid_rule_weights_sum_to_one_minus_one_over_n():
    model, x, b = Linear((3, 4), 1), randn(3, 2, 3, 4), randn(4, 2, 3, 4)
    for n_steps in (2, 5, 12):
        ours = integrated_gradients(model, x, 3, b, n_steps=n_steps, method="riemann_trapezoid")
        expected = (n_steps - 1) / n_steps * (x - b) * model.weight.detach()[3]
        torch.testing.assert_close(ours, expected, rtol=1e-13, atol=1e-13)


def test_integrated_gradients_completeness_for_a_nonlinear_net():
    # a smooth (tanh) net: Gauss-Legendre converges fast, the attributions add up to f(x) - f(b)
    model, x, target, _ = setup(6, torch.float64, "mlp", True)
    b = randn(9, *x.shape)
    attributions, delta = integrated_gradients(model, x, target, b, n_steps=32, return_convergence_delta=True)
    logits = lambda z: model(z).gather(1, target[:, None])[:, 0].detach()  # noqa: E731
    gain = logits(x) - logits(b)
    torch.testing.assert_close(attributions.flatten(1).sum(1), gain, rtol=0, atol=1e-12)
    torch.testing.assert_close(delta, attributions.flatten(1).sum(1) - gain, **F64)
    _, coarse_delta = integrated_gradients(model, x, target, b, n_steps=2, return_convergence_delta=True)
    assert coarse_delta.abs().max() > 1e-8


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_middle"])
def test_integrated_gradients_delta_shrinks_with_steps_for_a_relu_net(method):
    model, x, target, _ = setup(6, torch.float64, "cnn", True)
    b = randn(9, *x.shape)
    delta = {
        n: integrated_gradients(model, x, target, b, n_steps=n, method=method, return_convergence_delta=True)[1]
        for n in (16, 1024)
    }
    assert delta[1024].abs().max() < delta[16].abs().max() / 10


def test_occlusion_of_a_linear_model_with_unit_windows():
    model, x = Linear((2, 3, 4), 2), randn(3, 4, 2, 3, 4)
    expected = (x - 0.5) * model.weight.detach()[[2, 0, 1, 4]]
    ours = occlusion(model, x, torch.tensor([2, 0, 1, 4]), (1, 1, 1), baselines=0.5)
    torch.testing.assert_close(ours, expected, **F64)


# --------------------------------------------------------------------------- batching and models


ALL_METHODS = {
    "saliency": lambda m, x, t: saliency(m, x, t),
    "input_x_gradient": lambda m, x, t: input_x_gradient(m, x, t),
    "integrated_gradients": lambda m, x, t: integrated_gradients(m, x, t, n_steps=8, baselines=0.1,
                                                                 internal_batch_size=4),
    "smoothgrad": lambda m, x, t: smoothgrad(m, x, t, n_samples=3),
    "occlusion": lambda m, x, t: occlusion(m, x, t, (3, 3, 2), strides=(1, 2, 1), perturbations_per_eval=3),
}
MULTI_PASS = ["integrated_gradients", "occlusion"]  # call the model several times
BATCH_INDEPENDENT = [name for name in ALL_METHODS if name != "smoothgrad"]  # its noise depends on the batch


@pytest.mark.parametrize("name", BATCH_INDEPENDENT)
def test_batched_equals_one_by_one(name):
    model, x, target, _ = setup(4, torch.float64, "cnn", True, n=5)
    one_by_one = torch.cat([ALL_METHODS[name](model, x[i : i + 1], target[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(ALL_METHODS[name](model, x, target), one_by_one, **F64)


@pytest.mark.parametrize("name", ALL_METHODS)
def test_in_place_relu_models(name):
    model, x, target, _ = setup(2, torch.float64, "cnn", True)
    model_inplace = make_cnn(2, inplace=True)
    expected = ALL_METHODS[name](model, x, target)
    torch.testing.assert_close(ALL_METHODS[name](model_inplace, x, target), expected, **F64)
    # an in-place op on the input itself: the model only ever sees a copy of it
    first_inplace = nn.Sequential(nn.ReLU(inplace=True), model)
    first_plain = nn.Sequential(nn.ReLU(), model)
    x_before = x.clone()
    result = ALL_METHODS[name](first_inplace, x, target)
    assert torch.equal(x, x_before)
    torch.testing.assert_close(result, ALL_METHODS[name](first_plain, x, target), **F64)


@pytest.mark.parametrize("name", ALL_METHODS)
def test_output_shape_and_dtype(name):
    for dtype in (torch.float32, torch.float64):
        model, x, target, _ = setup(1, dtype, "cnn", False)
        result = ALL_METHODS[name](model, x, target)
        assert result.shape == x.shape and result.dtype == dtype and not result.requires_grad


# --------------------------------------------------------------------------- no side effects


class Exploding(nn.Module):
    """Wraps a model and raises on the ``explode_at``-th call (when given)."""

    def __init__(self, model: nn.Module, explode_at: int | None = None):
        super().__init__()
        self.model, self.explode_at, self.calls = model, explode_at, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.explode_at:
            raise RuntimeError("boom")
        return self.model(x)


def hook_counts(model: nn.Module) -> list[int]:
    return [
        len(hooks)
        for module in model.modules()
        for hooks in (module._forward_hooks, module._forward_pre_hooks, module._backward_hooks)
    ]


def side_effect_state(model, x):
    return (
        model.training,
        hook_counts(model),
        x.grad.clone(),
        [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        torch.is_grad_enabled(),
        torch.get_rng_state(),
    )


def assert_same_state(before, after):
    assert before[0] == after[0] and before[1] == after[1] and before[4] == after[4]
    assert torch.equal(before[2], after[2])
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(before[3], after[3]))
    assert torch.equal(before[5], after[5])


@pytest.mark.parametrize(
    "name, explode_at",
    [(name, explode_at) for name in ALL_METHODS for explode_at in (None, 1)]
    + [(name, 3) for name in MULTI_PASS],  # fail midway through the passes
)
@pytest.mark.parametrize("training", [False, True])
def test_no_side_effects(name, training, explode_at):
    model = Exploding(make_cnn(3), explode_at).train(training)
    params = list(model.parameters())
    params[0].grad = torch.ones_like(params[0])  # one parameter with a gradient, the others without
    x, target = randn(3, 2, 3, 6, 6).requires_grad_(), torch.tensor([1, 3])
    x.grad = torch.full_like(x, 7.0)
    x_before, before = x.detach().clone(), side_effect_state(model, x)
    if explode_at is None:
        assert not ALL_METHODS[name](model, x, target).requires_grad
    else:
        with pytest.raises(RuntimeError, match="boom"):
            ALL_METHODS[name](model, x, target)
        assert model.calls == explode_at
    assert_same_state(before, side_effect_state(model, x))
    assert torch.equal(x.detach(), x_before)


@pytest.mark.parametrize("name", ALL_METHODS)
def test_works_under_no_grad(name):
    model, x, target, _ = setup(0, torch.float64, "cnn", True)
    expected = ALL_METHODS[name](model, x, target)
    with torch.no_grad():
        torch.testing.assert_close(ALL_METHODS[name](model, x, target), expected, **F64)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", ALL_METHODS)
@pytest.mark.parametrize(
    "inputs, target, error, match",
    [
        ([[1.0, 2.0]], 0, TypeError, "inputs"),
        (torch.ones(2, 3, 6, 6, dtype=torch.long), 0, TypeError, "inputs"),
        (torch.ones(6), 0, ValueError, "inputs"),
        (torch.ones(0, 3, 6, 6), 0, ValueError, "inputs"),
        (torch.full((2, 3, 6, 6), math.nan), 0, ValueError, "inputs"),
        (torch.ones(2, 3, 6, 6), CLASSES, ValueError, "target"),
        (torch.ones(2, 3, 6, 6), -1, ValueError, "target"),
        (torch.ones(2, 3, 6, 6), torch.tensor([0, 1, 2]), ValueError, "target"),
        (torch.ones(2, 3, 6, 6), torch.tensor([0.0, 1.0]), TypeError, "target"),
        (torch.ones(2, 3, 6, 6), "dog", TypeError, "target"),
    ],
)
def test_bad_inputs_and_targets(name, inputs, target, error, match):
    with pytest.raises(error, match=match):
        ALL_METHODS[name](make_cnn(0, torch.float32), inputs, target)


@pytest.mark.parametrize("name", ALL_METHODS)
def test_bad_model(name):
    x = torch.ones(2, 3, 6, 6)
    with pytest.raises(TypeError, match="model"):
        ALL_METHODS[name]("resnet", x, 0)
    with pytest.raises(ValueError, match="model output"):
        ALL_METHODS[name](lambda z: z.sum((2, 3)).unsqueeze(-1), x, 0)


X = torch.ones(2, 3, 6, 6)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(sliding_window_shapes=(3, 7, 2)), ValueError, "sliding_window_shapes"),  # larger than the input
        (dict(sliding_window_shapes=(2, 2)), ValueError, "sliding_window_shapes"),  # wrong rank
        (dict(sliding_window_shapes=2), TypeError, "sliding_window_shapes"),
        (dict(sliding_window_shapes=(1, 0, 2)), ValueError, "sliding_window_shapes"),
        (dict(sliding_window_shapes=(1, 2.5, 2)), TypeError, "sliding_window_shapes"),
        (dict(sliding_window_shapes=(1, 2, 2), strides=(1, 1)), ValueError, "strides"),
        (dict(sliding_window_shapes=(1, 2, 2), strides=0), ValueError, "strides"),
        (dict(sliding_window_shapes=(1, 2, 2), strides=(1, 0, 1)), ValueError, "strides"),
        (dict(sliding_window_shapes=(1, 2, 2), strides=(1, 3, 1)), ValueError, "strides"),  # gaps
        (dict(sliding_window_shapes=(1, 2, 2), baselines=torch.zeros(3, 3, 6, 6)), ValueError, "baselines"),
        (dict(sliding_window_shapes=(1, 2, 2), baselines=torch.zeros(6, 5)), ValueError, "baselines"),
        (dict(sliding_window_shapes=(1, 2, 2), baselines="grey"), TypeError, "baselines"),
        (dict(sliding_window_shapes=(1, 2, 2), baselines=math.inf), ValueError, "baselines"),
        (dict(sliding_window_shapes=(1, 2, 2), perturbations_per_eval=0), ValueError, "perturbations_per_eval"),
    ],
)
def test_occlusion_rejects(kwargs, error, match):
    with pytest.raises(error, match=match):
        occlusion(make_cnn(0, torch.float32), X, 0, **kwargs)


def test_occlusion_accepts_a_stride_beyond_a_full_size_window():
    # stride > window is allowed where the window already spans the whole dimension (as in captum)
    model = make_cnn(0, torch.float32)
    expected = Occlusion(model).attribute(X, sliding_window_shapes=(3, 2, 2), strides=(5, 2, 2), target=1)
    torch.testing.assert_close(occlusion(model, X, 1, (3, 2, 2), (5, 2, 2)), expected, **F32)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(n_steps=0), ValueError, "n_steps"),
        (dict(n_steps=2.0), TypeError, "n_steps"),
        (dict(n_steps=1, method="riemann_trapezoid"), ValueError, "n_steps"),
        (dict(method="simpson"), ValueError, "method"),
        (dict(baselines=torch.zeros(2, 3, 5, 6)), ValueError, "baselines"),
        (dict(baselines=torch.full((1, 3, 6, 6), math.nan)), ValueError, "baselines"),
        (dict(internal_batch_size=0), ValueError, "internal_batch_size"),
    ],
)
def test_integrated_gradients_rejects(kwargs, error, match):
    with pytest.raises(error, match=match):
        integrated_gradients(make_cnn(0, torch.float32), X, 0, **kwargs)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(n_samples=0), ValueError, "n_samples"),
        (dict(stdev=-0.1), ValueError, "stdev"),
        (dict(stdev=math.nan), ValueError, "stdev"),
        (dict(stdev="0.1"), TypeError, "stdev"),
        (dict(seed=-1), ValueError, "seed"),
    ],
)
def test_smoothgrad_rejects(kwargs, error, match):
    with pytest.raises(error, match=match):
        smoothgrad(make_cnn(0, torch.float32), X, 0, **kwargs)


def test_n_steps_one_is_allowed_where_the_rule_is_defined():
    model, x = Linear((4,), 3), randn(3, 2, 4)
    for method in IG_METHODS[:4]:
        torch.testing.assert_close(integrated_gradients(model, x, 1, n_steps=1, method=method),
                                   x * model.weight.detach()[1], rtol=1e-13, atol=1e-13)


# --------------------------------------------------------------------------- properties


class IgnoresChannel(nn.Module):
    """A CNN that never looks at channel ``ignored`` of its input."""

    def __init__(self, channels: int, ignored: int, seed: int):
        super().__init__()
        self.keep = torch.ones(1, channels, 1, 1, dtype=torch.float64)
        self.keep[:, ignored] = 0
        self.net = make_cnn(seed, in_channels=channels)

    def forward(self, x):
        return self.net(x * self.keep)


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    channels=st.integers(2, 4),
    height=st.integers(3, 8),
    width=st.integers(3, 8),
    seed=st.integers(0, 10_000),
)
def test_occlusion_is_zero_where_the_model_does_not_look(data, channels, height, width, seed):
    ignored = data.draw(st.integers(0, channels - 1))
    window = (1, data.draw(st.integers(1, height)), data.draw(st.integers(1, width)))
    strides = (1, data.draw(st.integers(1, window[1])), data.draw(st.integers(1, window[2])))
    model, x = IgnoresChannel(channels, ignored, seed), randn(seed, 2, channels, height, width)
    attributions = occlusion(model, x, seed % CLASSES, window, strides, perturbations_per_eval=seed % 9 + 1)
    assert attributions[:, ignored].abs().max() < 1e-12
    assert attributions.abs().max() > 0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 4), features=st.integers(1, 12))
def test_saliency_abs_is_the_magnitude_of_the_gradient(seed, n, features):
    model, x = make_mlp(seed, features), randn(seed, n, features)
    signed, magnitude = saliency(model, x, seed % CLASSES, abs=False), saliency(model, x, seed % CLASSES)
    assert (magnitude >= 0).all()
    assert torch.equal(magnitude, signed.abs())


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n_steps=st.integers(1, 40), method=st.sampled_from(IG_METHODS[:4]))
def test_integrated_gradients_of_a_linear_model_is_exact(seed, n_steps, method):
    model, x, b = Linear((3, 2), seed), randn(seed, 2, 3, 2), randn(seed + 1, 1, 3, 2)
    expected = (x - b) * model.weight.detach()[seed % CLASSES]
    torch.testing.assert_close(integrated_gradients(model, x, seed % CLASSES, b, n_steps, method), expected,
                               rtol=1e-12, atol=1e-12)
