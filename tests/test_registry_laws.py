"""The generic laws (gradxform.testing.check_transformation) hold for every registered transformation."""

import pytest

from gradxform.testing import check_transformation
from gradxform.testing.registry import REGISTRY


@pytest.mark.parametrize(
    "entry", [pytest.param(e, marks=[pytest.mark.slow] if e.slow else []) for e in REGISTRY], ids=str
)
def test_laws_hold(entry):
    check_transformation(entry.build(), extra_args_fn=entry.extra_args_fn,
                         init_reads_params=entry.init_reads_params)
