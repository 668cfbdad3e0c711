"""A T5X-style Adafactor setup: factored second moments, parameter-scaled steps, clipping."""
import jax
import jax.numpy as jnp
import numpy as np
import optax


def main():
    rng = np.random.default_rng(0)
    params = {"embed": jnp.asarray(rng.normal(size=(64, 32)), jnp.float32),
              "dense": {"kernel": jnp.asarray(rng.normal(size=(32, 32)) / 6, jnp.float32),
                        "bias": jnp.zeros(32, jnp.float32)}}
    tokens = jnp.asarray(rng.integers(0, 64, size=(16,)))
    targets = jnp.asarray(rng.normal(size=(16, 32)), jnp.float32)

    def loss_fn(p):
        h = jnp.tanh(p["embed"][tokens] @ p["dense"]["kernel"] + p["dense"]["bias"])
        return optax.l2_loss(h, targets).mean()

    opt = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adafactor(learning_rate=optax.linear_schedule(1e-2, 1e-3, 20), min_dim_size_to_factor=16,
                        multiply_by_parameter_scale=True, decay_rate=0.8),
    )
    state = opt.init(params)

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    losses = []
    for _ in range(20):
        params, state, loss = step(params, state)
        losses.append(loss)
    return {"params": params, "losses": jnp.stack(losses)}
