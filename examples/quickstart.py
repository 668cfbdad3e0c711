"""Quickstart: fit a small MLP to y = sin(3x) with the README's optimizer chain."""
import jax, jax.numpy as jnp
import gradxform as gx

schedule = gx.warmup_cosine_decay_schedule(0.0, 1e-3, 100, 1000)
tx = gx.chain(gx.clip_by_global_norm(1.0), gx.scale_by_adam(),
              gx.add_decayed_weights(1e-4),
              gx.scale_by_schedule(lambda step: -schedule(step)))

k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
x = jax.random.uniform(k1, (256, 1), minval=-1.0, maxval=1.0)
y = jnp.sin(3 * x)
params = {"w1": gx.nn.kaiming_normal()(k2, (1, 64)), "b1": jnp.zeros(64),
          "w2": gx.nn.xavier_normal()(k3, (64, 1)), "b2": jnp.zeros(1)}

def loss_fn(p):
    h = jax.nn.relu(x @ p["w1"] + p["b1"])
    return jnp.mean((h @ p["w2"] + p["b2"] - y) ** 2)

@jax.jit
def step(params, state):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, state = tx.update(grads, state, params)
    return gx.apply_updates(params, updates), state, loss

state = tx.init(params)
for i in range(1000):
    params, state, loss = step(params, state)
    if i % 200 == 0 or i == 999:
        print(f"step {i:4d}  loss {float(loss):.5f}")
