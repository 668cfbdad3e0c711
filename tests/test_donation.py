"""A jitted training step may donate the params and the state straight after ``init``.

XLA rejects a call that donates one buffer twice ("Attempt to donate the same
buffer twice"), so ``init`` must give every state leaf a buffer of its own: not
the params' arrays (early stopping's ``best_params``, lookahead's slow params)
and not one array in two fields (L-BFGS's two memories). The law ``donation``
of `check_transformation` checks it for every registry entry
(tests/test_registry_laws.py); here, the three fixed cases, and the law on a
deliberately broken rule of each kind.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from gradxform.testing import check_transformation


def _loss(p):
    return jnp.sum((p["w"] - 1.0) ** 2)


def _params():
    return {"w": jnp.array([0.5, -1.0, 2.0])}


def test_lbfgs_step_donating_params_and_state_runs():
    opt = gx.lbfgs(learning_rate=0.5, memory_size=3, linesearch=None)

    def step(p, s):
        u, s = opt.update(jax.grad(_loss)(p), s, p)
        return gx.apply_updates(p, u), s

    step = jax.jit(step, donate_argnums=(0, 1))
    p = _params()
    p, s = step(p, opt.init(p))
    p, s = step(p, s)
    # Two fixed steps of L-BFGS on a quadratic with Hessian 2I: step 1 moves by
    # 0.5 g / |g| (gamma_0 = 1/|g|), and the secant pair makes step 2 exact (gamma = 1/2).
    w0 = np.array([0.5, -1.0, 2.0])
    g0 = 2 * (w0 - 1)
    w1 = w0 - 0.5 * g0 / np.linalg.norm(g0)
    w2 = w1 - 0.5 * 0.5 * 2 * (w1 - 1)
    np.testing.assert_allclose(np.asarray(p["w"]), w2, rtol=1e-6)


def test_early_stopping_step_donating_params_and_state_runs():
    es = gx.training.early_stopping(patience=2)

    def step(p, s, metric):
        p = jax.tree_util.tree_map(lambda x: x - 0.1, p)
        return p, es.update(s, metric, p)

    step = jax.jit(step, donate_argnums=(0, 1))
    p = _params()
    s = es.init(p)
    for metric in (3.0, 2.0, 2.5):
        p, s = step(p, s, metric)
    np.testing.assert_allclose(np.asarray(s.best_params["w"]), [0.3, -1.2, 1.8], rtol=1e-6)  # after 2 steps
    assert int(s.best_step) == 2


def test_lookahead_step_donating_synced_params_and_state_runs():
    opt = gx.lookahead(gx.sgd(0.1), sync_period=2, slow_step_size=0.5)

    def step(p, s):
        u, s = opt.update(jax.grad(_loss)(p.fast), s, p)
        return gx.apply_updates(p, u), s

    step = jax.jit(step, donate_argnums=(0, 1))
    p0 = _params()
    p = gx.LookaheadParams.init_synced(p0)
    assert p.slow["w"] is not p.fast["w"]
    p, s = step(p, opt.init(p))
    p, s = step(p, s)
    # Two SGD steps (w <- w - 0.2 (w - 1)), then the slow params move halfway there.
    w0 = np.array([0.5, -1.0, 2.0])
    w2 = 1 + 0.8**2 * (w0 - 1)
    np.testing.assert_allclose(np.asarray(p.slow["w"]), w0 + 0.5 * (w2 - w0), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(p.fast["w"]), np.asarray(p.slow["w"]))


# --------------------------------------------------------------------------- the law and its mutants


def _keeps_params():
    """Broken: init returns the params themselves as the state (a trace started at the params)."""

    def init(params):
        return {"trace": params}

    def update(updates, state, params=None, **extra):
        trace = jax.tree_util.tree_map(lambda t, g: 0.9 * t + g, state["trace"], updates)
        return trace, {"trace": trace}

    return gx.GradientTransformation(init, update)


def _one_buffer_twice():
    """Broken: one zeros tree in two fields of the state (L-BFGS's bug before the fix)."""

    def init(params):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return {"mu": zeros, "nu": zeros}

    def update(updates, state, params=None, **extra):
        mu = jax.tree_util.tree_map(lambda m, g: 0.9 * m + g, state["mu"], updates)
        nu = jax.tree_util.tree_map(lambda v, g: 0.9 * v + g * g, state["nu"], updates)
        return mu, {"mu": mu, "nu": nu}

    return gx.GradientTransformation(init, update)


@pytest.mark.parametrize(
    "broken, where, shared",
    [
        (_keeps_params, "state['trace']['dense']['bias']", "params['dense']['bias']"),
        (_one_buffer_twice, "state['nu']['dense']['bias']", "state['mu']['dense']['bias']"),
    ],
    ids=["keeps_params", "one_buffer_twice"],
)
def test_donation_law_catches_shared_buffers(broken, where, shared):
    with pytest.raises(AssertionError, match="law 'donation'") as info:
        check_transformation(broken(), laws=["donation"])
    assert info.value.laws == ["donation"]
    assert f"where:    {where} at step 0" in str(info.value)
    assert f"got:      the buffer of {shared}" in str(info.value)


def test_donation_law_runs_the_donated_step():
    # Without the static buffer comparison, the donated call itself must fail: the law
    # really runs a donating jitted step (XLA's own check).
    from gradxform.testing import _law_checks

    original = _law_checks._shared_buffer
    _law_checks._shared_buffer = lambda params, state: None
    try:
        with pytest.raises(AssertionError, match="(?s)law 'donation'.*donate the same buffer twice"):
            check_transformation(_one_buffer_twice(), laws=["donation"])
    finally:
        _law_checks._shared_buffer = original


def test_donation_law_passes_the_fixed_rule():
    # L-BFGS's memories now have a buffer each (every registry entry is checked in
    # tests/test_registry_laws.py; this is the rule the law was written for).
    check_transformation(gx.scale_by_lbfgs(memory_size=3), {"w": jnp.ones(3)}, steps=2, laws=["donation"])
