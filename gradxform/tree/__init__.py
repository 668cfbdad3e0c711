"""Operations on whole pytrees, with optax's ``optax.tree`` names: ``gx.tree.norm``, ``gx.tree.get``, ...

    import gradxform as gx
    gx.tree.norm(grads)                          # the global (Euclidean) norm
    gx.tree.add_scale(params, -0.1, grads)       # params - 0.1 * grads
    gx.tree.get(opt_state, 'learning_rate')      # a value of a state, found by name
    gx.tree.set(opt_state, learning_rate=lr)     # the state with that value replaced

The same functions are available under optax's older ``tree_*`` spellings in
`gradxform.tree_utils`.
"""

from gradxform._base import tree_map_params as map_params
from gradxform._moments import (
    bias_correction,
    update_infinity_moment,
    update_moment,
    update_moment_per_elem_norm,
)
from gradxform.tree._math import (
    add,
    add_scale,
    allclose,
    batch_shape,
    cast,
    cast_like,
    clip,
    conj,
    div,
    dtype,
    full_like,
    max,
    min,
    mul,
    norm,
    ones_like,
    real,
    scale,
    size,
    sub,
    sum,
    vdot,
    where,
    zeros_like,
)
from gradxform.tree._random import random_like, split_key_like, unwrap_random_key_data
from gradxform.tree._state import get, get_all_with_path, set

__all__ = [
    "add",
    "add_scale",
    "allclose",
    "batch_shape",
    "bias_correction",
    "cast",
    "cast_like",
    "clip",
    "conj",
    "div",
    "dtype",
    "full_like",
    "get",
    "get_all_with_path",
    "map_params",
    "max",
    "min",
    "mul",
    "norm",
    "ones_like",
    "random_like",
    "real",
    "scale",
    "set",
    "size",
    "split_key_like",
    "sub",
    "sum",
    "unwrap_random_key_data",
    "update_infinity_moment",
    "update_moment",
    "update_moment_per_elem_norm",
    "vdot",
    "where",
    "zeros_like",
]
