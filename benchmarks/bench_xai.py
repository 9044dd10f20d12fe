"""Attribution methods of course_utils.xai against captum, timed side by side in one run.

    .venv/bin/python benchmarks/bench_xai.py [--threads N]

A small CNN on a batch of 8 RGB 64x64 images (CPU, float32). Each line times ours and captum's
call alternately (so both see the same machine load) and prints the medians and the speed-up
``captum / ours`` (> 1: ours is faster). Occlusion uses a 3x8x8 window with stride 4
(15 x 15 = 225 window positions). ``--threads 1`` gives steadier ratios on a busy machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from typing import Callable

import torch
from captum.attr import IntegratedGradients, NoiseTunnel, Occlusion, Saliency
from torch import nn

from course_utils.xai import integrated_gradients, occlusion, saliency, smoothgrad
from course_utils.xai.attribution import ELEMENTS_PER_EVAL

warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(32, 10),
    ).eval()


Attribution = Callable[[], torch.Tensor]


def time_pair(ours: Attribution, theirs: Attribution, repeats: int) -> tuple[float, float]:
    """Median seconds of ``ours`` and ``theirs``, run alternately after one warm-up call each.

    Also checks that both return the same attributions (the benchmark is meaningless otherwise).
    """
    torch.testing.assert_close(ours(), theirs().to(torch.float32), rtol=1e-3, atol=1e-4)
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, bucket in ((ours, times[0]), (theirs, times[1])):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def _captum_smoothgrad(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """captum's SmoothGrad with the noise our ``seed=0`` draws (so that the results agree)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return NoiseTunnel(Saliency(model)).attribute(
            x, nt_type="smoothgrad", nt_samples=25, stdevs=0.15, target=target, abs=False
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    torch.set_num_threads(parser.parse_args().threads)
    model, x, target = small_cnn(), torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(1)), 3
    window, stride = (3, 8, 8), (3, 4, 4)
    per_eval = ELEMENTS_PER_EVAL // x.numel()  # what our default picks for this batch
    rows = [
        (
            f"occlusion (ours ppe={per_eval}) vs captum default (ppe=1)",
            *time_pair(
                lambda: occlusion(model, x, target, window, stride),
                lambda: Occlusion(model).attribute(x, target=target, sliding_window_shapes=window, strides=stride),
                repeats=3,
            ),
        ),
        (
            f"occlusion, both ppe={per_eval}",
            *time_pair(
                lambda: occlusion(model, x, target, window, stride, perturbations_per_eval=per_eval),
                lambda: Occlusion(model).attribute(
                    x, target=target, sliding_window_shapes=window, strides=stride, perturbations_per_eval=per_eval
                ),
                repeats=3,
            ),
        ),
        (
            "integrated gradients (50 steps, gausslegendre)",
            *time_pair(
                lambda: integrated_gradients(model, x, target),
                lambda: IntegratedGradients(model).attribute(x, target=target),
                repeats=5,
            ),
        ),
        (
            "saliency",
            *time_pair(
                lambda: saliency(model, x, target),
                lambda: Saliency(model).attribute(x.clone(), target=target),
                repeats=21,
            ),
        ),
        (
            "smoothgrad (25 samples)",
            *time_pair(
                lambda: smoothgrad(model, x, target, seed=0),
                lambda: _captum_smoothgrad(model, x, target),
                repeats=5,
            ),
        ),
    ]
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, inputs {tuple(x.shape)} float32, CPU")
    print(f"machine load average (1/5/15 min) after the run: {load} on {os.cpu_count()} cores")
    print(f"{'method':<58} {'ours ms':>9} {'captum ms':>10} {'speed-up':>9}")
    for name, ours, theirs in rows:
        print(f"{name:<58} {1e3 * ours:9.1f} {1e3 * theirs:10.1f} {theirs / ours:8.2f}x")


if __name__ == "__main__":
    main()
