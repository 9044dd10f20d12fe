"""CAM, Grad-CAM, Grad-CAM++, HiResCAM and layer recording, checked against captum and pytorch-grad-cam."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from course_utils.xai import cam, grad_cam, grad_cam_plus_plus, hires_cam, upsample_heatmap
from course_utils.xai.layers import layer_name, record_layer, resolve_layer

NUM_CLASSES = 5


class GapFcNet(nn.Module):
    """features -> global average pooling -> fc: the architecture CAM needs."""

    def __init__(self, in_channels: int = 3, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, stride=2),
            nn.ReLU(),
        )
        self.fc = nn.Linear(width, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def plain_cnn() -> tuple[nn.Module, str]:
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.Tanh(),
        nn.Flatten(), nn.Linear(8 * 6 * 5, NUM_CLASSES),
    )  # fmt: skip
    return model, "3"


def inplace_cnn() -> tuple[nn.Module, str]:
    """The explained conv is followed by BatchNorm and an in-place ReLU."""
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, NUM_CLASSES),
    )  # fmt: skip
    return model, "2"


def gap_fc_net() -> tuple[nn.Module, str]:
    return GapFcNet(), "features.3"


MODELS = {"plain": plain_cnn, "inplace": inplace_cnn, "gap_fc": gap_fc_net}
METHODS = {"grad_cam": grad_cam, "grad_cam_plus_plus": grad_cam_plus_plus, "hires_cam": hires_cam}


def make(name: str, seed: int, dtype: torch.dtype = torch.float32) -> tuple[nn.Module, str, torch.Tensor]:
    """A random model (eval mode, BatchNorm statistics randomized) and a batch of 4 images."""
    torch.manual_seed(seed)
    model, layer = MODELS[name]()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    inputs = torch.randn(4, 3, 12, 10)
    return model.eval().to(dtype), layer, inputs.to(dtype)


def per_sample_target(seed: int) -> torch.Tensor:
    return torch.randint(0, NUM_CLASSES, (4,), generator=torch.Generator().manual_seed(seed))


def targets_for(kind: str, seed: int) -> int | torch.Tensor:
    return seed % NUM_CLASSES if kind == "int" else per_sample_target(seed)


def library_targets(target: int | torch.Tensor, n: int) -> list[ClassifierOutputTarget]:
    classes = [target] * n if isinstance(target, int) else target.tolist()
    return [ClassifierOutputTarget(c) for c in classes]


def close(actual: torch.Tensor, expected: torch.Tensor | np.ndarray, dtype: torch.dtype) -> None:
    expected = torch.as_tensor(expected).to(actual)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol)


def hooks_left(model: nn.Module) -> int:
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return sum(len(getattr(module, kind)) for module in model.modules() for kind in kinds)


# --- parity with the libraries ------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("target_kind", ["int", "tensor"])
@pytest.mark.parametrize("name", list(MODELS))
def test_grad_cam_equals_captum(name: str, target_kind: str, dtype: torch.dtype) -> None:
    nonzero_maps = 0
    for seed in range(3):
        model, layer, inputs = make(name, seed, dtype)
        target = targets_for(target_kind, seed)
        expected = LayerGradCam(model, resolve_layer(model, layer)).attribute(inputs, target, relu_attributions=True)
        actual = grad_cam(model, layer, inputs, target)
        assert actual.shape == expected.shape and actual.shape[:2] == (4, 1)
        close(actual, expected.detach(), dtype)
        assert (actual >= 0).all()
        nonzero_maps += int((actual.flatten(1) > 0).any(dim=1).sum())
    assert nonzero_maps >= 6, "most maps must be informative, not all zeros"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("target_kind", ["int", "tensor"])
@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize(
    ("ours", "theirs"), [(grad_cam, GradCAM), (grad_cam_plus_plus, GradCAMPlusPlus), (hires_cam, HiResCAM)]
)
def test_normalized_upsampled_maps_equal_pytorch_grad_cam(ours, theirs, name, target_kind, dtype) -> None:
    nonzero_maps = 0
    for seed in range(3):
        model, layer, inputs = make(name, seed, dtype)
        if name == "inplace":
            # pytorch-grad-cam stores the layer output without cloning it, so the in-place ReLU
            # that follows the conv overwrites its copy; the ReLU's own output is unaffected.
            layer = "3"
        target = targets_for(target_kind, seed)
        size = tuple(inputs.shape[-2:])
        with theirs(model, target_layers=[resolve_layer(model, layer)]) as library_cam:
            expected = library_cam(inputs, library_targets(target, len(inputs)))
        actual = upsample_heatmap(ours(model, layer, inputs, target), size, normalize=True)
        assert actual.shape == (4, 1) + size
        nonzero_maps += int((actual.flatten(1).amax(dim=1) > 0.99).sum())
        torch.testing.assert_close(actual[:, 0].float(), torch.from_numpy(expected), rtol=1e-5, atol=2e-6)
    assert nonzero_maps >= 6, "most maps must be informative, not all zeros"


def test_pytorch_grad_cam_differs_at_a_layer_followed_by_an_in_place_op() -> None:
    """Why the parity test above explains the ReLU, not the conv, of the in-place model."""
    model, layer, inputs = make("inplace", 0)
    with GradCAM(model, target_layers=[resolve_layer(model, layer)]) as library_cam:
        library = torch.from_numpy(library_cam(inputs, library_targets(1, len(inputs))))
    ours = upsample_heatmap(grad_cam(model, layer, inputs, 1), tuple(inputs.shape[-2:]), normalize=True)[:, 0]
    captum = LayerGradCam(model, resolve_layer(model, layer)).attribute(inputs, 1, relu_attributions=True)
    captum = upsample_heatmap(captum.detach(), tuple(inputs.shape[-2:]), normalize=True)[:, 0]
    torch.testing.assert_close(ours, captum, rtol=1e-5, atol=1e-6)
    assert (ours - library).abs().max() > 1e-2


@pytest.mark.parametrize("method", [grad_cam, grad_cam_plus_plus, hires_cam])
@pytest.mark.parametrize("name", list(MODELS))
def test_batched_equals_one_by_one(method, name: str) -> None:
    model, layer, inputs = make(name, 7, torch.float64)
    target = per_sample_target(7)
    batched = method(model, layer, inputs, target)
    one_by_one = torch.cat([method(model, layer, inputs[i : i + 1], int(target[i])) for i in range(len(inputs))])
    torch.testing.assert_close(batched, one_by_one, rtol=1e-12, atol=1e-12)


def test_grad_cam_plus_plus_formula_by_hand() -> None:
    """For a GAP+FC net the layer gradient is W[t, c] / (h w) everywhere: the formula by hand."""
    model, layer, inputs = make("gap_fc", 3, torch.float64)
    features = model.features(inputs)
    h, w = features.shape[-2:]
    g = model.fc.weight[2][None, :, None, None].expand_as(features) / (h * w)
    alpha = g**2 / (2 * g**2 + features.sum(dim=(2, 3), keepdim=True) * g**3 + 1e-6)
    weights = (g.clamp(min=0) * alpha).sum(dim=(2, 3), keepdim=True)
    expected = (weights * features).sum(dim=1, keepdim=True).clamp(min=0)
    close(grad_cam_plus_plus(model, layer, inputs, 2), expected.detach(), torch.float64)


def test_hires_cam_is_grad_cam_where_the_gradient_is_constant() -> None:
    """Behind global average pooling the layer gradient is the same at every position: both maps agree."""
    model, layer, inputs = make("gap_fc", 4, torch.float64)
    target = per_sample_target(4)
    close(hires_cam(model, layer, inputs, target), grad_cam(model, layer, inputs, target), torch.float64)


def test_hires_cam_keeps_the_location_of_the_gradient() -> None:
    """A score read from one position of the layer: HiResCAM is zero elsewhere, Grad-CAM is not."""

    class OnePosition(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            with torch.no_grad():  # positive weights on positive images: every activation is > 0
                self.conv.weight.uniform_(0.1, 1.0)
                self.conv.bias.fill_(0.1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x).flatten(2)[:, :, 17]  # [N, 4]: each channel's value at position 17

    model, inputs = OnePosition(), torch.rand(2, 3, 12, 10)
    local = hires_cam(model, "conv", inputs, 0).flatten(1)
    assert local[:, 17].min() > 0
    assert torch.count_nonzero(local[:, torch.arange(120) != 17]) == 0
    assert torch.count_nonzero(grad_cam(model, "conv", inputs, 0)) == 2 * 120


def test_hires_cam_of_a_constant_score_is_zero() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 8 * 8, 2))
    with torch.no_grad():
        model[2].weight.zero_()
    maps = hires_cam(model, "0", torch.randn(3, 3, 10, 10), 1)
    assert maps.shape == (3, 1, 8, 8) and torch.count_nonzero(maps) == 0


# --- CAM ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("target_kind", ["int", "tensor"])
def test_cam_equals_grad_cam_times_hw(target_kind: str) -> None:
    for seed in range(3):
        model, layer, inputs = make("gap_fc", seed, torch.float64)
        target = targets_for(target_kind, seed)
        maps = cam(model, layer, "fc", inputs, target)
        h, w = maps.shape[-2:]
        captum = LayerGradCam(model, resolve_layer(model, layer)).attribute(inputs, target)  # no ReLU
        close(maps / (h * w), captum.detach(), torch.float64)
        relu_maps = cam(model, model.features[3], model.fc, inputs, target, relu=True)
        close(relu_maps / (h * w), grad_cam(model, layer, inputs, target), torch.float64)
        assert (maps < 0).any(), "the raw CAM keeps negative evidence"


def test_cam_mean_plus_bias_is_the_logit() -> None:
    model, layer, inputs = make("gap_fc", 4, torch.float64)
    target = per_sample_target(4)
    maps = cam(model, layer, "fc", inputs, target)
    logits = model(inputs).gather(1, target[:, None])[:, 0]
    close(maps.mean(dim=(1, 2, 3)) + model.fc.bias[target], logits.detach(), torch.float64)


def test_cam_rejects_a_wrong_head() -> None:
    model, layer, inputs = make("gap_fc", 0)
    with pytest.raises(TypeError, match="fc_layer"):
        cam(model, layer, "features.2", inputs, 0)
    head_mismatch = nn.Sequential(
        nn.Conv2d(3, 4, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2), nn.Linear(2, 2)
    )
    with pytest.raises(ValueError, match="feature_layer has 4 channels but fc_layer expects 2"):
        cam(head_mismatch, "0", "4", torch.randn(2, 3, 8, 8), 0)


# --- layer recording ---------------------------------------------------------------------


def test_record_layer_survives_in_place_ops_and_gives_the_gradient() -> None:
    model, layer, inputs = make("inplace", 1, torch.float64)
    conv_output = model[2](model[1](model[0](inputs.clone())))
    with record_layer(model, layer, requires_grad=True) as recording:
        logits = model(inputs)
    torch.testing.assert_close(recording.output, conv_output)
    assert (recording.output < 0).any(), "the in-place ReLU must not have reached the recording"
    # Gradient by hand: run the rest of the network on a leaf copy of the conv output.
    leaf = conv_output.detach().requires_grad_()
    rest = model[3:](leaf.clone())  # the in-place ReLU needs a non-leaf
    (expected,) = torch.autograd.grad(rest[:, 3].sum(), leaf)
    torch.testing.assert_close(rest, logits)
    torch.testing.assert_close(recording.gradient(logits[:, 3]), expected)


def test_record_layer_without_gradient_stores_a_detached_copy() -> None:
    model, layer, inputs = make("plain", 0)
    with record_layer(model, model[3]) as recording:
        model(inputs)
    assert not recording.output.requires_grad
    torch.testing.assert_close(recording.output, model[3](model[2](model[1](model[0](inputs)))).detach())
    with pytest.raises(RuntimeError, match="requires_grad=True"):
        recording.gradient(recording.output.sum())
    assert hooks_left(model) == 0


def test_record_layer_never_flags_the_callers_tensor() -> None:
    model = nn.Sequential(nn.Identity(), nn.Conv2d(3, 2, 1), nn.Flatten(), nn.Linear(2 * 16, 2))
    for p in model.parameters():
        p.requires_grad_(False)
    inputs = torch.randn(2, 3, 4, 4)
    maps = grad_cam(model, "0", inputs, 1)
    assert maps.shape == (2, 1, 4, 4) and not inputs.requires_grad


def test_layer_names() -> None:
    model, _, _ = make("gap_fc", 0)
    assert layer_name(model, model.features[3]) == "features.3"
    assert resolve_layer(model, "features.3") is model.features[3]
    assert layer_name(model, model) == ""
    with pytest.raises(ValueError, match="layer 'features.9'"):
        resolve_layer(model, "features.9")
    with pytest.raises(ValueError, match="layer Conv2d"):
        resolve_layer(model, nn.Conv2d(3, 3, 1))
    with pytest.raises(TypeError, match="layer"):
        resolve_layer(model, 3)


def test_layer_as_name_or_module_gives_the_same_map() -> None:
    model, layer, inputs = make("plain", 2)
    torch.testing.assert_close(grad_cam(model, layer, inputs, 1), grad_cam(model, model[3], inputs, 1))


# --- side effects and bad input ----------------------------------------------------------------


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("method", ["grad_cam", "grad_cam_plus_plus", "hires_cam", "cam"])
def test_no_side_effects(method: str, training: bool) -> None:
    model, layer, inputs = make("gap_fc", 5)
    model.train(training)
    inputs.requires_grad_()
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    before = {name: p.detach().clone() for name, p in model.state_dict().items()}
    if method == "cam":
        maps = cam(model, layer, "fc", inputs, 1)
    else:
        maps = METHODS[method](model, layer, inputs, 1)
    assert maps.shape == (4, 1, 6, 5)
    assert model.training is training and all(m.training is training for m in model.modules())
    assert inputs.grad is None
    assert torch.equal(model.fc.weight.grad, torch.ones_like(model.fc.weight))
    assert all(p.grad is None for name, p in model.named_parameters() if name != "fc.weight")
    assert all(torch.equal(before[name], p) for name, p in model.state_dict().items())
    assert hooks_left(model) == 0


def test_works_inside_no_grad() -> None:
    model, layer, inputs = make("plain", 3)
    expected = grad_cam(model, layer, inputs, 2)
    with torch.no_grad():
        torch.testing.assert_close(grad_cam(model, layer, inputs, 2), expected)


class Exploding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.conv(x)
        raise RuntimeError("boom")


@pytest.mark.parametrize("method", [grad_cam, grad_cam_plus_plus, hires_cam])
def test_hooks_removed_after_an_exception(method) -> None:
    model = Exploding()
    with pytest.raises(RuntimeError, match="boom"):
        method(model, model.conv, torch.randn(1, 3, 8, 8), 0)
    assert hooks_left(model) == 0
    with pytest.raises(RuntimeError, match="boom"):
        cam(model, model.conv, model.fc, torch.randn(1, 3, 8, 8), 0)
    assert hooks_left(model) == 0
    with pytest.raises(RuntimeError, match="boom"), record_layer(model, "conv", requires_grad=True):
        model(torch.randn(1, 3, 8, 8))
    assert hooks_left(model) == 0


@pytest.mark.parametrize("method", ["grad_cam", "grad_cam_plus_plus", "hires_cam", "cam"])
def test_bad_input_gives_clear_errors(method: str) -> None:
    model, layer, inputs = make("gap_fc", 0)

    def run(layer=layer, inputs=inputs, target=1):
        if method == "cam":
            return cam(model, layer, "fc", inputs, target)
        return METHODS[method](model, layer, inputs, target)

    with pytest.raises(ValueError, match="layer 'nope' is not in the model"):
        run(layer="nope")
    with pytest.raises(ValueError, match="layer .* not a sub-module"):
        run(layer=nn.Conv2d(8, 8, 1))
    with pytest.raises(ValueError, match=r"target must be in \[0, 5\)"):
        run(target=5)
    with pytest.raises(ValueError, match="target"):
        run(target=torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="target"):
        run(target=1.5)
    with pytest.raises(ValueError, match="inputs must have 4 dimensions"):
        run(inputs=inputs[0])
    with pytest.raises(TypeError, match="inputs"):
        run(inputs=inputs.long())
    with pytest.raises(ValueError, match="layer 'fc' must output an N x C x h x w"):
        run(layer="fc")
    assert hooks_left(model) == 0


class WithUnusedLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.unused = nn.Conv2d(3, 3, 1)
        self.fc = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def test_unused_layer_is_reported() -> None:
    model = WithUnusedLayer()
    with pytest.raises(ValueError, match="'unused' was not called"):
        grad_cam(model, "unused", torch.randn(1, 3, 4, 4), 0)
    with pytest.raises(ValueError, match="'unused' was not called"):
        cam(model, "unused", "fc", torch.randn(1, 3, 4, 4), 0)


# --- upsample_heatmap ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(17, 23), (5, 4), (12, 10), (30, 7)])
def test_upsample_equals_cv2_resize(size: tuple[int, int]) -> None:
    heatmap = torch.rand(3, 1, 6, 5, generator=torch.Generator().manual_seed(size[0]))
    actual = upsample_heatmap(heatmap, size)
    expected = np.stack([cv2.resize(h[0].numpy(), size[::-1], interpolation=cv2.INTER_LINEAR) for h in heatmap])
    torch.testing.assert_close(actual[:, 0], torch.from_numpy(expected), rtol=1e-5, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 6), w=st.integers(1, 6), out_h=st.integers(1, 20), out_w=st.integers(1, 20),
    seed=st.integers(0, 2**16), scale=st.floats(1e-3, 1e3), shift=st.floats(-10, 10), constant=st.booleans(),
)  # fmt: skip
def test_normalized_maps_property(h, w, out_h, out_w, seed, scale, shift, constant) -> None:
    heatmap = torch.rand(2, 1, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    if constant:
        heatmap = torch.full_like(heatmap, 0.3)
    maps = upsample_heatmap(heatmap, (out_h, out_w), normalize=True)
    assert maps.shape == (2, 1, out_h, out_w)
    assert (maps >= 0).all() and (maps < 1).all()
    if constant:
        assert (maps == 0).all()
    # Min-max normalisation forgets positive affine changes (up to the 1e-7 epsilon).
    affine = upsample_heatmap(heatmap * scale + shift, (out_h, out_w), normalize=True)
    torch.testing.assert_close(affine, maps, rtol=0, atol=1e-5)


def test_upsample_bad_input() -> None:
    with pytest.raises(ValueError, match="heatmap"):
        upsample_heatmap(torch.rand(2, 3, 4, 4), (8, 8))
    with pytest.raises(ValueError, match="heatmap must have 4 dimensions"):
        upsample_heatmap(torch.rand(2, 4, 4), (8, 8))
    with pytest.raises(TypeError, match="size"):
        upsample_heatmap(torch.rand(2, 1, 4, 4), 8)
    with pytest.raises(ValueError, match=r"size\[1\]"):
        upsample_heatmap(torch.rand(2, 1, 4, 4), (8, 0))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), factor=st.floats(0.1, 10.0))
def test_grad_cam_scales_with_the_classifier(seed: int, factor: float) -> None:
    """Scaling the last linear layer by c > 0 scales every Grad-CAM map by c."""
    model, layer, inputs = make("gap_fc", seed, torch.float64)
    target = per_sample_target(seed)
    expected = grad_cam(model, layer, inputs, target) * factor
    with torch.no_grad():
        model.fc.weight.mul_(factor)
    torch.testing.assert_close(grad_cam(model, layer, inputs, target), expected, rtol=1e-10, atol=1e-12)


class TupleOutput(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x


def test_a_layer_must_output_a_tensor() -> None:
    model = nn.Sequential(nn.Conv2d(3, 2, 1), TupleOutput())
    with pytest.raises(TypeError, match="layer '1' must output a Tensor"), record_layer(model, "1"):
        model(torch.randn(1, 3, 4, 4))
    assert hooks_left(model) == 0


@pytest.mark.parametrize("layer", ["features.6", "features.13", "features.18"])
def test_grad_cam_equals_captum_on_the_real_mobilenet_v2(layer):
    """On torchvision's ImageNet MobileNetV2 (the real model of issue 11) and real photos, several classes at once."""
    from course_utils import imagenet

    model = imagenet.load_mobilenet_v2()
    inputs = torch.cat([imagenet.preprocess(imagenet.photo(name)) for name in ("chelsea", "coffee")])
    target = torch.tensor([285, 967])  # Egyptian cat, espresso
    ours = grad_cam(model, layer, inputs, target)
    theirs = LayerGradCam(model, model.get_submodule(layer)).attribute(inputs, target, relu_attributions=True)
    assert ours.shape == theirs.shape and ours.amax() > 0
    torch.testing.assert_close(ours, theirs, atol=1e-6 * float(theirs.abs().max()) + 1e-8, rtol=1e-5)
