"""gradxform: composable, verified gradient transformations for JAX."""

from gradxform._base import (
    EmptyState,
    GradientTransformation,
    identity,
    set_to_zero,
    stateless,
    stateless_with_tree_map,
)
from gradxform._checks import TreeMismatchError
