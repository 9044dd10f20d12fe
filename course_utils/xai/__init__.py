"""Seeing inside the net: attributions, class activation maps and their evaluation."""

from .attribution import input_x_gradient, integrated_gradients, occlusion, saliency, smoothgrad
from .activation_maps import cam, grad_cam, grad_cam_plus_plus, upsample_heatmap
from .evaluation import deletion_insertion, pointing_game, randomization_sanity_check
from .feature_visualization import activation_maximization, deep_dream
from .embeddings import embed_2d, embedding_scores, extract_features
