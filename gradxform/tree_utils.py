"""optax's ``optax.tree_utils`` spellings (``tree_norm``, ``tree_get``, ...) of `gradxform.tree`.

Each ``tree_x`` here is the very function ``gx.tree.x``; `NamedTupleKey` is the
path entry that `tree_get_all_with_path`, `tree_get` and `tree_set` give a
``filtering`` function for a NamedTuple field.
"""

from gradxform import tree as _t
from gradxform.tree._state import NamedTupleKey

tree_add = _t.add
tree_add_scale = _t.add_scale
tree_allclose = _t.allclose
tree_batch_shape = _t.batch_shape
tree_bias_correction = _t.bias_correction
tree_cast = _t.cast
tree_cast_like = _t.cast_like
tree_clip = _t.clip
tree_conj = _t.conj
tree_div = _t.div
tree_dtype = _t.dtype
tree_full_like = _t.full_like
tree_get = _t.get
tree_get_all_with_path = _t.get_all_with_path
tree_map_params = _t.map_params
tree_max = _t.max
tree_min = _t.min
tree_mul = _t.mul
tree_norm = _t.norm
tree_ones_like = _t.ones_like
tree_random_like = _t.random_like
tree_real = _t.real
tree_scale = _t.scale
tree_set = _t.set
tree_size = _t.size
tree_split_key_like = _t.split_key_like
tree_sub = _t.sub
tree_sum = _t.sum
tree_unwrap_random_key_data = _t.unwrap_random_key_data
tree_update_infinity_moment = _t.update_infinity_moment
tree_update_moment = _t.update_moment
tree_update_moment_per_elem_norm = _t.update_moment_per_elem_norm
tree_vdot = _t.vdot
tree_where = _t.where
tree_zeros_like = _t.zeros_like

__all__ = [
    "NamedTupleKey",
    "tree_add",
    "tree_add_scale",
    "tree_allclose",
    "tree_batch_shape",
    "tree_bias_correction",
    "tree_cast",
    "tree_cast_like",
    "tree_clip",
    "tree_conj",
    "tree_div",
    "tree_dtype",
    "tree_full_like",
    "tree_get",
    "tree_get_all_with_path",
    "tree_map_params",
    "tree_max",
    "tree_min",
    "tree_mul",
    "tree_norm",
    "tree_ones_like",
    "tree_random_like",
    "tree_real",
    "tree_scale",
    "tree_set",
    "tree_size",
    "tree_split_key_like",
    "tree_sub",
    "tree_sum",
    "tree_unwrap_random_key_data",
    "tree_update_infinity_moment",
    "tree_update_moment",
    "tree_update_moment_per_elem_norm",
    "tree_vdot",
    "tree_where",
    "tree_zeros_like",
]
