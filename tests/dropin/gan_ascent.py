"""A GAN-style alternating game: the discriminator ascends with rmsprop(-lr) (diffrax's GAN idiom)."""
import jax
import jax.numpy as jnp
import optax


def value(g, d):
    # a bilinear-plus-quadratic min-max game: min_g max_d
    return jnp.sum(g["w"] * d["w"]) - 0.5 * jnp.sum(d["w"] ** 2) + 0.1 * jnp.sum(g["w"] ** 2)


def main():
    g = {"w": jnp.array([1.0, -2.0, 0.5])}
    d = {"w": jnp.array([0.3, 0.1, -0.4])}
    g_opt, d_opt = optax.adam(1e-2), optax.rmsprop(-1e-2)
    gs, ds = g_opt.init(g), d_opt.init(d)
    for _ in range(25):
        gg = jax.grad(value, argnums=0)(g, d)
        gu, gs = g_opt.update(gg, gs, g)
        g = optax.apply_updates(g, gu)
        dg = jax.grad(value, argnums=1)(g, d)
        du, ds = d_opt.update(dg, ds, d)
        d = optax.apply_updates(d, du)
    return {"g": g, "d": d, "value": value(g, d)}
