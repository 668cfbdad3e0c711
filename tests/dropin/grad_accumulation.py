"""Gradient accumulation with MultiSteps: an update every 4 micro-batches."""
import jax
import jax.numpy as jnp
import optax

from _data import classification, mlp_params


def loss_fn(params, x, y):
    h = jax.nn.relu(x @ params["layer0"]["w"] + params["layer0"]["b"])
    logits = h @ params["layer1"]["w"] + params["layer1"]["b"]
    return optax.softmax_cross_entropy(logits, jax.nn.one_hot(y, 3)).mean()


def main():
    x, y = classification()
    params = jax.tree_util.tree_map(jnp.asarray, mlp_params())
    opt = optax.MultiSteps(optax.adam(1e-2), every_k_schedule=4)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, x, y):
        grads = jax.grad(loss_fn)(params, x, y)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    updated = []
    for i in range(32):
        sl = slice((i % 8) * 16, (i % 8 + 1) * 16)
        params, opt_state = step(params, opt_state, x[sl], y[sl])
        updated.append(opt.has_updated(opt_state))
    return {"params": params, "has_updated": jnp.stack(updated), "loss": loss_fn(params, x, y)}
