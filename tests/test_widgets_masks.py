"""course_utils.widgets.masks: probabilities, thresholded masks, their scores, the figure and the explorer, headless."""

from __future__ import annotations

import pytest
import torch

from course_utils import data
from course_utils.metrics import confusion_matrix, segmentation_scores
from course_utils.segmentation import UNet, boundary_iou
from course_utils.widgets import _base, class_probabilities_map, mask_explorer, mask_figure, mask_scores, threshold_mask

pytestmark = pytest.mark.usefixtures("one_thread")
CLASSES = ("background", *data.SHAPES)


def unet() -> UNet:
    torch.manual_seed(0)
    return UNet(len(CLASSES), base_channels=4)


def samples(n: int = 2):
    scenes = data.SceneSegmentation(n, seed=0, image_size=32, object_size=(8, 16))
    return [scenes[i] for i in range(n)]


def test_class_probabilities_are_the_softmax_and_keep_the_model_mode():
    model = unet().train()
    image = samples(1)[0][0]
    probabilities = class_probabilities_map(model, image)
    assert model.training
    with torch.no_grad():
        expected = model.eval()(image[None])[0].softmax(0)
    torch.testing.assert_close(probabilities, expected)
    torch.testing.assert_close(probabilities.sum(0), torch.ones(32, 32))
    with pytest.raises(ValueError, match="image must have shape"):
        class_probabilities_map(model, torch.rand(1, 32, 32))


class DeviceRecorder(torch.nn.Module):
    """Holds one parameter on ``device`` and records the device of each input; answers on the CPU."""

    def __init__(self, device: str) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1, device=device))
        self.seen: list[torch.device] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.device)
        return torch.zeros(len(x), 2, *x.shape[-2:])


def test_class_probabilities_send_the_image_to_the_models_device():
    model = DeviceRecorder("meta")  # a device other than the CPU, on any machine
    probabilities = class_probabilities_map(model, torch.rand(3, 8, 8))
    assert model.seen == [torch.device("meta")] and probabilities.device == torch.device("cpu")
    assert _base.model_device(torch.nn.ReLU()) == torch.device("cpu")  # no parameters: the CPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_class_probabilities_of_a_model_on_the_gpu():
    model = unet()
    image = samples(1)[0][0]
    expected = class_probabilities_map(model, image)
    torch.testing.assert_close(class_probabilities_map(model.cuda(), image), expected, atol=1e-4, rtol=1e-4)


def test_threshold_mask():
    probabilities = torch.tensor([[[0.2, 0.6]], [[0.8, 0.4]]])
    assert threshold_mask(probabilities, 1, 0.5).tolist() == [[True, False]]
    assert threshold_mask(probabilities, 0, 0.6).tolist() == [[False, True]]  # >= threshold
    with pytest.raises(ValueError, match="class_index must be <"):
        threshold_mask(probabilities, 2, 0.5)
    with pytest.raises(ValueError, match="threshold must be in"):
        threshold_mask(probabilities, 0, 1.5)


@pytest.mark.parametrize("seed", range(5))
def test_mask_scores_equal_the_metrics_of_the_binary_confusion_matrix(seed):
    g = torch.Generator().manual_seed(seed)
    true = torch.rand(20, 24, generator=g) < 0.3
    pred = torch.where(torch.rand(20, 24, generator=g) < 0.7, true, torch.rand(20, 24, generator=g) < 0.3)
    scores = mask_scores(pred, true)
    reference = segmentation_scores(confusion_matrix(pred.long(), true.long(), 2))
    assert scores["iou"] == pytest.approx(float(reference["iou"][1]))
    assert scores["dice"] == pytest.approx(float(reference["dice"][1]))
    assert scores["boundary_iou"] == pytest.approx(boundary_iou(pred.long(), true.long(), 2)["mean_iou"])


def test_mask_scores_edge_cases():
    empty = torch.zeros(4, 4, dtype=torch.bool)
    assert mask_scores(empty, empty) == {"iou": 1.0, "dice": 1.0, "boundary_iou": 1.0}
    full = ~empty
    assert mask_scores(empty, full)["dice"] == 0.0
    with pytest.raises(ValueError, match="same shape"):
        mask_scores(empty, torch.zeros(4, 5, dtype=torch.bool))


def test_mask_figure_titles_its_scores():
    image, mask = samples(1)[0]
    probabilities = torch.zeros(len(CLASSES), 32, 32)
    probabilities[0] = 1.0
    label = int(mask.max())
    probabilities[:, mask == label] = 0.0
    probabilities[label, mask == label] = 1.0  # a perfect prediction of that class
    figure = mask_figure(image, mask, probabilities, label, 0.5, CLASSES)
    titles = [ax.get_title() for ax in figure.axes[:3]]
    assert titles[0] == f"true mask: {CLASSES[label]}" and "IoU 1.00, Dice 1.00" in titles[1] and "boundary IoU 1.00" in titles[1]


@pytest.fixture
def shown(monkeypatch):
    figures = []
    monkeypatch.setattr(_base, "display", figures.append)
    return figures


def test_the_explorer_builds_and_redraws_headless(shown):
    models = {"a": unet(), "b": UNet(len(CLASSES), base_channels=4, skip_connections=False)}
    box = mask_explorer(models, samples(), CLASSES, class_index=2, threshold=0.3)
    assert isinstance(box, _base.Dashboard) and box.first_view.startswith(b"\x89PNG")
    controls = box.children[1].children
    assert [c.description for c in controls] == ["image", "model", "class", "threshold"]
    assert controls[2].value == 2 and controls[3].value == 0.3
    controls[0].value = 1
    controls[1].value = "b"
    controls[3].value = 0.6
    assert len(shown) == 4 and "p ≥ 0.60" in shown[-1].axes[1].get_title()


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(models={}), TypeError, "models must be a non-empty dict"),
        (dict(samples=[]), ValueError, "samples must be a non-empty list"),
        (dict(class_index=9), ValueError, "class_index must be <"),
        (dict(threshold=-0.1), ValueError, "threshold must be in"),
    ],
)
def test_the_explorer_rejects_bad_arguments_by_name(kwargs, error, message, shown):
    args = dict(models={"a": unet()}, samples=samples(1), class_names=CLASSES) | kwargs
    with pytest.raises(error, match=message):
        mask_explorer(**args)


def test_the_explorer_defaults_to_the_zoo_unets(shown):
    box = mask_explorer()
    controls = box.children[1].children
    assert list(controls[1].options) == ["unet", "unet_no_skips"] and controls[0].max == 19
    assert [label for label, _ in controls[2].options] == list(CLASSES)
