"""The generic laws (gradxform.testing.check_transformation) hold for every registered transformation."""

import pytest

from gradxform.testing import check_transformation
from gradxform.testing.registry import REGISTRY

from _entries import heavy


@pytest.mark.parametrize("entry", heavy(REGISTRY))
def test_laws_hold(entry):
    check_transformation(entry.build(), extra_args_fn=entry.extra_args_fn,
                         init_reads_params=entry.init_reads_params)
