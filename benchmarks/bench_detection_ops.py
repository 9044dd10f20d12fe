"""Timings of course_utils.detection's RoI operators against torchvision.ops (medians, same run).

    .venv/bin/python benchmarks/bench_detection_ops.py [--repeats 30] [--threads N]

The case is a Faster R-CNN-like one: a 2 x 64 x 32 x 32 float32 feature map (stride 16 of a
512 x 512 image), 512 RoIs of 16-256 image pixels (1-16 feature cells), a 7 x 7 output.
torchvision's kernels are single-threaded C++ loops; ours are a few vectorized PyTorch ops
around one ``embedding_bag`` call (see course_utils/detection/ops.py). The two are timed
alternately, so that load from other processes hits both alike. The ratio column is
ours / torchvision (> 1 means ours is slower).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable

import torch
import torchvision.ops as tv

from course_utils import detection as cd


def random_rois(k: int, batch: int, seed: int, image: float = 512.0, min_size: float = 16.0,
                max_size: float = 256.0) -> torch.Tensor:
    """Tensor[k, 5]: batch index, then xyxy boxes inside a ``image`` x ``image`` picture."""
    g = torch.Generator().manual_seed(seed)
    size = min_size + torch.rand(k, 2, generator=g) * (max_size - min_size)
    top_left = torch.rand(k, 2, generator=g) * (image - size)
    index = torch.randint(0, batch, (k, 1), generator=g).float()
    return torch.cat([index, top_left, top_left + size], dim=1)


def paired_medians(ours: Callable[[], object], ref: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median seconds of each function, timed alternately after one warm-up call each."""
    ours(), ref()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((ours, times[0]), (ref, times[1])):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def backward(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[], None]:
    """Forward + backward of ``fn(x).sum()`` (the gradient of ``x`` is reset each time)."""
    def run() -> None:
        x.grad = None
        fn(x).sum().backward()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    features = torch.randn(2, 64, 32, 32, generator=torch.Generator().manual_seed(0))
    rois = random_rois(512, 2, seed=1)
    scale = 1 / 16
    rows = []
    for sampling_ratio in (2, -1):
        ours = lambda: cd.roi_align(features, rois, 7, scale, sampling_ratio)  # noqa: E731
        ref = lambda: tv.roi_align(features, rois, 7, scale, sampling_ratio)  # noqa: E731
        diff = (ours() - ref()).abs().max().item()
        rows.append((f"roi_align sampling_ratio={sampling_ratio}", *paired_medians(ours, ref, args.repeats),
                     f"max |diff| {diff:.1e}"))
    # Adaptive mode pads every RoI to the largest sample grid: add one RoI covering the whole map
    # (5 x 5 samples per bin instead of 1-3 x 1-3) and every RoI pays for it.
    padded = torch.cat([rois, torch.tensor([[0.0, 0.0, 0.0, 511.0, 511.0]])])
    ours = lambda: cd.roi_align(features, padded, 7, scale, -1)  # noqa: E731
    ref = lambda: tv.roi_align(features, padded, 7, scale, -1)  # noqa: E731
    diff = (ours() - ref()).abs().max().item()
    rows.append(("roi_align sr=-1, + one whole-map RoI", *paired_medians(ours, ref, args.repeats),
                 f"max |diff| {diff:.1e}"))
    ours = lambda: cd.roi_pool(features, rois, 7, scale)  # noqa: E731
    ref = lambda: tv.roi_pool(features, rois, 7, scale)  # noqa: E731
    assert torch.equal(ours(), ref())
    rows.append(("roi_pool", *paired_medians(ours, ref, args.repeats), "equal"))

    x = features.clone().requires_grad_(True)
    for name, ours_fn, ref_fn in [
        ("roi_align sr=2 forward+backward", lambda t: cd.roi_align(t, rois, 7, scale, 2),
         lambda t: tv.roi_align(t, rois, 7, scale, 2)),
        ("roi_pool forward+backward", lambda t: cd.roi_pool(t, rois, 7, scale),
         lambda t: tv.roi_pool(t, rois, 7, scale)),
    ]:
        rows.append((name, *paired_medians(backward(ours_fn, x), backward(ref_fn, x), args.repeats), ""))

    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU (load average {load:.1f}); "
          f"2x64x32x32 map, 512 RoIs, 7x7; medians of {args.repeats} in ms")
    print(f"{'operation':<36}{'ours':>10}{'torchvision':>13}{'ratio':>8}  note")
    for name, ours_s, ref_s, note in rows:
        print(f"{name:<36}{ours_s * 1e3:>10.2f}{ref_s * 1e3:>13.2f}{ours_s / ref_s:>8.1f}  {note}")


if __name__ == "__main__":
    main()
