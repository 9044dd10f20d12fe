"""Timings of course_utils.boxes against torchvision.ops (median of repeats, same run).

    .venv/bin/python benchmarks/bench_boxes.py

torchvision's NMS is a C++ loop; ours computes the IoU of a block of boxes (up to 256 of one
class) against the class's remaining boxes in one vectorized step and settles the block in a
few more (see course_utils.boxes._greedy_nms), so expect it to be somewhat slower. Timings
swing with the machine's load: torchvision's kernels are single-threaded, ours are many
small PyTorch ops, which suffer most when the cores are oversubscribed. The ratio column is
ours / torchvision (> 1 means ours is slower).
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Callable

import torch
import torchvision.ops as tv

from course_utils import boxes as cb


def random_boxes(n: int, seed: int, image: float = 1000.0, max_size: float = 200.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    top_left = torch.rand(n, 2, generator=g) * image
    return torch.cat([top_left, top_left + 1 + torch.rand(n, 2, generator=g) * max_size], dim=1)


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    torch.manual_seed(0)
    rows = []

    a, b = random_boxes(1000, 0), random_boxes(1000, 1)
    assert torch.equal(cb.box_iou(a, b), tv.box_iou(a, b))
    rows.append(("box_iou 1000x1000", median_seconds(lambda: cb.box_iou(a, b), 20),
                 median_seconds(lambda: tv.box_iou(a, b), 20), ""))
    rows.append(("generalized_box_iou 1000x1000", median_seconds(lambda: cb.generalized_box_iou(a, b), 20),
                 median_seconds(lambda: tv.generalized_box_iou(a, b), 20), ""))

    for n in (2000, 5000):
        boxes, scores = random_boxes(n, n), torch.rand(n, generator=torch.Generator().manual_seed(n))
        keep = cb.nms(boxes, scores, 0.5)
        assert torch.equal(keep, tv.nms(boxes, scores, 0.5))
        rows.append((f"nms {n} boxes", median_seconds(lambda: cb.nms(boxes, scores, 0.5), 5),
                     median_seconds(lambda: tv.nms(boxes, scores, 0.5), 5), f"{len(keep)} kept"))

    n = 2000
    boxes, scores = random_boxes(n, 7), torch.rand(n, generator=torch.Generator().manual_seed(7))
    idxs = torch.randint(0, 20, (n,), generator=torch.Generator().manual_seed(8))
    keep = cb.batched_nms(boxes, scores, idxs, 0.5)
    assert torch.equal(keep, tv.batched_nms(boxes, scores, idxs, 0.5))
    rows.append((f"batched_nms {n} boxes, 20 classes",
                 median_seconds(lambda: cb.batched_nms(boxes, scores, idxs, 0.5), 5),
                 median_seconds(lambda: tv.batched_nms(boxes, scores, idxs, 0.5), 5), f"{len(keep)} kept"))

    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU (load average {load:.1f}); medians in ms")
    print(f"{'operation':<36}{'ours':>10}{'torchvision':>13}{'ratio':>8}  note")
    for name, ours, ref, note in rows:
        print(f"{name:<36}{ours * 1e3:>10.2f}{ref * 1e3:>13.2f}{ours / ref:>8.1f}  {note}")


if __name__ == "__main__":
    main()
