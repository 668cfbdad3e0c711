"""Loss functions with optax's names and signatures (``optax.losses``).

Each loss is a plain function of arrays: computed in at least float32 with
stable log-sum-exp forms, returned in the prediction's float dtype. The
families live in their own modules: classification (softmax / sigmoid
cross-entropies, focal, poly, hinge, perceptron, sparsemax, label smoothing),
divergences (KL), regression (squared error, Huber, log-cosh, cosine),
ranking, segmentation (Dice), CTC, self-supervised (NT-Xent, triplet) and
Fenchel-Young losses.
"""

from gradxform.losses._classification import (
    hinge_loss,
    multiclass_hinge_loss,
    multiclass_perceptron_loss,
    multiclass_sparsemax_loss,
    perceptron_loss,
    poly_loss_cross_entropy,
    safe_softmax_cross_entropy,
    sigmoid_binary_cross_entropy,
    sigmoid_focal_loss,
    smooth_labels,
    softmax_cross_entropy,
    softmax_cross_entropy_with_integer_labels,
    sparsemax_loss,
)
from gradxform.losses._ctc import ctc_loss, ctc_loss_with_forward_probs
from gradxform.losses._divergence import (
    convex_kl_divergence,
    generalized_kl_divergence,
    kl_divergence,
    kl_divergence_with_log_targets,
)
from gradxform.losses._fenchel_young import make_fenchel_young_loss
from gradxform.losses._ranking import ranking_softmax_loss
from gradxform.losses._regression import (
    cosine_distance,
    cosine_similarity,
    huber_loss,
    l2_loss,
    log_cosh,
    squared_error,
)
from gradxform.losses._segmentation import (
    binary_dice_loss,
    dice_loss,
    multiclass_generalized_dice_loss,
)
from gradxform.losses._self_supervised import ntxent, triplet_margin_loss

__all__ = [
    "binary_dice_loss",
    "convex_kl_divergence",
    "cosine_distance",
    "cosine_similarity",
    "ctc_loss",
    "ctc_loss_with_forward_probs",
    "dice_loss",
    "generalized_kl_divergence",
    "hinge_loss",
    "huber_loss",
    "kl_divergence",
    "kl_divergence_with_log_targets",
    "l2_loss",
    "log_cosh",
    "make_fenchel_young_loss",
    "multiclass_generalized_dice_loss",
    "multiclass_hinge_loss",
    "multiclass_perceptron_loss",
    "multiclass_sparsemax_loss",
    "ntxent",
    "perceptron_loss",
    "poly_loss_cross_entropy",
    "ranking_softmax_loss",
    "safe_softmax_cross_entropy",
    "sigmoid_binary_cross_entropy",
    "sigmoid_focal_loss",
    "smooth_labels",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
    "sparsemax_loss",
    "squared_error",
    "triplet_margin_loss",
]
