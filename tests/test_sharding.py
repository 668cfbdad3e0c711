"""State follows the params' sharding on an 8-device host mesh, through a donated jitted step.

jax must see 8 CPU devices, which is fixed when jax is first imported, so the
check runs in a fresh interpreter with XLA_FLAGS set.
"""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import gradxform as gx

    assert len(jax.devices()) == 8, jax.devices()
    mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "model"))
    shard = {"w": NamedSharding(mesh, P("data", "model")), "b": NamedSharding(mesh, P("model")),
             "s": NamedSharding(mesh, P())}
    params = {"w": jnp.ones((8, 4)), "b": jnp.ones((4,)), "s": jnp.ones(())}
    params = jax.tree_util.tree_map(jax.device_put, params, shard)

    schedule = gx.warmup_cosine_decay_schedule(0.0, 1e-3, 10, 100)
    optimizers = {
        "adam": gx.adam(1e-3),
        "sgd_momentum": gx.sgd(0.1, momentum=0.9),
        "readme_chain": gx.chain(gx.clip_by_global_norm(1.0), gx.scale_by_adam(),
                                 gx.add_decayed_weights(1e-4),
                                 gx.scale_by_schedule(lambda c: -schedule(c))),
        "rmsprop_centered": gx.rmsprop(1e-3, centered=True, momentum=0.9),
        "adagrad": gx.adagrad(0.1),
        "rprop": gx.rprop(0.01),
        "adamw_bf16_mu": gx.adamw(1e-3, mu_dtype=jnp.bfloat16),
    }

    def param_shaped(state):
        out = []
        for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
            for name, p in params.items():
                if leaf.shape == p.shape and leaf.ndim > 0:
                    out.append((jax.tree_util.keystr(path), name, leaf))
        return out

    def check(state, where):
        found = param_shaped(state)
        assert found, where
        for path, name, leaf in found:
            # the only leaves of those shapes are the ones built like that parameter
            want = shard["w"] if leaf.shape == (8, 4) else shard["b"]
            assert leaf.sharding.is_equivalent_to(want, leaf.ndim), (where, path, leaf.sharding)

    for name, tx in optimizers.items():
        state = tx.init(params)
        check(state, f"{name} init")

        def loss(p):
            return jnp.sum(p["w"] ** 2) + jnp.sum(p["b"] ** 2) + p["s"] ** 2

        @jax.jit
        def step(p, s):
            g = jax.grad(loss)(p)
            u, s = tx.update(g, s, p)
            return gx.apply_updates(p, u), s

        step = jax.jit(step, donate_argnums=(0, 1))
        p = params
        p = jax.tree_util.tree_map(lambda x: x.copy(), p)
        for _ in range(3):
            p, state = step(p, state)
        check(state, f"{name} after 3 donated steps")
        for k in params:
            assert p[k].sharding.is_equivalent_to(shard[k], p[k].ndim), (name, k, p[k].sharding)
    print("SHARDING_OK", len(optimizers))
    """
)


def test_state_follows_param_sharding_on_8_host_devices():
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    env["JAX_PLATFORMS"] = "cpu"
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SHARDING_OK 7" in result.stdout
