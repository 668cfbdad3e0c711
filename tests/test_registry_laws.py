"""The generic laws (gradxform.testing.check_transformation) hold for every registered transformation."""

import pytest

from gradxform.testing import check_transformation
from gradxform.testing.registry import REGISTRY

from _entries import WIDE_STATE_BY_DEFAULT, heavy


# Laws an entry breaks by design, each with its reason.
SKIPPED_BY_DESIGN = {
    # float32 updates for bfloat16 params: its momentum is float32 (tests/test_dtype_policy.py).
    **{name: ("updates_dtype",) for name in WIDE_STATE_BY_DEFAULT},
    # The law's gradients are not the gradients of the line search's function, so the zoom line
    # search meets an uphill direction and reports it as `info.decrease_error = inf` in the
    # state (optax's layout; tests/test_bad_input_edges.py). The params stay finite.
    "lbfgs_zoom": ("finite",),
}


@pytest.mark.parametrize("entry", heavy(REGISTRY))
def test_laws_hold(entry):
    check_transformation(entry.build(), extra_args_fn=entry.extra_args_fn,
                         init_reads_params=entry.init_reads_params,
                         skip=SKIPPED_BY_DESIGN.get(entry.name, ()))
