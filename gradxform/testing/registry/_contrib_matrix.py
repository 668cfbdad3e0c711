"""Registry entries of the matrix optimizers of ``gx.contrib``: Muon and GaLore.

`scale_by_muon` alone needs every leaf to be a matrix (or to have dimension numbers), so the
generic trees of the laws cannot build it; `muon` (which sends the other leaves to AdamW) is
registered, and `scale_by_muon` is checked in tests/test_contrib_matrix.py.

GaLore's projector is an SVD of the gradient, whose singular vectors' signs are the
LAPACK routine's choice: the NumPy reference and JAX agree on the projected update
:math:`P \rho(P^\top G)` (odd base rules), so the entries keep one projection window in
the 6-step checks (``update_proj_gap`` above 6), and the tests check several windows with a
stateless base rule. ``init`` holds zero projectors shaped by the params' shapes only.
"""

from __future__ import annotations

import gradxform as gx
from gradxform.testing.registry._entry import case

# accuracy_budget: Newton-Schulz and the SVD in float32 measure about 2e-6 (test_accuracy's default
# budget is 1.5e-6); the budgets are about twice the measured errors.
ENTRIES = [
    case(gx.contrib.galore, {"learning_rate": 0.1, "rank": 2}, optax="contrib.galore", accuracy_budget=5e-6),
    case(gx.contrib.galore, {"learning_rate": 0.1, "rank": 1, "update_proj_gap": 10, "scale": 0.25,
                             "weight_decay": 0.1}, "decay", optax="contrib.galore", needs_params=True,
         accuracy_budget=5e-6),
    case(gx.contrib.scale_by_galore, {"rank": 2, "update_proj_gap": 50}, optax="contrib.scale_by_galore",
         accuracy_budget=5e-6),
    case(gx.contrib.muon, {"learning_rate": 0.1}, optax="contrib.muon", needs_params=True),
    case(gx.contrib.muon, {"learning_rate": 0.05, "beta": 0.9, "nesterov": False, "adaptive": True,
                           "weight_decay": 0.1, "adam_weight_decay": 0.01, "adam_learning_rate": 0.01},
         "adaptive", optax="contrib.muon", needs_params=True, accuracy_budget=4e-6),
    case(gx.contrib.muon, {"learning_rate": 0.05, "ns_coeffs": "dion", "consistent_rms": 0.2,
                           "preconditioning": "schatten"}, "dion", optax="contrib.muon", needs_params=True),
    case(gx.contrib.muon, {"learning_rate": 0.05, "ns_steps": 4, "preconditioning": "aol"}, "aol",
         optax="contrib.muon", needs_params=True),
    case(gx.contrib.muon, {"learning_rate": 0.05, "preconditioning": "spectral"}, "spectral",
         optax="contrib.muon", needs_params=True, accuracy_budget=4e-6),
]
