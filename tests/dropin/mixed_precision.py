"""A midGPT-style chain with bfloat16 moments, masked weight decay, and reading opt_state[i].count."""
import jax
import jax.numpy as jnp
import optax

from _data import classification, loss_fn, mlp_params



def main():
    x, y = classification()
    params = jax.tree_util.tree_map(jnp.asarray, mlp_params())
    schedule = optax.warmup_cosine_decay_schedule(0.0, 3e-3, 5, 30)
    decay_mask = jax.tree_util.tree_map(lambda p: p.ndim == 2, params)
    opt = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.scale_by_adam(b2=0.95, mu_dtype=jnp.bfloat16),
        optax.add_decayed_weights(0.1, decay_mask),
        optax.scale_by_schedule(schedule),
        optax.scale(-1.0),
    )
    state = opt.init(params)

    @jax.jit
    def step(params, state):
        grads = jax.grad(loss_fn)(params, x, y)
        grads = jax.tree_util.tree_map(lambda g: g.astype(jnp.bfloat16).astype(jnp.float32), grads)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    lrs = []
    for _ in range(30):
        params, state = step(params, state)
        lrs.append(schedule(state[1].count))
    return {"params": params, "lrs": jnp.stack(lrs), "mu_dtype": jnp.asarray(state[1].mu["layer0"]["w"].dtype == jnp.bfloat16)}
