"""Lion and LAMB on the same model, and AdamW with weight decay masked off the biases."""
import jax
import jax.numpy as jnp
import optax

from _data import classification, loss_fn, mlp_params



def main():
    x, y = classification()
    out = {}
    mask = lambda p: jax.tree_util.tree_map(lambda a: a.ndim > 1, p)  # noqa: E731
    for name, opt in [("lion", optax.lion(1e-3, weight_decay=1e-2, mask=mask)),
                      ("lamb", optax.lamb(1e-2, weight_decay=1e-3, mask=mask)),
                      ("lars", optax.lars(0.1, weight_decay=1e-4))]:
        params = jax.tree_util.tree_map(jnp.asarray, mlp_params())
        state = opt.init(params)
        for _ in range(12):
            grads = jax.grad(loss_fn)(params, x, y)
            updates, state = opt.update(grads, state, params)
            params = optax.apply_updates(params, updates)
        out[name] = params
    return out
