"""Seeing inside the net: attributions, class activation maps, feature visualization, embeddings
and the evaluation of explanations. Same semantics as captum / pytorch-grad-cam where they overlap.
"""

from .activation_maps import cam, grad_cam, grad_cam_plus_plus, hires_cam, upsample_heatmap
from .attribution import attribution_map, input_x_gradient, integrated_gradients, occlusion, saliency, smoothgrad
from .embeddings import embed_2d, embedding_scores, extract_features, linear_probe_r2
from .evaluation import (
    deletion_insertion,
    mass_fraction,
    pearson_correlation,
    pointing_game,
    randomization_layers,
    randomization_sanity_check,
    randomize_layers,
)
from .feature_visualization import activation_maximization, deep_dream
from .targets import DetectionScores, RegionScores

__all__ = [
    "saliency", "input_x_gradient", "attribution_map", "smoothgrad", "integrated_gradients", "occlusion",
    "cam", "grad_cam", "grad_cam_plus_plus", "hires_cam", "upsample_heatmap",
    "activation_maximization", "deep_dream",
    "extract_features", "embed_2d", "embedding_scores", "linear_probe_r2",
    "pointing_game", "deletion_insertion", "mass_fraction", "pearson_correlation", "randomization_layers", "randomize_layers", "randomization_sanity_check",
    "RegionScores", "DetectionScores",
]  # fmt: skip
