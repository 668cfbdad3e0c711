"""Super-convergence: SGD with Nesterov momentum on a one-cycle schedule (both shapes)."""
import jax
import jax.numpy as jnp
import optax

from _data import classification, loss_fn, mlp_params



def main():
    x, y = classification()
    out = {}
    for name, schedule in [("cosine", optax.cosine_onecycle_schedule(40, 0.1)),
                           ("linear", optax.linear_onecycle_schedule(40, 0.1))]:
        params = jax.tree_util.tree_map(jnp.asarray, mlp_params())
        opt = optax.sgd(schedule, momentum=0.9, nesterov=True)
        state = opt.init(params)
        step = jax.jit(lambda p, s: (lambda u_s: (optax.apply_updates(p, u_s[0]), u_s[1]))(
            opt.update(jax.grad(loss_fn)(p, x, y), s, p)))
        for _ in range(40):
            params, state = step(params, state)
        out[name] = params
        out[name + "_lr"] = jnp.stack([schedule(i) for i in range(0, 41, 5)])
    return out
