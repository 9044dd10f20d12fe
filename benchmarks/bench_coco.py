"""course_utils.metrics.coco_evaluate against pycocotools on the same synthetic detections.

Both compute the 12 COCO numbers of 2000 images (~5 ground truths and ~20 detections each, 4
classes, sizes from small to large). pycocotools needs COCO json first (xywh boxes), so its
time is reported with and without that conversion; its printing is silenced.

Run: .venv/bin/python benchmarks/bench_coco.py [--images 2000] [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from course_utils.metrics import COCO_KEYS, coco_evaluate


def synthetic_detections(n_images: int, seed: int = 0, n_classes: int = 4) -> tuple[list[dict], list[dict]]:
    """Ground truths of log-uniform sizes; ~80% of them found (jittered), plus false positives."""
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for _ in range(n_images):
        n_gt = rng.poisson(5)
        size = np.exp(rng.uniform(np.log(8), np.log(300), size=(n_gt, 2)))
        corner = rng.uniform(0, 640, size=(n_gt, 2))
        gt = np.concatenate([corner, corner + size], axis=1)
        labels = rng.integers(0, n_classes, n_gt)
        found = rng.random(n_gt) < 0.8
        jittered = gt[found] + rng.normal(0, 0.1, (found.sum(), 4)) * np.tile(size[found], 2)
        n_false = max(rng.poisson(20) - found.sum(), 0)
        false_size = np.exp(rng.uniform(np.log(8), np.log(300), size=(n_false, 2)))
        false_corner = rng.uniform(0, 640, size=(n_false, 2))
        boxes = np.concatenate([jittered, np.concatenate([false_corner, false_corner + false_size], axis=1)])
        boxes = np.concatenate([boxes[:, :2].clip(max=boxes[:, 2:]), boxes[:, 2:]], axis=1)  # keep x1 <= x2
        scores = np.concatenate([rng.uniform(0.3, 1, found.sum()), rng.uniform(0, 0.8, n_false)])
        det_labels = np.concatenate([labels[found], rng.integers(0, n_classes, n_false)])
        preds.append(
            {
                "boxes": torch.tensor(boxes, dtype=torch.float32),
                "scores": torch.tensor(scores, dtype=torch.float32),
                "labels": torch.tensor(det_labels, dtype=torch.int64),
            }
        )
        targets.append({"boxes": torch.tensor(gt, dtype=torch.float32), "labels": torch.tensor(labels, dtype=torch.int64)})
    return preds, targets


def to_coco_json(preds: list[dict], targets: list[dict]) -> tuple[dict, list[dict]]:
    """The COCO ground-truth dataset and result list of the same detections (xywh boxes)."""
    images, annotations, results, classes = [], [], [], set()
    for i, (pred, target) in enumerate(zip(preds, targets)):
        images.append({"id": i, "height": 1000, "width": 1000})
        for (x1, y1, x2, y2), label in zip(target["boxes"].tolist(), target["labels"].tolist()):
            bbox = [x1, y1, x2 - x1, y2 - y1]
            ann = {"id": len(annotations) + 1, "image_id": i, "category_id": label, "iscrowd": 0}
            annotations.append(dict(ann, bbox=bbox, area=bbox[2] * bbox[3]))
            classes.add(label)
        for (x1, y1, x2, y2), score, label in zip(pred["boxes"].tolist(), pred["scores"].tolist(), pred["labels"].tolist()):
            results.append({"image_id": i, "category_id": label, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
            classes.add(label)
    return {"images": images, "annotations": annotations, "categories": [{"id": c} for c in sorted(classes)]}, results


def pycocotools_stats(dataset: dict, results: list[dict]) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    preds, targets = synthetic_detections(args.images)
    n_gt, n_det = sum(len(t["labels"]) for t in targets), sum(len(p["labels"]) for p in preds)
    print(f"{args.images} images, {n_gt} ground truths, {n_det} detections; median of {args.runs} runs\n")

    convert, evaluate, ours = [], [], []
    for _ in range(args.runs):
        start = time.perf_counter()
        dataset, results = to_coco_json(preds, targets)
        convert.append(time.perf_counter() - start)
        start = time.perf_counter()
        reference = pycocotools_stats(dataset, results)
        evaluate.append(time.perf_counter() - start)
        start = time.perf_counter()
        stats = coco_evaluate(preds, targets)
        ours.append(time.perf_counter() - start)
    ours_s, convert_s, evaluate_s = (statistics.median(t) for t in (ours, convert, evaluate))
    difference = np.abs(np.array([stats[key] for key in COCO_KEYS]) - reference).max()

    rows = [
        ("pycocotools: tensors -> COCO json", convert_s, None),
        ("pycocotools: loadRes + evaluate + accumulate + summarize", evaluate_s, evaluate_s / ours_s),
        ("pycocotools: total", convert_s + evaluate_s, (convert_s + evaluate_s) / ours_s),
        ("course_utils.metrics.coco_evaluate (from tensors)", ours_s, 1.0),
    ]
    print(f"{'':58} {'median s':>9} {'ours is x faster':>17}")
    for name, seconds, ratio in rows:
        print(f"{name:58} {seconds:9.3f} {'' if ratio is None else f'{ratio:.1f}':>17}")
    print(f"\nmap = {stats['map']:.4f}; max |ours - pycocotools| over the 12 numbers: {difference:.1e}")


if __name__ == "__main__":
    main()
