"""Seeing inside the net: attributions, class activation maps, feature visualization, embeddings
and the evaluation of explanations. Same semantics as captum / pytorch-grad-cam where they overlap.
"""

from .activation_maps import cam, grad_cam, grad_cam_plus_plus, upsample_heatmap
from .attribution import attribution_map, input_x_gradient, integrated_gradients, occlusion, saliency, smoothgrad
from .embeddings import embed_2d, embedding_scores, extract_features
from .evaluation import deletion_insertion, mass_fraction, pearson_correlation, pointing_game, randomization_sanity_check
from .feature_visualization import activation_maximization, deep_dream

__all__ = [
    "saliency", "input_x_gradient", "attribution_map", "smoothgrad", "integrated_gradients", "occlusion",
    "cam", "grad_cam", "grad_cam_plus_plus", "upsample_heatmap",
    "activation_maximization", "deep_dream",
    "extract_features", "embed_2d", "embedding_scores",
    "pointing_game", "deletion_insertion", "mass_fraction", "pearson_correlation", "randomization_sanity_check",
]  # fmt: skip
