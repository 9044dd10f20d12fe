"""RegionScores and DetectionScores: a segmenter and a detector seen as classifiers for Grad-CAM."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

from course_utils import zoo
from course_utils.detection import FasterRCNN
from course_utils.segmentation import FCN
from course_utils.xai import DetectionScores, RegionScores, grad_cam, upsample_heatmap
from course_utils.xai.layers import record_layer


def random_fcn(seed: int) -> FCN:
    torch.manual_seed(seed)
    model = FCN(num_classes=3, width=4)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_region_scores_sum_the_logits_over_each_region() -> None:
    model, images = random_fcn(0), torch.rand(2, 3, 32, 24)
    regions = torch.rand(2, 3, 32, 24) > 0.5
    with torch.no_grad():
        logits = model(images)
        scores = RegionScores(model, regions)(images)
    expected = torch.stack([torch.stack([logits[i, k][regions[i, k]].sum() for k in range(3)]) for i in range(2)])
    torch.testing.assert_close(scores, expected)


@pytest.mark.parametrize("layer", ["features", "features.11"])
def test_region_grad_cam_equals_pytorch_grad_cams_semantic_segmentation_target(layer: str) -> None:
    """On the zoo's trained FCN (a random one gives all-zero maps), the largest predicted class of each scene."""
    model = zoo.load("fcn")
    test_set = zoo.load_test_set("fcn", seed=5, length=3)
    images = torch.stack([test_set[i][0] for i in range(3)])
    with torch.no_grad():
        predicted = model(images).argmax(dim=1)
    regions = F.one_hot(predicted, model.num_classes).permute(0, 3, 1, 2)
    classes = torch.stack([torch.bincount(p.flatten(), minlength=6)[1:].argmax() + 1 for p in predicted])
    ours = grad_cam(RegionScores(model, regions), "segmenter." + layer, images, classes)
    targets = [SemanticSegmentationTarget(int(k), regions[i, k].float().numpy()) for i, k in enumerate(classes)]
    with GradCAM(model, [model.get_submodule(layer)]) as library:
        theirs = torch.from_numpy(library(images, targets))
    shown = upsample_heatmap(ours, (128, 128), normalize=True)[:, 0]
    assert (shown.flatten(1).amax(dim=1) > 0.99).all()
    torch.testing.assert_close(shown, theirs, rtol=1e-5, atol=2e-6)


def random_detector(seed: int) -> FasterRCNN:
    torch.manual_seed(seed)
    return FasterRCNN(num_classes=4, representation_size=32).eval()


def test_detection_scores_are_the_box_heads_logits_of_the_detectors_own_boxes() -> None:
    """Scoring the RPN's proposals gives back the box head's logits of the detector's own forward pass."""
    detector, test_set = zoo.load("faster_rcnn"), zoo.load_test_set("faster_rcnn", seed=5, length=2)
    images = torch.stack([test_set[i][0] for i in range(2)])
    seen = {}

    def keep(key: str, value: object) -> None:
        seen[key] = value  # returns None: the forward pass is unchanged

    handles = [
        detector.roi_heads.box_roi_pool.register_forward_hook(lambda m, args, out: keep("proposals", args[1])),
        detector.roi_heads.box_predictor.register_forward_hook(lambda m, args, out: keep("logits", out[0])),
    ]
    with torch.no_grad():
        detector(list(images))
    for handle in handles:
        handle.remove()
    counts = [len(p) for p in seen["proposals"]]
    logits = seen["logits"].split(counts)
    assert min(counts) >= 3
    for j in range(3):
        boxes = torch.stack([seen["proposals"][i][j] for i in range(2)])
        with torch.no_grad():
            scores = DetectionScores(detector, boxes)(images)
        torch.testing.assert_close(scores, torch.stack([logits[i][j] for i in range(2)]), rtol=1e-5, atol=1e-5)


def test_grad_cam_of_a_detection_is_the_gradient_through_its_box() -> None:
    detector, images = random_detector(1), torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    boxes = torch.tensor([[8.0, 8.0, 24.0, 24.0], [30.0, 20.0, 60.0, 50.0]])
    explained = DetectionScores(detector, boxes)
    maps = grad_cam(explained, "detector.backbone", images, torch.tensor([1, 2]))
    assert maps.shape == (2, 1, 8, 8)
    with record_layer(explained, "detector.backbone", requires_grad=True) as recording:
        scores = explained(images)[:, 1]
    gradient = recording.gradient(scores).abs().sum(dim=1)  # [2, 8, 8]: nonzero only under the box
    assert gradient[0, :4, :4].sum() > 0 and gradient[0, 4:, :].sum() == 0 and gradient[0, :, 4:].sum() == 0


def test_bad_inputs_are_named() -> None:
    model = random_fcn(0)
    with pytest.raises(TypeError, match="segmenter"):
        RegionScores("nope", torch.ones(1, 3, 8, 8))
    with pytest.raises(ValueError, match="regions must have 4 dimensions"):
        RegionScores(model, torch.ones(3, 8, 8))
    with pytest.raises(ValueError, match="regions must have the segmenter's output shape"):
        RegionScores(model, torch.ones(1, 3, 8, 8))(torch.rand(1, 3, 16, 16))
    detector = random_detector(0)
    with pytest.raises(TypeError, match="two-stage detector"):
        DetectionScores(model, torch.zeros(1, 4))
    with pytest.raises(ValueError, match="boxes must have shape"):
        DetectionScores(detector, torch.zeros(1, 5))
    with pytest.raises(ValueError, match="one box per image"):
        DetectionScores(detector, torch.tensor([[0.0, 0.0, 8.0, 8.0]]))(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="images must have 4 dimensions"):
        DetectionScores(detector, torch.tensor([[0.0, 0.0, 8.0, 8.0]]))(torch.rand(3, 32, 32))
