r"""Plain NumPy textbook update rules: the ground truth transformations are checked against.

Every factory takes the optimizer's (or transformation's) own arguments and returns a
:class:`Reference`: ``init(params) -> state`` and
``update(grads, state, params=None, **extra_args) -> (updates, state)`` over pytrees of
array-likes (NumPy or jax arrays; ``jax.tree_util`` handles the trees). Everything is
computed in float64; updates come back in each gradient leaf's dtype, the state is float64
(counts are Python ints). Extra keyword arguments are accepted and ignored, unless the
rule needs them (``hessian_diag=``, ``hessian=``, ``value=``); wrappers pass them on to
their inner rule. Nothing here imports gradxform's own transformations. Each factory has
the name of the gradxform factory it checks, so a test finds it by that name.

Defaults reproduce optax 0.2.8's numerics (gradxform matches optax); the textbook variants
are options, each docstring naming its source: Goodfellow, Bengio & Courville (2016), Deep
Learning, chapter 8 (Algorithms 8.1 SGD, 8.2 momentum, 8.3 Nesterov momentum, 8.4 AdaGrad,
8.5 RMSProp, 8.7 Adam), the algorithms' papers, and PyTorch where its variant differs
(:math:`\epsilon` outside the root in RMSProp and AdaGrad).

Modules, as the library's: ``_scale`` (scaling, clipping, weight decay), ``_momentum``
(trace, EMA, SGD, Nesterov trajectories), ``_adaptive`` (AdaGrad, RMSProp, AdaDelta,
Rprop), ``_adam`` (Adam, NAdam, AdamW, AdaBelief), ``_second_order`` (AdaHessian, Newton,
L-BFGS), ``_wrappers`` (apply_if_finite, MultiSteps, reduce_on_plateau,
polyak_averaging); ``_check`` runs a transformation against a reference
(`gradxform.testing.check_against_reference`).

Notation, shared with the library's docstrings: :math:`g_t` the incoming gradient (or
update) at step :math:`t = 1, 2, \dots`; :math:`\eta_t` the learning rate, a float or a
schedule evaluated at the 0-based count :math:`t - 1` (as optax does); :math:`\mu_t,
\nu_t` the first and second moments, :math:`\hat\mu_t, \hat\nu_t` their bias-corrected
values :math:`\mu_t / (1 - \beta_1^t)`; :math:`\theta_t` the parameters; :math:`u_t` the
returned update (the caller applies :math:`\theta_{t} = \theta_{t-1} + u_t`).

Examples:
    >>> import numpy as np, gradxform as gx
    >>> ref = gx.testing.reference.sgd(0.1, momentum=0.9)
    >>> params = {'w': np.zeros(2)}
    >>> state = ref.init(params)
    >>> for g in (1.0, 1.0):
    ...     updates, state = ref.update({'w': np.full(2, g)}, state, params)
    >>> updates['w'].tolist()  # -0.1 * (1 + 0.9 * 1)
    [-0.19, -0.19]
"""

from gradxform.testing.reference._adam import (
    adabelief,
    adam,
    adamw,
    scale_by_adam,
    scale_by_belief,
)
from gradxform.testing.reference._adaptive import (
    adadelta,
    adagrad,
    rmsprop,
    rprop,
    scale_by_adadelta,
    scale_by_rms,
    scale_by_rprop,
    scale_by_rss,
    scale_by_stddev,
)

from gradxform.testing.reference._common import Reference, chain, identity
from gradxform.testing.reference._lion import lion, scale_by_lion
from gradxform.testing.reference._momentum import (
    ema,
    momentum_velocity,
    nesterov_lookahead_trajectory,
    nesterov_reformulated_trajectory,
    sgd,
    trace,
)
from gradxform.testing.reference._scale import (
    add_decayed_weights,
    add_l1_decay,
    clip,
    clip_by_global_norm,
    scale,
    scale_by_learning_rate,
)
from gradxform.testing.reference._second_order import (
    adahessian,
    lbfgs,
    levenberg_tau,
    scale_by_adahessian,
    scale_by_lbfgs,
    scale_by_newton,
)
from gradxform.testing.reference._wrappers import (
    MultiSteps,
    apply_if_finite,
    polyak_averaging,
    reduce_on_plateau,
)
from gradxform.testing.reference._adam_variants import (
    adamax,
    adamaxw,
    adan,
    amsgrad,
    nadam,
    nadamw,
    radam,
    scale_by_adamax,
    scale_by_adan,
    scale_by_amsgrad,
    scale_by_radam,
    scale_by_yogi,
    yogi,
)
from gradxform.testing.reference._layerwise import (
    adafactor,
    fromage,
    lamb,
    lars,
    novograd,
    scale_by_factored_rms,
    scale_by_novograd,
    scale_by_param_block_norm,
    scale_by_param_block_rms,
    scale_by_sm3,
    scale_by_trust_ratio,
    sm3,
)
from gradxform.testing.reference._misc import (
    centralize,
    normalize_by_update_norm,
    optimistic_adam,
    optimistic_adam_v2,
    optimistic_gradient_descent,
    polyak_sgd,
    scale_by_distance_over_gradients,
    scale_by_optimistic_gradient,
    scale_by_polyak,
    scale_by_sign,
    sign_sgd,
    signum,
)
from gradxform.testing.reference._clipping_more import (
    adaptive_grad_clip,
    clip_by_block_rms,
    keep_params_nonnegative,
    per_example_global_norm_clip,
    per_example_layer_norm_clip,
    unitwise_norm,
    zero_nans,
)
from gradxform.testing.reference._wrappers_more import (
    apply_every,
    conditionally_mask,
    conditionally_transform,
    freeze,
    partition,
    selective_transform,
)
from gradxform.testing.reference._schedules_more import (
    cosine_onecycle_schedule,
    linear_onecycle_schedule,
    piecewise_interpolate_schedule,
    warmup_constant_schedule,
)

from gradxform.testing.reference._contrib_adam import (
    acprop,
    ademamix,
    adopt,
    scale_by_acprop,
    scale_by_ademamix,
    scale_by_adopt,
    scale_by_simplified_ademamix,
    simplified_ademamix,
)
from gradxform.testing.reference._contrib_dadapt import dadapt_adamw, mechanize, prodigy
from gradxform.testing.reference._contrib_free import cocob, dog, dowg, scale_by_cocob
from gradxform.testing.reference._contrib_matrix import galore, muon, scale_by_galore, scale_by_muon
from gradxform.testing.reference._contrib_misc import momo, momo_adam, normalize, sophia
from gradxform.testing.reference._contrib_privacy import (
    differentially_private_aggregate,
    dpsgd,
    split_real_and_imaginary,
)
from gradxform.testing.reference._contrib_schedule_free import (
    madgrad,
    scale_by_madgrad,
    schedule_free,
    schedule_free_adamw,
    schedule_free_sgd,
)

__all__ = [
    "MultiSteps",
    "Reference",
    "acprop",
    "adabelief",
    "adadelta",
    "adafactor",
    "adagrad",
    "adahessian",
    "adam",
    "adamax",
    "adamaxw",
    "adamw",
    "adan",
    "adaptive_grad_clip",
    "add_decayed_weights",
    "add_l1_decay",
    "ademamix",
    "adopt",
    "amsgrad",
    "apply_every",
    "apply_if_finite",
    "centralize",
    "chain",
    "clip",
    "clip_by_block_rms",
    "clip_by_global_norm",
    "cocob",
    "conditionally_mask",
    "conditionally_transform",
    "cosine_onecycle_schedule",
    "dadapt_adamw",
    "differentially_private_aggregate",
    "dog",
    "dowg",
    "dpsgd",
    "ema",
    "freeze",
    "fromage",
    "galore",
    "identity",
    "keep_params_nonnegative",
    "lamb",
    "lars",
    "lbfgs",
    "levenberg_tau",
    "linear_onecycle_schedule",
    "lion",
    "madgrad",
    "mechanize",
    "momentum_velocity",
    "momo",
    "momo_adam",
    "muon",
    "nadam",
    "nadamw",
    "nesterov_lookahead_trajectory",
    "nesterov_reformulated_trajectory",
    "normalize",
    "normalize_by_update_norm",
    "novograd",
    "optimistic_adam",
    "optimistic_adam_v2",
    "optimistic_gradient_descent",
    "partition",
    "per_example_global_norm_clip",
    "per_example_layer_norm_clip",
    "piecewise_interpolate_schedule",
    "polyak_averaging",
    "polyak_sgd",
    "prodigy",
    "radam",
    "reduce_on_plateau",
    "rmsprop",
    "rprop",
    "scale",
    "scale_by_acprop",
    "scale_by_adadelta",
    "scale_by_adahessian",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_adan",
    "scale_by_ademamix",
    "scale_by_adopt",
    "scale_by_amsgrad",
    "scale_by_belief",
    "scale_by_cocob",
    "scale_by_distance_over_gradients",
    "scale_by_factored_rms",
    "scale_by_galore",
    "scale_by_lbfgs",
    "scale_by_learning_rate",
    "scale_by_lion",
    "scale_by_madgrad",
    "scale_by_muon",
    "scale_by_newton",
    "scale_by_novograd",
    "scale_by_optimistic_gradient",
    "scale_by_param_block_norm",
    "scale_by_param_block_rms",
    "scale_by_polyak",
    "scale_by_radam",
    "scale_by_rms",
    "scale_by_rprop",
    "scale_by_rss",
    "scale_by_sign",
    "scale_by_simplified_ademamix",
    "scale_by_sm3",
    "scale_by_stddev",
    "scale_by_trust_ratio",
    "scale_by_yogi",
    "schedule_free",
    "schedule_free_adamw",
    "schedule_free_sgd",
    "selective_transform",
    "sgd",
    "sign_sgd",
    "signum",
    "simplified_ademamix",
    "sm3",
    "sophia",
    "split_real_and_imaginary",
    "trace",
    "unitwise_norm",
    "warmup_constant_schedule",
    "yogi",
    "zero_nans",
]
