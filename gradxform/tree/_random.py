"""Random trees and random keys shaped like a tree (``gx.tree.random_like`` and friends)."""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp


def split_key_like(rng_key: jax.Array, target_tree: Any) -> Any:
    """One key per leaf of `target_tree`: ``jax.random.split(rng_key, n_leaves)``, in leaf order.

    Works with typed keys (``jax.random.key``) and raw ``uint32`` keys
    (``jax.random.PRNGKey``); each leaf gets a key of the same kind.

    Args:
        rng_key: the key to split.
        target_tree: the tree whose structure to match (``None`` leaves stay ``None``).

    Returns:
        A tree of keys with the structure of `target_tree`.

    Examples:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> keys = gx.tree.split_key_like(jax.random.key(0), {'a': jnp.ones(2), 'b': jnp.ones(3)})
        >>> bool(jnp.all(jax.random.key_data(keys['b']) == jax.random.key_data(jax.random.split(jax.random.key(0), 2)[1])))
        True
    """
    treedef = jax.tree_util.tree_structure(target_tree)
    keys = jax.random.split(rng_key, treedef.num_leaves)
    return jax.tree_util.tree_unflatten(treedef, list(keys))


def random_like(
    rng_key: jax.Array,
    target_tree: Any,
    sampler: Callable[..., jax.Array] = jax.random.normal,
    dtype: Optional[Any] = None,
) -> Any:
    """A tree of random arrays shaped like `target_tree`: ``sampler(key, leaf.shape, dtype)`` per leaf.

    The keys are `split_key_like` of `rng_key`, so the same key gives optax's values.

    Args:
        rng_key: the key for the random number generator.
        target_tree: the tree whose structure and leaf shapes to match.
        sampler: ``(key, shape, dtype) -> array``; ``jax.random.normal`` by default.
        dtype: the dtype passed to `sampler`; each leaf's own dtype when ``None``.

    Returns:
        A tree with the structure of `target_tree`.

    Examples:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> noise = gx.tree.random_like(jax.random.key(0), {'w': jnp.zeros((2, 3), jnp.bfloat16)})
        >>> noise['w'].shape, noise['w'].dtype
        ((2, 3), dtype(bfloat16))
    """
    keys = split_key_like(rng_key, target_tree)
    return jax.tree_util.tree_map(
        lambda key, x: sampler(key, jnp.shape(x), dtype if dtype is not None else jnp.asarray(x).dtype),
        keys,
        target_tree,
    )


def _is_typed_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def unwrap_random_key_data(input_tree: Any) -> Any:
    """Typed random keys replaced by their raw ``uint32`` data (``jax.random.key_data``), for comparing states.

    Other leaves (raw keys included) are returned unchanged.

    Examples:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> gx.tree.unwrap_random_key_data({'key': jax.random.key(0), 'x': jnp.float32(1.0)})
        {'key': Array([0, 0], dtype=uint32), 'x': Array(1., dtype=float32)}
    """
    return jax.tree_util.tree_map(lambda x: jax.random.key_data(x) if _is_typed_key(x) else x, input_tree)
