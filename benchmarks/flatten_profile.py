"""Where `gx.flatten`'s step and first call go, on the 2,000-leaf tree (issue 16).

    python -m benchmarks.flatten_profile                 # 300 rounds (about 4 minutes on 2 cores)
    python -m benchmarks.flatten_profile --rounds 40 --leaves 500

Compiles three jitted training steps (update, then ``apply_updates``; params and state
donated) on ``--leaves`` float32 leaves of 4,096 floats: ``gx.flatten(gx.adam(1e-3))`` as
shipped (its read-back slices at offsets XLA cannot see), the same with constant offsets (as
``optax.flatten`` slices), and ``optax.flatten(optax.adam(1e-3))``. Prints each one's compile
time and kernel counts, then times the three compiled steps in the same rounds (the order
rotates each round) and prints each one's median step and its per-round ratio to
``optax.flatten``'s (median and interquartile range). Needs optax.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks._hlo import hlo_stats


def _tree(rng: np.random.Generator, leaves: int, scale: float) -> dict:
    return {f"p{i:04d}": jnp.asarray(rng.standard_normal(4096, dtype=np.float32) * scale) for i in range(leaves)}


def _compiled_step(lib: Any, tx: Any, params: Any, grads: Any) -> tuple:
    """``(compiled step, state, seconds to trace and compile, HLO stats)``."""

    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return lib.apply_updates(p, u), s

    state = tx.init(params)
    t = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, grads).compile()
    return compiled, state, time.perf_counter() - t, hlo_stats(compiled.as_text())


def main(argv: Any = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--leaves", type=int, default=2000)
    args = parser.parse_args(argv)

    import optax  # noqa: PLC0415

    import gradxform as gx  # noqa: PLC0415
    from gradxform.wrappers import _flatten  # noqa: PLC0415

    rng = np.random.default_rng(0)
    shipped = _flatten._opaque_offsets
    runs = {}
    for name, lib, tx, constant in (
        ("gx.flatten", gx, gx.flatten(gx.adam(1e-3)), False),
        ("gx.flatten, constant offsets", gx, gx.flatten(gx.adam(1e-3)), True),
        ("optax.flatten", optax, optax.flatten(optax.adam(1e-3)), False),
    ):
        _flatten._opaque_offsets = (lambda offsets, probe: list(offsets)) if constant else shipped
        try:
            params, grads = _tree(rng, args.leaves, 1.0), _tree(rng, args.leaves, 1e-2)
            compiled, state, seconds, stats = _compiled_step(lib, tx, params, grads)
        finally:
            _flatten._opaque_offsets = shipped
        params, state = compiled(params, state, grads)  # the first run, not timed
        jax.block_until_ready(params)
        runs[name] = {"step": compiled, "params": params, "state": state, "grads": grads, "times": []}
        kept = {k: stats[k] for k in ("kernels", "fusions", "copies", "whiles")}
        print(f"{name:30s} trace + compile {seconds:6.1f} s  {kept}", flush=True)

    names = list(runs)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            run = runs[name]
            t = time.perf_counter()
            run["params"], run["state"] = run["step"](run["params"], run["state"], run["grads"])
            jax.block_until_ready((run["params"], run["state"]))
            run["times"].append(time.perf_counter() - t)
    base = np.array(runs["optax.flatten"]["times"])
    print(f"\n{args.rounds} rounds, {args.leaves} leaves of 4,096 float32:")
    for name, run in runs.items():
        t = np.array(run["times"])
        ratio = t / base
        print(f"{name:30s} step median {np.median(t) * 1e3:7.2f} ms; x optax.flatten per round: median "
              f"{np.median(ratio):.3f} [{np.quantile(ratio, 0.25):.3f}, {np.quantile(ratio, 0.75):.3f}]")


if __name__ == "__main__":
    main()
