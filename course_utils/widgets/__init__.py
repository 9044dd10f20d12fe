"""Interactive dashboards, one per concept.

Each widget is a thin ipywidgets layer over pure functions (in the same submodule) that compute
what is shown; the tests call those functions directly, without a browser.
"""

from .scenes import scene_explorer, scene_figure

__all__ = ["scene_explorer", "scene_figure"]
from .iou import iou_explorer, iou_explorer_figure, iou_figure, iou_parts

__all__ += ["iou_explorer", "iou_figure", "iou_parts", "iou_explorer_figure"]
from .anchors import anchor_explorer, anchor_figure, assign_anchors, match_counts

__all__ += ["anchor_explorer", "anchor_figure", "assign_anchors", "match_counts"]
from .nms_map import (
    draw_pr_curve,
    filter_detections,
    match_detections,
    nms_explorer,
    nms_figure,
    nms_steps,
    nms_steps_figure,
    nms_summary,
    pr_curve,
    pr_curve_explorer,
    pr_curve_figure,
    precision_envelope,
    simulate_detections,
)

__all__ += [
    "simulate_detections", "filter_detections", "nms_steps", "nms_steps_figure", "match_detections", "pr_curve",
    "precision_envelope", "draw_pr_curve", "nms_summary", "nms_figure", "nms_explorer", "pr_curve_figure", "pr_curve_explorer",
]
from .cam import cam_explorer, cam_figure, class_heatmap, class_probabilities, conv_blocks, explorer_scene, layer_map

__all__ += ["cam_explorer", "cam_figure", "class_heatmap", "class_probabilities", "conv_blocks", "explorer_scene", "layer_map"]
from .occlusion import forward_passes, occlusion_explorer, occlusion_figure, occlusion_map, window_starts

__all__ += ["window_starts", "forward_passes", "occlusion_map", "occlusion_figure", "occlusion_explorer"]
from .embeddings import (
    EmbeddingCache,
    add_thumbnails,
    embed,
    embedding_explorer,
    embedding_figure,
    explorer_scores,
    scatter_embedding,
    spread_indices,
)

__all__ += [
    "EmbeddingCache", "embed", "spread_indices", "scatter_embedding", "add_thumbnails", "explorer_scores", "embedding_figure",
    "embedding_explorer",
]
