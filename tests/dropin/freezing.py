"""Fine-tuning with a frozen first layer: multi_transform with set_to_zero, and optax.freeze."""
import jax
import jax.numpy as jnp
import optax

from _data import classification, loss_fn, mlp_params



def main():
    x, y = classification()
    params = jax.tree_util.tree_map(jnp.asarray, mlp_params())
    labels = {"layer0": {"w": "frozen", "b": "frozen"}, "layer1": {"w": "trainable", "b": "trainable"}}
    opt = optax.multi_transform({"trainable": optax.adam(1e-2), "frozen": optax.set_to_zero()}, labels)
    opt2 = optax.chain(optax.freeze({"layer0": True, "layer1": False}), optax.sgd(0.1))
    s1, s2 = opt.init(params), opt2.init(params)
    p1 = p2 = params
    for _ in range(10):
        g1 = jax.grad(loss_fn)(p1, x, y)
        u1, s1 = opt.update(g1, s1, p1)
        p1 = optax.apply_updates(p1, u1)
        g2 = jax.grad(loss_fn)(p2, x, y)
        u2, s2 = opt2.update(g2, s2, p2)
        p2 = optax.apply_updates(p2, u2)
    return {"multi_transform": p1, "freeze": p2, "state_leaves": jnp.asarray(len(jax.tree_util.tree_leaves(s1)))}
