"""The optimizers optax keeps in ``optax.contrib``, each checked against its paper.

Every name of ``optax.contrib`` 0.2.8, with optax's signature, defaults, state layout and
float32 numerics; each rule has a NumPy reference from its paper in
`gradxform.testing.reference` and a registry entry, so every law applies to it.
"""

from gradxform.contrib._acprop import acprop, scale_by_acprop
from gradxform.contrib._ademamix import (
    ScaleByAdemamixState,
    ScaleBySimplifiedAdEMAMixState,
    ademamix,
    scale_by_ademamix,
    scale_by_simplified_ademamix,
    simplified_ademamix,
)
from gradxform.contrib._adopt import adopt, scale_by_adopt
from gradxform.contrib._cocob import COCOBState, cocob, scale_by_cocob
from gradxform.contrib._complex_valued import SplitRealAndImaginaryState, split_real_and_imaginary
from gradxform.contrib._dadapt_adamw import DAdaptAdamWState, dadapt_adamw
from gradxform.contrib._dog import DoGState, DoWGState, dog, dowg
from gradxform.contrib._galore import GaLoreDimensionNumbers, GaLoreState, galore, scale_by_galore
from gradxform.contrib._madgrad import MadgradState, madgrad, scale_by_madgrad
from gradxform.contrib._mechanic import MechanicState, mechanize
from gradxform.contrib._momo import MomoAdamState, MomoState, momo, momo_adam
from gradxform.contrib._muon import MuonDimensionNumbers, MuonState, muon, scale_by_muon
from gradxform.contrib._privacy import (
    DifferentiallyPrivateAggregateState,
    differentially_private_aggregate,
    dpsgd,
)
from gradxform.contrib._prodigy import ProdigyState, prodigy
from gradxform.contrib._sam import NormalizeState, SAMState, normalize, sam
from gradxform.contrib._schedule_free import (
    ScheduleFreeState,
    schedule_free,
    schedule_free_adamw,
    schedule_free_eval_params,
    schedule_free_sgd,
)
from gradxform.contrib._sophia import (
    HutchinsonState,
    SophiaState,
    hutchinson_estimator_diag_hessian,
    sophia,
)
from gradxform.wrappers._plateau import ReduceLROnPlateauState, reduce_on_plateau

__all__ = [
    "COCOBState",
    "DAdaptAdamWState",
    "DifferentiallyPrivateAggregateState",
    "DoGState",
    "DoWGState",
    "GaLoreDimensionNumbers",
    "GaLoreState",
    "HutchinsonState",
    "MadgradState",
    "MechanicState",
    "MomoAdamState",
    "MomoState",
    "MuonDimensionNumbers",
    "MuonState",
    "NormalizeState",
    "ProdigyState",
    "ReduceLROnPlateauState",
    "SAMState",
    "ScaleByAdemamixState",
    "ScaleBySimplifiedAdEMAMixState",
    "ScheduleFreeState",
    "SophiaState",
    "SplitRealAndImaginaryState",
    "acprop",
    "ademamix",
    "adopt",
    "cocob",
    "dadapt_adamw",
    "differentially_private_aggregate",
    "dog",
    "dowg",
    "dpsgd",
    "galore",
    "hutchinson_estimator_diag_hessian",
    "madgrad",
    "mechanize",
    "momo",
    "momo_adam",
    "muon",
    "normalize",
    "prodigy",
    "reduce_on_plateau",
    "sam",
    "scale_by_acprop",
    "scale_by_ademamix",
    "scale_by_adopt",
    "scale_by_cocob",
    "scale_by_galore",
    "scale_by_madgrad",
    "scale_by_muon",
    "scale_by_simplified_ademamix",
    "schedule_free",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "schedule_free_sgd",
    "simplified_ademamix",
    "sophia",
    "split_real_and_imaginary",
]
