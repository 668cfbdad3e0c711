"""L-BFGS with the zoom line search, reusing the value and gradient from the state (optax's docs)."""
import jax
import jax.numpy as jnp
import optax
import optax.tree_utils as otu


def rosenbrock(p):
    return jnp.sum(100.0 * (p["x"][1:] - p["x"][:-1] ** 2) ** 2 + (1.0 - p["x"][:-1]) ** 2)


def main():
    params = {"x": jnp.array([-1.2, 1.0, -0.5, 0.8])}
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(rosenbrock)
    state = opt.init(params)

    @jax.jit
    def step(params, state):
        value, grad = value_and_grad(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=rosenbrock)
        return optax.apply_updates(params, updates), state

    values = []
    for _ in range(30):
        params, state = step(params, state)
        values.append(rosenbrock(params))
    return {"params": params, "values": jnp.stack(values), "count": otu.tree_get(state, "count")}
