"""DP-SGD by hand: per-example clipping with per_example_global_norm_clip, Gaussian noise, SGD."""
import jax
import jax.numpy as jnp
import optax

from _data import classification, loss_fn, mlp_params



def main():
    x, y = classification(n=32)
    params = jax.tree_util.tree_map(jnp.asarray, mlp_params())
    opt = optax.sgd(0.05, momentum=0.9)
    opt_state = opt.init(params)
    clip, noise_multiplier = 1.0, 0.5

    @jax.jit
    def step(params, opt_state, key):
        per_example = jax.vmap(jax.grad(loss_fn), in_axes=(None, 0, 0))(params, x[:, None], y[:, None])
        summed, num_clipped = optax.per_example_global_norm_clip(jax.tree_util.tree_leaves(per_example), clip)
        leaves, treedef = jax.tree_util.tree_flatten(params)
        keys = jax.random.split(key, len(leaves))
        noisy = [(g + noise_multiplier * clip * jax.random.normal(k, g.shape)) / x.shape[0]
                 for g, k in zip(summed, keys)]
        grads = jax.tree_util.tree_unflatten(treedef, noisy)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, num_clipped

    key = jax.random.PRNGKey(0)
    clipped = []
    for _ in range(15):
        key, sub = jax.random.split(key)
        params, opt_state, n = step(params, opt_state, sub)
        clipped.append(n)
    return {"params": params, "num_clipped": jnp.stack(clipped)}
