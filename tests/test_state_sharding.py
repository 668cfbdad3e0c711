"""`gx.sharding.shard_state` / `state_shardings` on 8 host devices (ZeRO-1), checked in one subprocess.

jax must see 8 CPU devices, which is fixed when jax is first imported, so every
check runs in one fresh interpreter with XLA_FLAGS set (start-up and compiles
paid once); each section prints ``OK <name>`` or ``FAIL <name>`` with its
traceback, and each test below asserts its own sections. The registry section
compares ``shard_state(tx)`` with ``tx`` itself (same gradients, same jitted
program, rtol 1e-5) for 5 entries in CI (compiling for 8 devices is what costs)
and for every entry with ``--runslow``.

Broken versions the script runs and expects to be caught: a layout that
replicates everything (`_split_spec` -> ``P()``), and updates not brought back
to the gradients' layout (`_like_gradients` -> identity).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

CI_ENTRIES = [
    # CI's budget allows a few, one per kind of state: a trace (the update *is* the state), factored moments,
    # L-BFGS's memory (not parameter-shaped), flatten's vectors (init reads the params), a wrapper's nested state.
    # Compiling for 8 devices is what costs; --runslow runs every registry entry.
    "trace", "scale_by_factored_rms_factored", "scale_by_lbfgs", "flatten_adam", "inject_hyperparams_adam",
]

SCRIPT = textwrap.dedent(
    r"""
    import os, sys, tempfile, time, traceback
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import gradxform as gx
    from gradxform import sharding as gxs
    from gradxform.testing.registry import ENTRIES_BY_NAME, REGISTRY

    assert len(jax.devices()) == 8, jax.devices()
    N = 8
    mesh = Mesh(np.array(jax.devices()), ("data",))
    rep = NamedSharding(mesh, P())
    SHAPES = {"w": (8, 4), "b": (16,), "r": (3,), "s": ()}
    SPLIT = {(8, 4): P("data", None), (16,): P("data")}  # (3,): no dimension 8 divides -> replicated
    rng = np.random.default_rng(0)
    params = {k: jax.device_put(jnp.asarray(rng.normal(size=s), jnp.float32), rep) for k, s in SHAPES.items()}
    grads = [{k: jax.device_put(jnp.asarray(rng.normal(size=s), jnp.float32), rep) for k, s in SHAPES.items()}
             for _ in range(2)]

    def section(name, fn):
        t = time.perf_counter()
        try:
            fn()
        except Exception:
            print(f"FAIL {name}\n{traceback.format_exc()}", flush=True)
        else:
            print(f"OK {name} {time.perf_counter() - t:.1f}s", flush=True)

    def expect_failure(name, fn):
        try:
            fn()
        except AssertionError:
            return
        raise AssertionError(f"the broken version {name} was not caught")

    def check_layout(state, where):
        # every state leaf shaped like a parameter is split 8 ways along its first axis; every scalar is replicated
        split = 0
        for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
            key = jax.tree_util.keystr(path)
            want = SPLIT.get(leaf.shape) if leaf.ndim else P()
            if want is None:
                continue
            assert leaf.sharding.is_equivalent_to(NamedSharding(mesh, want), leaf.ndim), (where, key, leaf.sharding)
            if leaf.ndim:
                assert leaf.addressable_shards[0].data.nbytes * N == leaf.nbytes, (where, key)
                split += 1
        return split

    def compare(*entries):
        # the entries' plain and sharded runs in one jitted program
        txs = {e.name: e.build() for e in entries}
        sharded = {name: gxs.shard_state(tx, mesh) for name, tx in txs.items()}
        s_plain = {name: tx.init(params) for name, tx in txs.items()}
        s_sh = {name: tx.init(params) for name, tx in sharded.items()}
        for name, s in s_sh.items():
            check_layout(s, name + " init")

        @jax.jit
        def both(params, grads, s_plain, s_sh):
            out = {}
            for e in entries:
                sp, ss, up, us = s_plain[e.name], s_sh[e.name], [], []
                for i, g in enumerate(grads):
                    extra = e.extra_args_fn(i, params, g) if e.extra_args_fn else {}
                    u, sp = txs[e.name].update(g, sp, params, **extra)
                    up.append(u)
                    u, ss = sharded[e.name].update(g, ss, params, **extra)
                    us.append(u)
                out[e.name] = (up, us, sp, ss)
            return out

        out = both(params, grads, s_plain, s_sh)
        split = 0
        for e in entries:
            u_plain, u_sh, sp, ss = out[e.name]
            split += check_layout(ss, e.name + " after 2 steps")
            for i, (a, b) in enumerate(zip(u_plain, u_sh)):
                for k in SHAPES:
                    assert b[k].sharding.is_equivalent_to(rep, b[k].ndim), (e.name, "updates", k, b[k].sharding)
                    if not e.random:
                        np.testing.assert_allclose(np.asarray(b[k]), np.asarray(a[k]), rtol=1e-5, atol=1e-6,
                                                   err_msg=f"{e.name} step {i} {k}")
            for a, b in zip(jax.tree_util.tree_leaves(sp), jax.tree_util.tree_leaves(ss)):
                assert (a.shape, a.dtype) == (b.shape, b.dtype), e.name
        return split

    def registry():
        names = os.environ["GX_SHARDING_ENTRIES"]
        entries = REGISTRY if names == "all" else [ENTRIES_BY_NAME[n] for n in names.split(",")]
        failed, split = [], 0
        for entry in entries:  # one program each (one program for them all compiles slower)
            try:
                split += compare(entry)
            except Exception:
                failed.append(entry.name)
                print(f"entry {entry.name} failed:\n{traceback.format_exc()}", flush=True)
        assert not failed, failed
        assert split > len(entries), split  # the layout check looked at split leaves, not only scalars
        print(f"REGISTRY_ENTRIES {len(entries)}")

    def broken_versions():
        entry = ENTRIES_BY_NAME["trace"]  # its updates are its state: the layout and the gather both matter
        good_split, good_like = gxs._split_spec, gxs._like_gradients
        try:
            gxs._split_spec = lambda shape, axis, size: P()
            expect_failure("replicate every leaf", lambda: compare(entry))
        finally:
            gxs._split_spec = good_split
        try:
            gxs._like_gradients = lambda new_updates, grads, params: new_updates
            expect_failure("updates left sharded", lambda: compare(entry))
        finally:
            gxs._like_gradients = good_like

    def jit_donation_wrappers():
        # composition both ways, under jit with donation, params kept replicated without out_shardings
        def loss(p):
            return sum(jnp.sum(jnp.sin(x) * x) for x in jax.tree_util.tree_leaves(p))
        cases = {
            "chain(clip, shard_state(adam))": (
                gx.chain(gx.clip_by_global_norm(1.0), gxs.shard_state(gx.scale_by_adam(), mesh), gx.scale(-0.1)),
                gx.chain(gx.clip_by_global_norm(1.0), gx.scale_by_adam(), gx.scale(-0.1)), lambda s: s[1]),
        }
        for name, (tx, plain, part) in cases.items():
            def make(tx):
                def step(p, s):
                    u, s = tx.update(jax.grad(loss)(p), s, p)
                    return gx.apply_updates(p, u), s
                return step
            jstep = jax.jit(make(tx), donate_argnums=(0, 1))
            pstep = jax.jit(make(plain))
            # the outer wrapper's own leaves (counters, MultiSteps' accumulator) on the mesh too: no retrace
            p, s = jax.tree_util.tree_map(jnp.copy, params), jax.device_put(tx.init(params),
                                                                            gxs.state_shardings(tx, params))
            q, t = params, plain.init(params)
            for i in range(3):
                p, s = jstep(p, s)
                q, t = pstep(q, t)
            assert jstep._cache_size() == 1, (name, "retraced")
            assert check_layout(part(s), name) >= 2, name
            for k in SHAPES:
                assert p[k].sharding.is_equivalent_to(rep, p[k].ndim), (name, k, p[k].sharding)
                np.testing.assert_allclose(np.asarray(p[k]), np.asarray(q[k]), rtol=1e-5, atol=1e-6,
                                           err_msg=f"{name} {k}")

    def eager_updates_follow_gradients():
        tx = gxs.shard_state(gx.adam(0.1), mesh)
        state = tx.init(params)
        for spec in (P(), P("data")):
            g = {"w": jax.device_put(grads[0]["w"], NamedSharding(mesh, spec))}
            s = gxs.shard_state(gx.adam(0.1), mesh).init({"w": params["w"]})
            u, s = tx.update(g, s, {"w": params["w"]})
            assert u["w"].sharding.is_equivalent_to(g["w"].sharding, 2), (spec, u["w"].sharding)
            check_layout(s, f"eager {spec}")
        # gradients on one device only: replicated onto the mesh, updates back on that device
        single = {"w": jax.device_put(np.asarray(grads[0]["w"]), jax.devices()[3])}
        s = tx.init({"w": params["w"]})
        u, _ = tx.update(single, s)
        assert u["w"].sharding == single["w"].sharding, u["w"].sharding

    def shardings_api():
        tx = gxs.shard_state(gx.adam(0.1), mesh)
        state = tx.init(params)
        sh = gxs.state_shardings(tx, params)
        for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(sh)):
            assert a.sharding.is_equivalent_to(b, a.ndim), (a.sharding, b)
        # a shard_state inside a wrapper: its leaves as it places them, the wrapper's own follow the params
        wrapped = gx.MultiSteps(gx.chain(gx.clip(1.0), gxs.shard_state(gx.adam(0.1), mesh)), 2)
        sh = gxs.state_shardings(wrapped, params)
        assert sh.inner_opt_state[1][0].mu["w"].spec == P("data") and sh.acc_grads["w"].spec == P(), sh
        assert sh.inner_opt_state[1][0].count.spec == P() and sh.mini_step.spec == P(), sh
        state = wrapped.init(params)
        for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(sh)):
            if isinstance(a.sharding, NamedSharding):
                assert a.sharding.is_equivalent_to(b, a.ndim), (a.sharding, b)
        # a plain transformation: param-shaped leaves follow their (here FSDP-sharded) param, the rest replicated
        fsdp = {"w": NamedSharding(mesh, P(None, None)), "b": NamedSharding(mesh, P("data")), "r": rep, "s": rep}
        fp = {k: jax.device_put(v, fsdp[k]) for k, v in params.items()}
        sh = gxs.state_shardings(gx.adam(0.1), fp)
        assert sh[0].mu["b"].spec == P("data") and sh[0].nu["w"].spec == P(None, None) and sh[0].count.spec == P()
        sh = gxs.state_shardings(gx.adam(0.1), fp, mesh, "data")
        assert sh[0].mu["w"].spec == P("data") and sh[0].mu["r"].spec == P(), sh
        try:
            gxs.state_shardings(gx.adam(0.1), {"w": jnp.ones(3)})
        except ValueError as e:
            assert "mesh" in str(e), e
        else:
            raise AssertionError("no ValueError without a mesh")
        try:
            gxs.shard_state(gx.adam(0.1), mesh, axis="model")
        except ValueError as e:
            assert "axis='model'" in str(e) and "state" in str(e), e
        else:
            raise AssertionError("no ValueError for a missing axis")

    def memory_and_collectives():
        big = {"w1": jnp.ones((512, 256)), "w2": jnp.ones((256, 512)), "b": jnp.ones(512), "odd": jnp.ones((3, 5))}
        big = jax.device_put(big, rep)
        nbytes = lambda t: sum(x.nbytes for x in jax.tree_util.tree_leaves(t))
        def compiled(tx):
            state = tx.init(big)
            def step(p, g, s):
                u, s = tx.update(g, s, p)
                return gx.apply_updates(p, u), s
            return jax.jit(step, donate_argnums=(0, 2)).lower(big, big, state).compile(), state
        c_sh, s_sh = compiled(gxs.shard_state(gx.adam(1e-3), mesh))
        c_plain, s_plain = compiled(gx.adam(1e-3))
        bound = 1.10 * (nbytes(big) * 2 + nbytes(s_plain) / N)
        args_sh = c_sh.memory_analysis().argument_size_in_bytes
        args_plain = c_plain.memory_analysis().argument_size_in_bytes
        print(f"MEMORY params {nbytes(big)} state {nbytes(s_plain)} args plain {args_plain} sharded {args_sh} "
              f"bound {bound:.0f}")
        assert args_sh <= bound, (args_sh, bound)
        assert args_plain > bound, (args_plain, bound)  # the bound tells the two apart
        hlo_sh, hlo_plain = c_sh.as_text(), c_plain.as_text()
        assert " all-gather(" in hlo_sh or " all-gather-start(" in hlo_sh, "no all-gather of the updates"
        assert "all-gather" not in hlo_plain and "all-reduce" not in hlo_plain

    def orbax_round_trip():
        import orbax.checkpoint as ocp
        tx = gxs.shard_state(gx.adam(0.1), mesh)
        def step(p, s, g):
            u, s = tx.update(g, s, p)
            return gx.apply_updates(p, u), s
        jstep = jax.jit(step)
        p, s = params, tx.init(params)
        p, s = jstep(p, s, grads[0])
        path = os.path.join(tempfile.mkdtemp(), "state")
        ckptr = ocp.StandardCheckpointer()
        ckptr.save(path, s)
        ckptr.wait_until_finished()
        abstract = jax.tree_util.tree_map(lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh),
                                          jax.eval_shape(tx.init, params), gxs.state_shardings(tx, params))
        restored = ckptr.restore(path, abstract)
        assert jax.tree_util.tree_structure(restored) == jax.tree_util.tree_structure(s)
        check_layout(restored, "restored")
        a, b = (p, s), (p, restored)
        for _ in range(3):
            a, b = jstep(*a, grads[1]), jstep(*b, grads[1])
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            assert np.array_equal(np.asarray(x), np.asarray(y)), "training after the restore differs"
        check_layout(b[1], "restored, after 3 steps")

    for name in sys.argv[1].split(","):
        section(name, globals()[name])
    """
)

SECTIONS = ["registry", "broken_versions", "jit_donation_wrappers", "eager_updates_follow_gradients",
            "shardings_api", "memory_and_collectives", "orbax_round_trip"]


def run_script(sections, entries) -> str:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
               GX_SHARDING_ENTRIES=entries)
    result = subprocess.run([sys.executable, "-c", SCRIPT, ",".join(sections)], check=False, env=env, capture_output=True,
                            text=True, timeout=1200)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def output() -> str:
    return run_script(SECTIONS, ",".join(CI_ENTRIES))


def _assert_ok(output: str, name: str) -> None:
    assert f"OK {name} " in output, output


@pytest.mark.parametrize("name", SECTIONS)
def test_state_sharding_8_devices(output, name):
    _assert_ok(output, name)


@pytest.mark.slow
def test_shard_state_every_registry_entry():
    out = run_script(["registry"], "all")
    _assert_ok(out, "registry")
