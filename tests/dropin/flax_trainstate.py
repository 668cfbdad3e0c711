"""A flax TrainState with AdamW on a warm-up + cosine schedule (flax's MNIST example, shrunk)."""
import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from flax.training import train_state

from _data import classification


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(16)(x))
        return nn.Dense(3)(x)


def main():
    x, y = classification()
    model = MLP()
    params = model.init(jax.random.PRNGKey(0), x[:1])["params"]
    schedule = optax.warmup_cosine_decay_schedule(0.0, 1e-2, warmup_steps=5, decay_steps=40, end_value=1e-4)
    state = train_state.TrainState.create(
        apply_fn=model.apply, params=params, tx=optax.adamw(schedule, weight_decay=1e-4))

    @jax.jit
    def step(state, x, y):
        def loss_fn(p):
            logits = state.apply_fn({"params": p}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads), loss

    losses = []
    for _ in range(40):
        state, loss = step(state, x, y)
        losses.append(loss)
    return {"params": state.params, "losses": jnp.stack(losses)}
