"""gx.experimental.aggregating: parity with optax.experimental.aggregating and NumPy references.

The references are the textbook definitions in float64 over all the examples of a
window (mean; sum of squared deviations from the window's mean; unbiased variance
EMA), not the incremental forms: Welford (1962) and Chan, Golub and LeVeque (1979)
are checked against what they compute.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from gradxform.experimental import aggregating as ga

optax = pytest.importorskip("optax")
from optax.experimental import aggregating as oa

R = gx.testing.reference.Reference

B = 3  # examples per microbatch
PARAMS = {"w": np.zeros((2, 3), np.float32), "b": np.zeros((), np.float32)}


def _per_elt_grads(steps: int, seed: int = 0, offset: float = 1.0, b: int = B) -> list:
    rng = np.random.default_rng(seed)
    return [
        {
            k: (rng.normal(size=(b,) + v.shape) * 2 + offset).astype(np.float32)
            for k, v in PARAMS.items()
        }
        for _ in range(steps)
    ]


def _close(a: Any, b: Any, rtol: float = 1e-5, atol: float = 1e-7) -> None:
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta.num_leaves == tb.num_leaves, (
        ta,
        tb,
    )  # the classes differ (gradxform's vs optax's)
    for x, y in zip(la, lb):
        np.testing.assert_allclose(
            np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=rtol, atol=atol
        )


def _parity(ours, theirs, grads, params=PARAMS):
    """Runs both step by step (ours jitted once) and compares updates and states at every step."""
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    _close(s_ours, s_theirs)
    update, update_theirs = jax.jit(ours.update), jax.jit(theirs.update)
    for g in grads:
        u_ours, s_ours = update(g, s_ours, params)
        with jax.numpy_dtype_promotion(
            "standard"
        ):  # optax mixes Python floats and int32 counts
            u_theirs, s_theirs = update_theirs(g, s_theirs, params)
        _close(u_ours, u_theirs)
        _close(s_ours, s_theirs)


# ------------------------------------------------------------------------------ optax parity


@pytest.mark.parametrize("k", [pytest.param(1, marks=pytest.mark.slow), 3])
def test_optax_parity_averaging_25_steps(k):
    grads = _per_elt_grads(25)
    means = [jax.tree_util.tree_map(lambda x: x.mean(0), g) for g in grads]
    _parity(ga.accumulate_avg_updates(k), oa.accumulate_avg_updates(k), means)
    _parity(
        ga.average_incrementally_updates(0, k),
        oa.average_incrementally_updates(0, k),
        grads,
    )
    _parity(
        ga.average_incrementally_updates(None, k),
        oa.average_incrementally_updates(None, k),
        means,
    )


@pytest.mark.parametrize("k", [pytest.param(1, marks=pytest.mark.slow), 3])
def test_optax_parity_mean_variance_with_adam_25_steps(k):
    _parity(
        ga.add_mean_variance_to_opt(gx.adam(0.1), 0.8, 0, k),
        oa.add_mean_variance_to_opt(optax.adam(0.1), 0.8, 0, k),
        _per_elt_grads(25, seed=1),
    )


def test_optax_parity_process_with_preprocessor_and_state_25_steps():
    clip = lambda g, _: jax.tree_util.tree_map(lambda x: jnp.clip(x, -1.0, 1.0), g)
    ours = ga.process(
        gx.stateless(clip),
        ga.average_incrementally_updates(0, 2),
        gx.chain(gx.add_decayed_weights(0.1), gx.adam(0.1)),
    )
    theirs = oa.process(
        optax.stateless(clip),
        oa.average_incrementally_updates(0, 2),
        optax.chain(optax.add_decayed_weights(0.1), optax.adam(0.1)),
    )
    params = {k: v + 1 for k, v in PARAMS.items()}
    _parity(ours, theirs, _per_elt_grads(25, seed=2), params=params)
    assert isinstance(ours, ga.Aggregator)
    gt = ga.process(gx.identity(), ga.accumulate_avg_updates(2), gx.sgd(0.1))
    assert isinstance(gt, gx.GradientTransformationExtraArgs)


def test_optax_parity_average_per_element_updates_over_two_axes():
    g = {"w": np.arange(24.0, dtype=np.float32).reshape(2, 3, 4)}
    ours, _ = ga.average_per_element_updates((0, 1)).update(g, gx.EmptyState())
    theirs, _ = oa.average_per_element_updates((0, 1)).update(g, optax.EmptyState())
    _close(ours, theirs)
    assert (
        ga.get_batch_size_from_per_elt_updates(g, (0, 1))
        == oa.get_batch_size_from_per_elt_updates(g, (0, 1))
        == 6
    )


def test_tracking_ema_and_debiasing_match_optax():
    params = {"w": np.zeros(3, np.float32)}
    ours, theirs = (
        ga.track_per_element_mean_and_variance_with_ema(0.7),
        oa.track_per_element_mean_and_variance_with_ema(0.7),
    )
    so, st = ours.init(params), theirs.init(params)
    rng = np.random.default_rng(3)
    upd_ours, upd_theirs = jax.jit(ours.update), jax.jit(theirs.update)
    for t in range(25):
        m = {"w": rng.normal(size=3).astype(np.float32)}
        s = {"w": np.abs(rng.normal(size=3)).astype(np.float32) * 5}
        _, so = upd_ours(m, so, sum_sq_diff_grads=s, sample_size=jnp.asarray(6))
        with jax.numpy_dtype_promotion("standard"):
            _, st = upd_theirs(m, st, sum_sq_diff_grads=s, sample_size=jnp.asarray(6))
        _close(so, st)
        if t in (0, 24):  # the debiasing at its largest and at its smallest
            _close(
                ga.get_unbiased_mean_and_variance_ema(so),
                oa.get_unbiased_mean_and_variance_ema(st),
            )


def test_state_layout_flattens_like_optax():
    for ours, theirs in [
        (
            ga.add_mean_variance_to_opt(gx.adam(0.1), 0.9, 0, 2),
            oa.add_mean_variance_to_opt(optax.adam(0.1), 0.9, 0, 2),
        ),
        (ga.accumulate_avg_updates(2), oa.accumulate_avg_updates(2)),
        (
            ga.average_incrementally_updates(0, 2),
            oa.average_incrementally_updates(0, 2),
        ),
    ]:
        lo, lt = (
            jax.tree_util.tree_leaves(ours.init(PARAMS)),
            jax.tree_util.tree_leaves(theirs.init(PARAMS)),
        )
        assert [np.shape(x) for x in lo] == [np.shape(x) for x in lt]
    assert (
        ga.PerElementMeanAndSumSqDiffGradsState._fields
        == oa.PerElementMeanAndSumSqDiffGradsState._fields
    )
    assert (
        ga.PerElementMeanAndVarianceEMAState._fields
        == oa.PerElementMeanAndVarianceEMAState._fields
    )
    assert ga.AccumulateAvgUpdatesState._fields == oa.AccumulateAvgUpdatesState._fields
    assert ga.Aggregator._fields == oa.Aggregator._fields


def test_every_optax_name_is_present():
    import types

    theirs = {
        n
        for n in dir(oa)
        if not n.startswith("_")
        and getattr(getattr(oa, n), "__module__", "")
        in ("optax.experimental._aggregating",)
    }
    theirs |= {"AggregatedUpdates", "MaybeAxis", "PerElementUpdates"}
    assert theirs - set(ga.__all__) == set()
    assert all(not isinstance(getattr(ga, n), types.ModuleType) for n in ga.__all__)


# ----------------------------------------------------------------------- NumPy references


class _Window(NamedTuple):
    seen: list  # the float64 per-element gradients of the current window
    count: int  # EMA updates so far
    mu: Any
    v: Any


def ref_accumulate_avg_updates(k: int) -> R:
    """Welford (1962): the mean of the k microbatches' updates, emitted at the k-th (float64, direct)."""

    def init(params):
        return _Window([], 0, None, None)

    def update(g, state, params=None, **_):
        seen = state.seen + [
            jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), g)
        ]
        if len(seen) < k:
            return jax.tree_util.tree_map(np.zeros_like, seen[0]), state._replace(
                seen=seen
            )
        mean = jax.tree_util.tree_map(lambda *xs: np.mean(xs, axis=0), *seen)
        return mean, state._replace(seen=[])

    return R(init, update)


def ref_mean_and_variance(k: int, ema_decay: float, output: str) -> R:
    """Chan et al. (1979) computes, over a window of k microbatches of B examples: the mean and
    the sum of squared deviations from it; the EMA of the sample variance S / (kB - 1) (and of the
    mean), debiased by 1 - decay^t. The update is the debiased `output` ('mean' or 'variance')."""

    def init(params):
        z = jax.tree_util.tree_map(lambda p: np.zeros(np.shape(p)), params)
        return _Window([], 0, z, z)

    def update(g, state, params=None, **_):
        seen = state.seen + [
            jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), g)
        ]
        state = state._replace(seen=seen)
        if len(seen) == k:
            allx = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=0), *seen)
            mean = jax.tree_util.tree_map(lambda x: x.mean(0), allx)
            var = jax.tree_util.tree_map(
                lambda x: ((x - x.mean(0)) ** 2).sum(0) / (x.shape[0] - 1), allx
            )
            mu = jax.tree_util.tree_map(
                lambda a, m: ema_decay * a + (1 - ema_decay) * m, state.mu, mean
            )
            v = jax.tree_util.tree_map(
                lambda a, s: ema_decay * a + (1 - ema_decay) * s, state.v, var
            )
            state = _Window([], state.count + 1, mu, v)
        if state.count == 0:
            return jax.tree_util.tree_map(np.zeros_like, state.mu), state
        tree = state.mu if output == "mean" else state.v
        return jax.tree_util.tree_map(
            lambda x: x / (1 - ema_decay**state.count), tree
        ), state

    return R(init, update)


def _probe(opt_with_stats, output: str):
    """Exposes the debiased EMA that `add_mean_variance_to_opt` keeps as the update, for the reference checks."""

    def update(g, state, params=None, **extra):
        _, state = opt_with_stats.update(g, state, params, **extra)
        mean, var = ga.get_unbiased_mean_and_variance_ema(state)
        return (mean if output == "mean" else var), state

    return gx.GradientTransformation(opt_with_stats.init, update)


def _check(tx, ref, grads, steps=12, **kw):
    return gx.testing.check_against_reference(
        tx, ref, steps=steps, params=PARAMS, grads=grads, **kw
    )


@pytest.mark.parametrize("k", [1, 3])
def test_accumulate_avg_updates_matches_the_direct_mean(k):
    means = [jax.tree_util.tree_map(lambda x: x.mean(0), g) for g in _per_elt_grads(12)]
    _check(ga.accumulate_avg_updates(k), ref_accumulate_avg_updates(k), means)


@pytest.mark.parametrize("k", [pytest.param(1, marks=pytest.mark.slow), 3])
@pytest.mark.parametrize("output", ["mean", "variance"])
def test_mean_and_variance_ema_match_the_two_pass_definitions(k, output):
    grads = _per_elt_grads(
        12, seed=4, offset=50.0
    )  # an offset: a difference of sums of squares would lose digits
    tx = _probe(ga.add_mean_variance_to_opt(gx.identity(), 0.8, 0, k), output)
    _check(tx, ref_mean_and_variance(k, 0.8, output), grads)


# --------------------------------------------------------------------------------- mutants
# Each a deliberately broken copy of one subtle point; the reference check must catch it.


class _MutState(NamedTuple):
    micro_step: jax.Array
    ready: jax.Array
    mean: Any
    ssd: Any


def _mutant_mean_ssd(
    k: int, *, cross_term: bool = True, ddof_zero: bool = False, step_offset: int = 0
):
    """`get_per_element_mean_and_sum_sq_diff_grads` rewritten with one point broken."""

    def init(params):
        z = jax.tree_util.tree_map(jnp.zeros_like, params)
        return _MutState(jnp.zeros([], jnp.int32), jnp.zeros([], bool), z, z)

    def update(g, s, params=None, **_):
        j = s.micro_step + 1
        jf = j.astype(jnp.float32) + step_offset
        ready = j >= k

        def stats(x, m, q):
            mb = x.mean(0)
            delta = mb - m
            ssd = (
                q
                + ((x - mb) ** 2).sum(0)
                + (delta**2 * (B * (jf - 1) / jf) if cross_term else 0)
            )
            return m + delta / jf, ssd

        out = jax.tree_util.tree_map(stats, g, s.mean, s.ssd)
        pair = lambda x: isinstance(x, tuple) and not hasattr(x, "_fields")
        mean = jax.tree_util.tree_map(lambda p: p[0], out, is_leaf=pair)
        ssd = jax.tree_util.tree_map(lambda p: p[1], out, is_leaf=pair)
        n = B * k + (1 if ddof_zero else 0)  # dividing by n - 1 becomes dividing by B k
        emit = lambda t: jax.tree_util.tree_map(lambda x: jnp.where(ready, x, 0.0), t)
        keep = lambda t: jax.tree_util.tree_map(lambda x: jnp.where(ready, 0.0, x), t)
        aux = {"sample_size": jnp.where(ready, n, 0), "sum_sq_diff_grads": emit(ssd)}
        new = _MutState(
            jnp.where(ready, 0, j).astype(jnp.int32), ready, keep(mean), keep(ssd)
        )
        return (emit(mean), aux), new

    return ga.Aggregator(init, update)


def _mutant_probe(agg, output):
    opt = ga.process(
        gx.identity(),
        agg,
        gx.chain(ga.track_per_element_mean_and_variance_with_ema(0.8), gx.identity()),
        True,
    )
    return _probe(opt, output)


@pytest.mark.slow
def test_mutant_copy_is_faithful_when_unbroken():
    grads = _per_elt_grads(12, seed=4, offset=50.0)
    _check(
        _mutant_probe(_mutant_mean_ssd(3), "variance"),
        ref_mean_and_variance(3, 0.8, "variance"),
        grads,
    )


@pytest.mark.parametrize(
    "broken, output",
    [
        ({"cross_term": False}, "variance"),  # Chan's delta^2 n_a n_b / n term dropped
        ({"ddof_zero": True}, "variance"),  # the biased variance S / n
        ({"step_offset": 1}, "mean"),  # the incremental mean divides by j + 1
    ],
)
def test_reference_check_catches_broken_mean_and_variance(broken, output):
    grads = _per_elt_grads(12, seed=4, offset=50.0)
    with pytest.raises(AssertionError):
        _check(
            _mutant_probe(_mutant_mean_ssd(3, **broken), output),
            ref_mean_and_variance(3, 0.8, output),
            grads,
        )


def test_reference_check_catches_a_sum_instead_of_a_mean():
    means = [jax.tree_util.tree_map(lambda x: x.mean(0), g) for g in _per_elt_grads(12)]
    with pytest.raises(AssertionError):
        _check(
            gx.apply_every(3), ref_accumulate_avg_updates(3), means
        )  # sums the window


def test_process_runs_the_optimizer_only_on_complete_averages():
    # Running adam on the zero updates between emissions (a chain instead of process) is caught.
    grads = _per_elt_grads(12, seed=5)

    def ref():
        acc, adam = ref_accumulate_avg_updates(3), gx.testing.reference.adam(0.1)

        def init(params):
            return acc.init(params), adam.init(params)

        def update(g, state, params=None, **_):
            mean_g = jax.tree_util.tree_map(
                lambda x: np.asarray(x, np.float64).mean(0), g
            )
            u, sa = acc.update(mean_g, state[0])
            if sa.seen:  # not ready
                return u, (sa, state[1])
            u, sb = adam.update(u, state[1], params)
            return u, (sa, sb)

        return R(init, update)

    good = ga.process(
        gx.identity(), ga.average_incrementally_updates(0, 3), gx.adam(0.1)
    )
    _check(good, ref(), grads)
    broken = ga.process(
        gx.identity(),
        ga.average_per_element_updates(0),
        gx.chain(ga.accumulate_avg_updates(3), gx.adam(0.1)),
    )
    with pytest.raises(AssertionError):
        _check(broken, ref(), grads)


# ------------------------------------------------------------------- edge cases and policy


def test_all_zero_gradients_give_zero_updates_and_zero_variance():
    opt = ga.add_mean_variance_to_opt(gx.sgd(1.0), 0.9, 0, 2)
    state = opt.init(PARAMS)
    zeros = jax.tree_util.tree_map(
        lambda p: np.zeros((B,) + p.shape, np.float32), PARAMS
    )
    update = jax.jit(opt.update)
    for _ in range(4):
        u, state = update(zeros, state)
        assert all(np.all(np.asarray(x) == 0) for x in jax.tree_util.tree_leaves(u))
    mean, var = ga.get_unbiased_mean_and_variance_ema(state)
    assert all(
        np.all(np.asarray(x) == 0) for x in jax.tree_util.tree_leaves((mean, var))
    )


def test_bf16_params_keep_their_state_dtypes_through_lax_scan():
    params = {"w": jnp.zeros((2,), jnp.bfloat16), "s": jnp.zeros((), jnp.bfloat16)}
    opt = ga.add_mean_variance_to_opt(gx.adam(0.1), 0.9, 0, 2)
    state = opt.init(params)
    grads = {
        "w": jnp.ones((4, 2), jnp.bfloat16),
        "s": jnp.arange(4.0).astype(jnp.bfloat16),
    }

    def body(s, _):
        u, s = opt.update(grads, s, params)
        return s, u

    new_state, us = jax.lax.scan(body, state, None, length=4)
    before = [(x.dtype, np.shape(x)) for x in jax.tree_util.tree_leaves(state)]
    after = [(x.dtype, np.shape(x)) for x in jax.tree_util.tree_leaves(new_state)]
    assert before == after
    assert us["w"].dtype == jnp.bfloat16
    _, var = ga.get_unbiased_mean_and_variance_ema(new_state)
    np.testing.assert_allclose(
        np.asarray(var["s"], np.float32),
        np.var(np.arange(4.0).tolist() * 2, ddof=1),
        rtol=1e-2,
    )


@pytest.mark.slow
def test_jit_equals_eager():
    opt = ga.add_mean_variance_to_opt(gx.sgd(0.1), 0.9, 0, 2)
    grads = _per_elt_grads(2, seed=6)
    se = sj = opt.init(PARAMS)
    upd = jax.jit(opt.update)
    for g in grads:
        ue, se = opt.update(g, se, PARAMS)
        uj, sj = upd(g, sj, PARAMS)
        _close(ue, uj, rtol=1e-6)
        _close(se, sj, rtol=1e-6)


def test_mismatched_tree_is_a_key_path_error():
    agg = ga.get_per_element_mean_and_sum_sq_diff_grads(0, 2)
    state = agg.init(PARAMS)
    bad = {"w": np.zeros((B, 2, 4), np.float32), "b": np.zeros((B,), np.float32)}
    with pytest.raises(Exception, match=r"\['w'\]"):
        agg.update(bad, state)
    with pytest.raises(TypeError, match="AccumulateAvgUpdatesState"):
        ga.accumulate_avg_updates(2).update(PARAMS, state)


@pytest.mark.parametrize(
    "make, arg",
    [
        (lambda: ga.accumulate_avg_updates(0), "accumulation_steps"),
        (lambda: ga.average_incrementally_updates(0, 0), "accumulation_steps"),
        (
            lambda: ga.get_per_element_mean_and_sum_sq_diff_grads(0, -1),
            "accumulation_steps",
        ),
        (lambda: ga.track_per_element_mean_and_variance_with_ema(1.0), "ema_decay"),
        (
            lambda: ga.track_per_element_mean_and_variance_with_ema(float("nan")),
            "ema_decay",
        ),
        (lambda: ga.add_mean_variance_to_opt(gx.sgd(0.1), ema_decay=-0.1), "ema_decay"),
        (lambda: ga.average_per_element_updates("batch"), "per_elt_axis"),
        (
            lambda: ga.average_incrementally_updates([], 2),
            "average_incrementally_updates: `per_elt_axis`",
        ),
        (lambda: ga.accumulate_avg_updates(2.5), "accumulation_steps"),
        (
            lambda: ga.add_mean_variance_to_opt(gx.sgd(0.1), accumulation_steps=True),
            "accumulation_steps",
        ),
    ],
)
def test_impossible_values_raise_value_error_naming_them(make, arg):
    with pytest.raises(ValueError, match=arg):
        make()


def test_batch_size_errors():
    with pytest.raises(ValueError, match=r"\[3, 2\]"):
        ga.get_batch_size_from_per_elt_updates(
            {"a": np.zeros((3, 1)), "b": np.zeros((2,))}, 0
        )
    with pytest.raises(ValueError, match="no arrays"):
        ga.get_batch_size_from_per_elt_updates({}, 0)
    with pytest.raises(TypeError, match="sum_sq_diff_grads"):
        tx = ga.track_per_element_mean_and_variance_with_ema()
        tx.update(PARAMS, tx.init(PARAMS))
    with pytest.raises(ValueError, match="PerElementMeanAndVarianceEMAState"):
        ga.get_unbiased_mean_and_variance_ema(gx.adam(0.1).init(PARAMS))


# ------------------------------------------------------- differences from optax (regressions)


def test_difference_k1_aggregator_update_without_params():
    g = _per_elt_grads(1)[0]
    agg = ga.get_per_element_mean_and_sum_sq_diff_grads(0, 1)
    (_, aux), _ = agg.update(g, agg.init(PARAMS))  # params optional, as everywhere
    assert int(aux["sample_size"]) == B
    theirs = oa.get_per_element_mean_and_sum_sq_diff_grads(0, 1)
    with pytest.raises(TypeError):  # optax 0.2.8: update() missing 'params'
        theirs.update(g, theirs.init(PARAMS))


def test_difference_variance_of_a_single_sample_is_zero_not_inf():
    params = {"w": np.zeros(2, np.float32)}
    kw = {
        "sum_sq_diff_grads": {"w": np.zeros(2, np.float32)},
        "sample_size": jnp.asarray(1),
    }
    ours = ga.track_per_element_mean_and_variance_with_ema()
    _, s = ours.update({"w": np.ones(2, np.float32)}, ours.init(params), **kw)
    assert np.all(np.asarray(s.variance_grads_ema["w"]) == 0)
    theirs = oa.track_per_element_mean_and_variance_with_ema()
    _, st = theirs.update({"w": np.ones(2, np.float32)}, theirs.init(params), **kw)
    assert not np.all(
        np.isfinite(np.asarray(st.variance_grads_ema["w"]))
    )  # optax: 0 / 0


def test_difference_debiased_ema_before_the_first_update_is_zero_not_nan():
    params = {"w": np.zeros(2, np.float32)}
    mean, var = ga.get_unbiased_mean_and_variance_ema(
        ga.track_per_element_mean_and_variance_with_ema().init(params)
    )
    assert np.all(np.asarray(mean["w"]) == 0) and np.all(np.asarray(var["w"]) == 0)
    m_t, _ = oa.get_unbiased_mean_and_variance_ema(
        oa.track_per_element_mean_and_variance_with_ema().init(params)
    )
    assert np.all(np.isnan(np.asarray(m_t["w"])))


def test_accuracy_of_the_incremental_statistics_is_at_least_optax():
    # 100 microbatches of 4 around 1000 (std 0.1): the mean to ~4e-7, the sum of squared
    # deviations to ~3e-4 relative (the float32 rounding of each microbatch mean), as optax.
    rng = np.random.default_rng(0)
    k = 100
    data = (1000.0 + rng.normal(size=(k, 4, 8)) * 0.1).astype(np.float32)
    params = {"w": np.zeros(8, np.float32)}
    ref = data.reshape(-1, 8).astype(np.float64)
    ref_mean, ref_ssd = ref.mean(0), ((ref - ref.mean(0)) ** 2).sum(0)
    errs = {}
    for name, mod in (("gx", ga), ("optax", oa)):
        agg = mod.get_per_element_mean_and_sum_sq_diff_grads(0, k)
        s = agg.init(params)
        upd = jax.jit(agg.update)
        with jax.numpy_dtype_promotion(
            "standard"
        ):  # optax divides float32 by an int32 count
            for j in range(k):
                (m, aux), s = upd({"w": data[j]}, s)
        errs[name] = (
            np.max(np.abs(np.asarray(m["w"]) - ref_mean) / ref_mean),
            np.max(
                np.abs(np.asarray(aux["sum_sq_diff_grads"]["w"]) - ref_ssd) / ref_ssd
            ),
        )
    assert errs["gx"][0] <= 1e-6 and errs["gx"][1] <= 1e-3
    assert (
        errs["gx"][0] <= 1.25 * errs["optax"][0] + 1e-7
        and errs["gx"][1] <= 1.25 * errs["optax"][1]
    )
