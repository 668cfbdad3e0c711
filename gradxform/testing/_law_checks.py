"""The checks behind the laws of `gradxform.testing.laws`, one function per law.

Each check takes one example's eager trajectory (`Run`, built by the runner) and
returns None, or raises `Broken` with the counterexample: the key path, the step,
what was expected and what was found. The law records (statement, hint, which
check, whether it compiles) are in `gradxform.testing.laws`.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Optional, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gradxform.testing._compare import EXACT, SCAN_FACTOR, compare, compare_leaf, to_numpy
from gradxform.testing._examples import (
    Example,
    aval_key,
    describe_leaf,
    jit_describe,
    paths,
    random_like,
    structure_difference,
)


class Run(Protocol):
    """What a law's check is given: one example's eager trajectory (built by the runner)."""

    tx: Any
    example: Example
    params: Any
    extras: list  # the extra keyword arguments of each step
    states: list  # init's state, then the state after each step
    updates: list  # the updates of each step
    rtol: Optional[float]  # check_transformation's tolerance overrides
    atol: Optional[float]
    cache: dict  # what several laws of the example share
    jit_steps: range  # the steps the jit / cond laws check

    def update(self, g: Any, s: Any, k: int, tx: Any = None, **more: Any) -> tuple: ...


class Broken(Exception):
    """Raised by a law's check with a counterexample (the runner turns it into a `Violation`)."""

    def __init__(self, **fields: Any):
        super().__init__(fields.get("detail", ""))
        self.fields = fields


def _is_inexact(x: Any) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact)


def _agree(run: Run, expected: Any, got: Any, prefix: str, **kwargs: Any):
    return compare(expected, got, prefix=prefix, rtol=run.rtol, atol=run.atol, **kwargs)


def _same(expected: Any, got: Any, prefix: str):
    return compare(expected, got, prefix=prefix, purpose="exact")


# --------------------------------------------------------------------------- types and values


def updates_structure(run: Run):
    for k, (g, u) in enumerate(zip(run.example.grads, run.updates)):
        diff = structure_difference(g, u)
        if diff:
            raise Broken(path="updates" + diff[0], step=k, expected=diff[1], got=diff[2])


def _same_leaves(run: Run, what: Callable[[Any], Any]):
    for k, (g, u) in enumerate(zip(run.example.grads, run.updates)):
        if structure_difference(g, u):
            continue  # reported by updates_structure
        for (path, a), (_, b) in zip(paths(g), paths(u)):
            if a is not None and what(a) != what(b):
                raise Broken(path="updates" + path, step=k, expected=describe_leaf(a), got=describe_leaf(b))


def updates_shape(run: Run):
    _same_leaves(run, np.shape)


def updates_dtype(run: Run):
    _same_leaves(run, lambda x: np.dtype(getattr(x, "dtype", type(x))))


def finite(run: Run):
    for k, (g, u, s) in enumerate(zip(run.example.grads, run.updates, run.states[1:])):
        for prefix, tree in (("updates", u), ("state", s)):
            for path, x in paths(tree):
                if _is_inexact(x) and not np.all(np.isfinite(to_numpy(x))):
                    zero = "" if k != 1 else " (the gradient is all zeros at this step)"
                    raise Broken(
                        path=prefix + path,
                        step=k,
                        expected="finite values",
                        got=f"{describe_leaf(x)} with {int(np.sum(~np.isfinite(to_numpy(x))))} non-finite "
                        f"entries{zero}",
                        detail="every gradient entry was finite; the first entry of each leaf (of "
                        "more than one entry) is 0 at every step",
                    )


def state_structure(run: Run):
    for k, s in enumerate(run.states[1:]):
        diff = structure_difference(run.states[0], s)
        if diff:
            raise Broken(path="state" + diff[0], step=k, expected=diff[1] + " (as init gave it)", got=diff[2])


def state_dtype(run: Run):
    s0 = run.states[0]
    for k, s in enumerate(run.states[1:]):
        if structure_difference(s0, s):
            return  # reported by state_structure
        for (path, a), (_, b) in zip(paths(s0), paths(s)):
            if aval_key(a)[:2] != aval_key(b)[:2]:
                raise Broken(
                    path="state" + path, step=k, expected=describe_leaf(a) + " (as init gave it)", got=describe_leaf(b)
                )


def init_pure(run: Run):
    bad = _same(run.states[0], run.tx.init(run.params), "state")
    if bad:
        raise Broken(path=bad.path, detail=f"a second init(params) differs: {bad.summary()}")


def init_value_independent(run: Run):
    other = random_like(run.params, np.random.default_rng(12345), 2.0)
    bad = _same(run.states[0], run.tx.init(other), "state")
    if bad:
        raise Broken(path=bad.path, detail=f"init(other params of the same shapes) differs: {bad.summary()}")


def deterministic(run: Run):
    for k, g in enumerate(run.example.grads):
        u, s = run.update(g, run.states[k], k)
        for prefix, e, got in (("updates", run.updates[k], u), ("state", run.states[k + 1], s)):
            bad = _same(e, got, prefix)
            if bad:
                raise Broken(path=bad.path, step=k, detail=f"a second call of update differs: {bad.summary()}")


# --------------------------------------------------------------------------- compiled


def _is_array_like(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic, bool, int, float, complex))


def _split_extra(extra: dict) -> tuple[dict, tuple]:
    """(array-valued extra args, hashable tuple of the others, passed statically to jit)."""
    arrays, static = {}, []
    for k, v in extra.items():
        leaves = jax.tree_util.tree_leaves(v)
        if leaves and all(_is_array_like(x) for x in leaves):
            arrays[k] = v
        else:
            static.append((k, v))
    return arrays, tuple(sorted(static, key=lambda kv: kv[0]))


def _fresh(tree: Any) -> Any:
    """A copy of every jax array of `tree` (what a donated call may consume)."""
    return jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True) if isinstance(x, jax.Array) else x, tree)


def _jitted_update(run: Run) -> tuple[Callable, list]:
    """One ``jax.jit(update)`` with a trace counter, shared by the jit laws of an example.

    Called as ``f(g, s, params, arrays, static)``; the static extra arguments are static.
    The state and the params are donated (``donate_argnums=(1, 2)``), as in a training
    step, so that the ``donation`` law reuses this compilation: callers other than that
    law pass copies (`_fresh`) of the trajectory's states and params.
    """
    if "jitted_update" not in run.cache:
        traces = [0]

        def counted(g, s, p, arrays, static):
            traces[0] += 1
            return run.tx.update(g, s, p, **arrays, **dict(static))

        jitted = jax.jit(counted, static_argnums=(4,), donate_argnums=(1, 2))

        def call(g, s, p, arrays, static):
            with warnings.catch_warnings():  # a donated buffer no output can reuse is fine here
                warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
                return jitted(g, s, p, arrays, static)

        run.cache["jitted_update"] = (call, traces)
    return run.cache["jitted_update"]


def no_retrace(run: Run):
    if run.example.steps < 2:
        return
    f, traces = _jitted_update(run)
    s = run.states[0]
    seen = []
    for k in range(min(3, run.example.steps)):
        g = run.example.grads[k]
        arrays, static = _split_extra(run.extras[k])
        before = traces[0]
        _, s_next = f(g, _fresh(s), _fresh(run.params), arrays, static)
        if k > 0 and traces[0] > before:
            # Find what jit saw differently from the previous call.
            prev_g, prev_s, prev_e = seen[-1]
            inputs = (("state", prev_s, s), ("updates", prev_g, g), ("extra_args", prev_e, arrays))
            for prefix, old, new in inputs:
                if structure_difference(old, new):
                    raise Broken(path=prefix, step=k, detail="the tree changed between steps")
                for (path, a), (_, b) in zip(paths(old), paths(new)):
                    if aval_key(a) != aval_key(b):
                        raise Broken(
                            path=prefix + path,
                            step=k,
                            expected=jit_describe(a) + f" (as at step {k - 1})",
                            got=jit_describe(b),
                            detail="jax.jit traced update again: the input's type differs from the "
                            "previous step's",
                        )
            raise Broken(
                step=k,
                detail="jax.jit traced update again with inputs of the same types; does update read "
                "Python-side state, or a static argument that changes?",
            )
        seen.append((g, s, arrays))
        s = s_next


def jit_consistent(run: Run):
    f, _ = _jitted_update(run)
    for k in run.jit_steps:
        arrays, static = _split_extra(run.extras[k])
        u, s = f(run.example.grads[k], _fresh(run.states[k]), _fresh(run.params), arrays, static)
        for prefix, e, got in (("updates", run.updates[k], u), ("state", run.states[k + 1], s)):
            bad = _agree(run, e, got, prefix)
            if bad:
                raise Broken(path=bad.path, step=k, detail=f"jit vs no jit: {bad.summary()}")


def _buffer(x: Any) -> Any:
    if x.size == 0:  # empty arrays may all report the same (null) pointer
        return ("id", id(x))
    try:
        return x.unsafe_buffer_pointer()
    except Exception:  # noqa: BLE001 - a sharded or deleted array: its identity will do
        return ("id", id(x))


def _shared_buffer(params: Any, state: Any) -> Optional[tuple[str, str]]:
    """The first state leaf whose buffer is also a params leaf's or an earlier state leaf's."""
    seen: dict = {}
    for prefix, tree in (("params", params), ("state", state)):
        for path, x in paths(tree):
            if not isinstance(x, jax.Array):
                continue
            key = _buffer(x)
            if key in seen:
                return prefix + path, seen[key]
            seen[key] = prefix + path
    return None


def donation(run: Run):
    """``jax.jit(step, donate_argnums=(state, params))`` runs on init's state, two steps in a row.

    XLA rejects a call donating one buffer twice, so init must not put the params'
    own arrays, or one array in two places, in the state. The step reuses the jit
    laws' compiled update (`_jitted_update` donates), on fresh copies of the params.
    """
    f, _ = _jitted_update(run)
    params = _fresh(run.params)
    s = run.tx.init(params)
    shared = _shared_buffer(params, s)
    if shared is not None:
        raise Broken(
            path=shared[0], step=0, expected="a buffer of its own", got=f"the buffer of {shared[1]}",
            detail="jax.jit(step, donate_argnums=...) would fail with 'Attempt to donate the same "
            "buffer twice' straight after init",
        )
    for k in range(min(2, run.example.steps)):
        arrays, static = _split_extra(run.extras[k])
        try:
            _, s = f(run.example.grads[k], s, params, arrays, static)
            jax.block_until_ready(s)
        except Exception as err:  # noqa: BLE001 - the report names what XLA or the rule raised
            text = " ".join(str(err).strip().splitlines()[:2])[:400]
            raise Broken(step=k, detail=f"a donated step raised {type(err).__name__}: {text}") from None
        params = _fresh(run.params)


def _carry_mismatch(run: Run, g, s, k, updates_too: bool = True) -> Optional[Broken]:
    """Compares the types update returns with the ones it was given (what cond / scan need).

    lax.cond needs both the updates and the state to keep their types (the other
    branch returns them unchanged); lax.scan only the state (its carry).
    """
    arrays, static = _split_extra(run.extras[k])
    out_u, out_s = jax.eval_shape(
        lambda g, s, p, a: run.tx.update(g, s, p, **a, **dict(static)), g, s, run.params, arrays
    )
    pairs = (("updates", g, out_u), ("state", s, out_s)) if updates_too else (("state", s, out_s),)
    for prefix, given, out in pairs:
        diff = structure_difference(given, out)
        if diff:
            return Broken(path=prefix + diff[0], step=k, expected=diff[1] + " (as given)", got=diff[2])
        for (path, a), (_, b) in zip(paths(given), paths(out)):
            if a is not None and aval_key(a)[:2] != aval_key(b)[:2]:
                expected = describe_leaf(a) + " (as given)"
                return Broken(path=prefix + path, step=k, expected=expected, got=describe_leaf(b))
    return None


def lax_cond(run: Run):
    def branches(pred, g, s, p, a, static):
        return lax.cond(pred, lambda: run.tx.update(g, s, p, **a, **dict(static)), lambda: (g, s))

    f = jax.jit(branches, static_argnums=(5,))
    for k in run.jit_steps:
        g, s = run.example.grads[k], run.states[k]
        bad = _carry_mismatch(run, g, s, k)
        if bad is not None:
            bad.fields["detail"] = "the update branch returns other types than the branch keeping the state"
            bad.fields["secondary"] = True
            raise bad
        arrays, static = _split_extra(run.extras[k])
        u, s_new = f(True, g, s, run.params, arrays, static)
        for prefix, e, got in (("updates", run.updates[k], u), ("state", run.states[k + 1], s_new)):
            mismatch = _agree(run, e, got, prefix)
            if mismatch:
                detail = f"lax.cond(True, update, keep) vs update: {mismatch.summary()}"
                raise Broken(path=mismatch.path, step=k, detail=detail)
        u, s_kept = f(False, g, s, run.params, arrays, static)
        mismatch = _same(s, s_kept, "state")
        if mismatch:
            detail = f"lax.cond(False, update, keep) changed the state: {mismatch.summary()}"
            raise Broken(path=mismatch.path, step=k, detail=detail)


def lax_scan(run: Run):
    steps = run.example.steps
    bad = _carry_mismatch(run, run.example.grads[0], run.states[0], 0, updates_too=False)
    if bad is not None:
        bad.fields["detail"] = "the scan carry (the state) must keep its tree, shapes and dtypes"
        bad.fields["secondary"] = True
        raise bad
    split = [_split_extra(e) for e in run.extras]
    static = split[0][1]
    if any(st_ != static for _, st_ in split):
        return  # extra arguments that are not arrays change per step: nothing to scan over
    arrays = [a for a, _ in split]
    stack = lambda *xs: jnp.stack([jnp.asarray(x) for x in xs])  # noqa: E731
    gs = jax.tree_util.tree_map(stack, *run.example.grads)
    es = jax.tree_util.tree_map(stack, *arrays) if arrays[0] else {}

    def body(s, x):
        g, e = x
        u, s = run.tx.update(g, s, run.params, **e, **dict(static))
        return s, u

    final, us = jax.jit(lambda s0, xs: lax.scan(body, s0, xs))(run.states[0], (gs, es))

    def loose(tree_e, tree_g, prefix, k):
        if structure_difference(tree_e, tree_g):
            what = "updates have" if prefix == "updates" else "final state has"
            raise Broken(path=prefix, step=k, detail=f"lax.scan's {what} another tree")
        mismatch = _agree(run, tree_e, tree_g, prefix, factor=SCAN_FACTOR * steps)
        if mismatch:
            raise Broken(path=mismatch.path, step=k, detail=f"lax.scan vs the Python loop: {mismatch.summary()}")

    for k in range(steps):
        loose(run.updates[k], jax.tree_util.tree_map(lambda x, k=k: x[k], us), "updates", k)
    loose(run.states[-1], final, "state", steps - 1)


# --------------------------------------------------------------------------- composition


def _gx():
    import gradxform

    return gradxform


def _chain(run: Run, left: bool):
    gx = _gx()
    chained = gx.chain(gx.identity(), run.tx) if left else gx.chain(run.tx, gx.identity())
    inner = 1 if left else 0
    s = chained.init(run.params)
    bad = _agree(run, run.states[0], s[inner], "state")
    if bad:
        raise Broken(path=bad.path, detail=f"init: {bad.summary()}")
    for k, g in enumerate(run.example.grads):
        u, s = run.update(g, s, k, tx=chained)
        for prefix, e, got in (("updates", run.updates[k], u), ("state", run.states[k + 1], s[inner])):
            bad = _agree(run, e, got, prefix)
            if bad:
                raise Broken(path=bad.path, step=k, detail=bad.summary())


def chain_identity_left(run: Run):
    _chain(run, left=True)


def chain_identity_right(run: Run):
    _chain(run, left=False)


def none_leaves(run: Run):
    leaves, treedef = jax.tree_util.tree_flatten(run.example.grads[0])
    if len(jax.tree_util.tree_leaves(run.params)) < 2:
        return
    g = jax.tree_util.tree_unflatten(treedef, [None] + leaves[1:])
    u, s = run.update(g, run.states[0], 0)
    for prefix, before, after in (("updates", g, u), ("state", run.states[0], s)):
        diff = structure_difference(before, after)
        if diff:
            raise Broken(path=prefix + diff[0], step=0, expected=diff[1], got=diff[2])
    for (path, a), (_, b) in zip(paths(run.states[0]), paths(s)):
        if aval_key(a)[:2] != aval_key(b)[:2]:
            raise Broken(path="state" + path, step=0, expected=describe_leaf(a), got=describe_leaf(b))


def masked(run: Run):
    gx = _gx()
    leaves, treedef = jax.tree_util.tree_flatten(run.params)
    if len(leaves) < 2:
        return
    mask = jax.tree_util.tree_unflatten(treedef, [False] + [True] * (len(leaves) - 1))
    tx = gx.masked(run.tx, mask)
    s = s0 = tx.init(run.params)
    for k, g in enumerate(run.example.grads):
        u, s = run.update(g, s, k, tx=tx)
        diff = structure_difference(g, u)
        if diff:
            raise Broken(path="updates" + diff[0], step=k, expected=diff[1], got=diff[2])
        (path, g0), (_, u0) = paths(g)[0], paths(u)[0]
        changed = compare_leaf(g0, u0, EXACT)
        if changed or describe_leaf(g0) != describe_leaf(u0):
            what = changed.summary() if changed else describe_leaf(u0)
            raise Broken(path="updates" + path, step=k, detail=f"the masked-out leaf changed: {what}")
        for (path, a), (_, b) in zip(paths(g), paths(u)):
            if describe_leaf(a) != describe_leaf(b):
                raise Broken(path="updates" + path, step=k, expected=describe_leaf(a), got=describe_leaf(b))
        diff = structure_difference(s0, s)
        if diff:
            raise Broken(path="state" + diff[0], step=k, expected=diff[1], got=diff[2])


def ignores_extra_args(run: Run):
    unknown = {"gx_unused_extra_arg": jnp.ones((), jnp.float32)}
    u, s = run.update(run.example.grads[0], run.states[0], 0, **unknown)
    for prefix, e, got in (("updates", run.updates[0], u), ("state", run.states[1], s)):
        bad = _same(e, got, prefix)
        if bad:
            raise Broken(path=bad.path, step=0, detail=f"with an unknown extra argument: {bad.summary()}")
