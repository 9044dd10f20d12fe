"""Interactive dashboards, one per concept.

Each widget (``*_explorer``) is a thin ipywidgets layer over pure functions in the same submodule
that compute what is shown; the tests call those functions directly, without a browser.
"""

from .anchors import anchor_explorer, anchor_figure, assign_anchors, match_counts
from .cam import cam_explorer, cam_figure, class_heatmap, class_probabilities, conv_blocks, explorer_scene, layer_map
from .detection import detect, detection_explorer, detection_figure, detection_summary, map50, proposals
from .feature_visualization import unit_count, unit_explorer, unit_figure, unit_picture
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
from .iou import iou_explorer, iou_explorer_figure, iou_figure, iou_parts
from .masks import class_probabilities_map, mask_explorer, mask_figure, mask_scores, threshold_mask
from .nms_map import (
    draw_pr_curve,
    filter_detections,
    nms_explorer,
    nms_figure,
    nms_steps,
    nms_steps_figure,
    nms_summary,
    pr_curve_explorer,
    pr_curve_figure,
    simulate_detections,
)
from .occlusion import forward_passes, occlusion_explorer, occlusion_figure, occlusion_map, window_starts
from .one_stage import (
    anchor_matches,
    detections_above,
    model_anchors,
    one_stage_explorer,
    one_stage_figure,
    positive_anchors,
    responsible_cells,
    run_detector,
    shared_cells,
)
from .randomization import explanation_maps, randomization_explorer, randomization_figure, randomized_explanations
from .scenes import scene_explorer, scene_figure

__all__ = [
    # the dashboards
    "scene_explorer", "iou_explorer", "anchor_explorer", "nms_explorer", "pr_curve_explorer", "detection_explorer",
    "occlusion_explorer", "cam_explorer", "embedding_explorer", "one_stage_explorer", "mask_explorer", "unit_explorer",
    "randomization_explorer",
    # the pure functions behind them
    "scene_figure",
    "iou_parts", "iou_figure", "iou_explorer_figure",
    "assign_anchors", "match_counts", "anchor_figure",
    "simulate_detections", "filter_detections", "nms_steps", "nms_steps_figure", "nms_summary", "nms_figure",
    "draw_pr_curve", "pr_curve_figure",
    "detect", "proposals", "map50", "detection_summary", "detection_figure",
    "responsible_cells", "shared_cells", "anchor_matches", "positive_anchors", "model_anchors", "detections_above", "run_detector",
    "one_stage_figure",
    "window_starts", "forward_passes", "occlusion_map", "occlusion_figure",
    "conv_blocks", "explorer_scene", "layer_map", "class_heatmap", "class_probabilities", "cam_figure",
    "class_probabilities_map", "threshold_mask", "mask_scores", "mask_figure",
    "unit_count", "unit_picture", "unit_figure",
    "EmbeddingCache", "embed", "spread_indices", "scatter_embedding", "add_thumbnails", "explorer_scores", "embedding_figure",
    "explanation_maps", "randomized_explanations", "randomization_figure",
]  # fmt: skip
