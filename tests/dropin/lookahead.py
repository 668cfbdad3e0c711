"""Lookahead around Adam: fast and slow weights."""
import jax
import jax.numpy as jnp
import optax

from _data import classification, loss_fn, mlp_params



def main():
    x, y = classification()
    params = optax.LookaheadParams.init_synced(jax.tree_util.tree_map(jnp.asarray, mlp_params()))
    opt = optax.lookahead(optax.adam(1e-2), sync_period=5, slow_step_size=0.5)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state):
        grads = jax.grad(loss_fn)(params.fast, x, y)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    for _ in range(23):
        params, opt_state = step(params, opt_state)
    return {"fast": params.fast, "slow": params.slow}
