"""Per-device memory, step time and collectives of `gx.sharding.shard_state(adam)` against plain Adam.

    python -m benchmarks.sharding              # 8 host devices (sets XLA_FLAGS itself), ~1 min on 2 cores
    python -m benchmarks.sharding --quick      # a small tree, 3 rounds: checks the script
    python -m benchmarks.sharding --json /tmp/sharding.json

Two jitted functions per optimizer, params and state donated:

* the **update step** ``(params, grads, state) -> (params, state)``, params and
  gradients replicated over the 8 devices: ``compiled.memory_analysis()`` gives
  the per-device argument bytes, which the table splits into params, grads and
  state (the state's per-device bytes are summed from the shards of the state
  `init` returns); its step time is the median over rounds, both optimizers
  timed in the same round;
* the **train step** ``(params, state, batch) -> (params, state)``, with a
  data-parallel loss (batch split over ``"data"``): its optimized HLO's
  collectives are counted. Plain Adam: one all-reduce of the gradients (XLA
  combines the leaves into one). Sharded: the same all-reduce, each device
  slicing its part of the gradients, and one all-gather per split leaf to
  rebuild the replicated updates; GPU and TPU pipelines fuse an all-reduce
  followed by a slice into a reduce-scatter, XLA's CPU pipeline does not.

Host devices share the CPU cores, so the step-time ratio shows the overhead of
the collectives on one machine, not the speed-up of real accelerators.
"""

from __future__ import annotations

import os
import sys

_FLAG = "--xla_force_host_platform_device_count"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):  # must be set before jax is imported
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}=8".strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse
import json
import re
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import gradxform as gx

COLLECTIVES = ("all-reduce", "reduce-scatter", "all-gather", "all-to-all", "collective-permute")


def make_tree(quick: bool) -> dict:
    """An MLP-shaped float32 tree: two matrices, their biases, and a leaf no device count divides."""
    d = 256 if quick else 1024
    shapes = {"w1": (d, 4 * d), "b1": (4 * d,), "w2": (4 * d, d), "b2": (d,), "odd": (3, 5)}
    rng = np.random.default_rng(0)
    return {k: jnp.asarray(rng.normal(size=s) * 0.02, jnp.float32) for k, s in shapes.items()}


def tree_bytes_per_device(tree) -> int:
    """Bytes one device holds of `tree` (device 0's shards)."""
    total = 0
    for leaf in jax.tree_util.tree_leaves(tree):
        total += sum(s.data.nbytes for s in leaf.addressable_shards if s.device == jax.devices()[0])
    return total


def collectives(hlo: str) -> dict:
    """How many of each collective the optimized HLO holds (async pairs counted once)."""
    out = {}
    for name in COLLECTIVES:
        n = len(re.findall(rf" {name}(-start)?\(", hlo))
        if n:
            out[name] = n
    return out


def measure(name, tx, params, mesh, rounds, batch):
    replicated = NamedSharding(mesh, P())
    params = jax.device_put(params, replicated)
    grads = jax.tree_util.tree_map(lambda p: p * 0.5 + 0.01, params)
    state = tx.init(params)
    state = jax.device_put(state, jax.tree_util.tree_map(
        lambda a: a.sharding if isinstance(a.sharding, NamedSharding) else replicated, state))
    shardings = gx.sharding.state_shardings(tx, params, mesh)

    def update_step(params, grads, state):
        updates, state = tx.update(grads, state, params)
        return gx.apply_updates(params, updates), state

    param_sh = jax.tree_util.tree_map(lambda _: replicated, params)
    step = jax.jit(update_step, donate_argnums=(0, 2), out_shardings=(param_sh, shardings))
    compiled = step.lower(params, grads, state).compile()
    mem = compiled.memory_analysis()
    row = {
        "name": name,
        "params": tree_bytes_per_device(params),
        "grads": tree_bytes_per_device(grads),
        "state": tree_bytes_per_device(state),
        "state_total": sum(x.nbytes for x in jax.tree_util.tree_leaves(state)),
        "arguments": int(mem.argument_size_in_bytes),
        "temp": int(mem.temp_size_in_bytes),
        "update_collectives": collectives(compiled.as_text()),
    }
    p = jax.tree_util.tree_map(lambda x: x.copy(), params)
    s = state
    p, s = compiled(p, grads, s)  # warm up
    jax.block_until_ready(p)
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        p, s = compiled(p, grads, s)
        jax.block_until_ready((p, s))
        times.append(time.perf_counter() - t)
    row["times"] = times

    x, y = batch

    def train_step(params, state, x, y):
        def loss(p):
            h = jnp.tanh(x @ p["w1"] + p["b1"])
            out = h @ p["w2"] + p["b2"]
            return jnp.mean((out - y) ** 2) + jnp.sum(p["odd"] ** 2)

        grads = jax.grad(loss)(params)
        updates, state = tx.update(grads, state, params)
        return gx.apply_updates(params, updates), state

    batch_sh = NamedSharding(mesh, P("data"))
    train = jax.jit(train_step, donate_argnums=(0, 1), out_shardings=(param_sh, shardings))
    hlo = train.lower(params, state, jax.device_put(x, batch_sh), jax.device_put(y, batch_sh)).compile().as_text()
    row["train_collectives"] = collectives(hlo)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small tree and 3 rounds")
    parser.add_argument("--rounds", type=int, default=None, help="timed steps per optimizer (default 30)")
    parser.add_argument("--json", default=None, help="also write every figure here")
    args = parser.parse_args(argv)
    n = len(jax.devices())
    if n < 2:
        print(f"sharding.py: jax sees {n} device; run with XLA_FLAGS={_FLAG}=8", file=sys.stderr)
        return 2
    mesh = Mesh(np.array(jax.devices()), ("data",))
    params = make_tree(args.quick)
    rounds = args.rounds or (3 if args.quick else 30)
    d = params["w1"].shape[0]
    rng = np.random.default_rng(1)
    batch = (jnp.asarray(rng.normal(size=(8 * n, d)), jnp.float32), jnp.asarray(rng.normal(size=(8 * n, d)),
                                                                                  jnp.float32))
    rows = [measure("adam", gx.adam(1e-3), params, mesh, rounds, batch),
            measure("shard_state(adam)", gx.sharding.shard_state(gx.adam(1e-3), mesh), params, mesh, rounds,
                    batch)]
    plain, sharded = rows
    mib = lambda b: f"{b / 2**20:.2f}"
    print(f"{n} host devices, {sum(x.size for x in jax.tree_util.tree_leaves(params)) / 1e6:.2f}M float32 params, "
          f"{rounds} timed steps each\n")
    print("| per device (MiB) | params | grads | state | compiled step's arguments | "
          "bound params+grads+state/N | step time (ms, median) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        bound = r["params"] + r["grads"] + r["state_total"] / n
        print(f"| {r['name']} | {mib(r['params'])} | {mib(r['grads'])} | {mib(r['state'])} | {mib(r['arguments'])} | "
              f"{mib(bound)} | {1e3 * float(np.median(r['times'])):.2f} |")
    ratio_state = sharded["state"] / plain["state"]
    ratio_args = sharded["arguments"] / plain["arguments"]
    ratio_time = float(np.median(np.asarray(sharded["times"]) / np.asarray(plain["times"])))
    print(f"\nsharded / plain: state per device {ratio_state:.3f} (1/N = {1 / n:.3f}), step arguments "
          f"{ratio_args:.3f}, step time {ratio_time:.2f} (median of paired rounds)")
    bound = sharded["params"] + sharded["grads"] + sharded["state_total"] / n
    print(f"sharded step's arguments / (params + grads + state/N): {sharded['arguments'] / bound:.3f} "
          f"(target <= 1.10)")
    for r in rows:
        print(f"{r['name']}: update step collectives {r['update_collectives'] or 'none'}; "
              f"data-parallel train step collectives {r['train_collectives'] or 'none'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"devices": n, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
