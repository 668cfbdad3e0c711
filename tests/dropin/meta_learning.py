"""Meta-learning the learning rate through inject_hyperparams (optax's meta-learning notebook, shrunk)."""
import jax
import jax.numpy as jnp
import optax

from _data import classification, loss_fn, mlp_params



def main():
    x, y = classification()
    params = jax.tree_util.tree_map(jnp.asarray, mlp_params())
    opt = optax.inject_hyperparams(optax.rmsprop)(learning_rate=1e-2)
    meta_opt = optax.adam(learning_rate=0.05)

    def inner_step(params, state):
        grads = jax.grad(loss_fn)(params, x[:64], y[:64])
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    def outer_loss(log_lr, params, state):
        state.hyperparams["learning_rate"] = jnp.exp(log_lr)
        params, state = inner_step(params, state)
        return loss_fn(params, x[64:], y[64:]), (params, state)

    @jax.jit
    def outer_step(log_lr, meta_state, params, state):
        grad, (params, state) = jax.grad(outer_loss, has_aux=True)(log_lr, params, state)
        meta_updates, meta_state = meta_opt.update(grad, meta_state)
        return optax.apply_updates(log_lr, meta_updates), meta_state, params, state

    state = opt.init(params)
    log_lr = jnp.log(jnp.asarray(1e-2))
    meta_state = meta_opt.init(log_lr)
    lrs = []
    for _ in range(10):
        log_lr, meta_state, params, state = outer_step(log_lr, meta_state, params, state)
        lrs.append(jnp.exp(log_lr))
    return {"lrs": jnp.stack(lrs), "params": params}
