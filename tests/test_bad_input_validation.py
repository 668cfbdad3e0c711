"""Bad hyperparameters give a clear error, never a silent wrong result (issue 13, items 1 and 8).

The rules live in the declaration machinery (`gradxform._hyper`), so every declared
factory gets them and `tests/test_registry.py` runs their derived invalid cases
(`_hyper.invalid_cases`) over the whole registry. Here: the cases of the issue, the
values that must stay valid, the learning rate's shape check at update time, and
mutants (a validator without the bool rejection, or without the float32 rounding
check) that the derived cases catch.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from gradxform import _hyper


def _raises(fn, *words):
    with pytest.raises(ValueError) as info:
        fn()
    message = str(info.value)
    for word in words:
        assert word in message, message
    return message


# --------------------------------------------------------------------------- bools


@pytest.mark.parametrize("flag", [True, False, np.bool_(True), jnp.array(True)], ids=repr)
@pytest.mark.parametrize("arg", ["learning_rate", "b1", "eps"])
def test_a_bool_is_not_a_number(arg, flag):
    kwargs = {"learning_rate": 1e-3, arg: flag}
    _raises(lambda: gx.adam(**kwargs), f"adam: `{arg}`", "not a bool")


def test_a_bool_is_not_a_count():
    _raises(lambda: gx.MultiSteps(gx.sgd(0.1), every_k_schedule=True), "`every_k_schedule`", "bool")
    _raises(lambda: gx.training.early_stopping(patience=True), "`patience`")


# --------------------------------------------------------------------------- float32 rounding


def test_a_value_rounding_onto_an_excluded_bound_in_float32_is_rejected():
    message = _raises(lambda: gx.adam(1e-3, b2=1 - 1e-10), "`b2`", "rounds to 1.0 in float32", "0.9999999999")
    assert "[0, 1)" in message
    # The same as a float64 NumPy scalar and as a float64 array of shape ().
    _raises(lambda: gx.adam(1e-3, b2=np.float64(1 - 1e-10)), "`b2`", "rounds to 1.0")
    _raises(lambda: gx.adam(1e-3, b1=np.asarray(1 - 1e-10)), "`b1`", "rounds to 1.0")
    # A lower excluded bound: clip_by_global_norm's max_norm > 0; 1e-50 is 0.0 in float32.
    _raises(lambda: gx.clip_by_global_norm(1e-50), "`max_norm`", "rounds to 0.0 in float32")


def test_the_largest_float32_below_an_excluded_bound_is_accepted():
    below_one = float(np.nextafter(np.float32(1), np.float32(0)))  # 1 - 2**-24
    assert below_one < 1 and float(np.float32(below_one)) < 1
    gx.adam(1e-3, b1=below_one, b2=below_one)
    smallest = float(np.nextafter(np.float32(0), np.float32(1)))  # the smallest positive float32
    gx.clip_by_global_norm(smallest)


def test_rounding_cases_derived_from_the_declaration():
    # For [0, 1): one value inside in float64, 1.0 in float32. For (0, inf]: one that is 0.0 in float32.
    (top,) = _hyper._rounding_onto_excluded_bounds(_hyper.DECAY)
    assert top < 1 and float(np.float32(top)) == 1.0
    (low,) = _hyper._rounding_onto_excluded_bounds(_hyper.POSITIVE)
    assert low > 0 and float(np.float32(low)) == 0.0
    assert _hyper._rounding_onto_excluded_bounds(_hyper.LR) == []  # inclusive bounds: nothing to round onto


# --------------------------------------------------------------------------- None


def test_none_is_no_learning_rate_where_the_factory_has_no_none_default():
    message = _raises(lambda: gx.adam(None), "adam: `learning_rate`", "not None", "ascent")
    assert "got learning_rate=None" in message
    _raises(lambda: gx.sgd(None), "`learning_rate`")
    _raises(lambda: gx.adam(1e-3, b1=None), "`b1`", "not None")


def test_none_keeps_working_where_it_is_the_default():
    # optax's adadelta(learning_rate=None): gradxform's rule descends (the update opposes g).
    for tx in (gx.adadelta(), gx.adadelta(None)):
        g = jnp.ones(3)
        u, _ = tx.update(g, tx.init(jnp.zeros(3)))
        assert bool(jnp.all(u < 0)), u
    gx.scale_by_learning_rate(None)  # the identity, as in optax
    gx.sgd(0.1, momentum=None)  # declared optional


# --------------------------------------------------------------------------- not numbers


@pytest.mark.parametrize(
    "build",
    [
        lambda: gx.adam("0.1"),
        lambda: gx.adam([0.1]),
        lambda: gx.adam((0.1,)),
        lambda: gx.adam({"lr": 0.1}),
        lambda: gx.adam(0.1 + 0j),
        lambda: gx.inject_hyperparams(gx.adam)(learning_rate="0.1"),
        lambda: gx.inject_hyperparams(gx.adam)(learning_rate=[0.1]),
    ],
    ids=["str", "list", "tuple", "dict", "complex", "inject-str", "inject-list"],
)
def test_a_str_or_a_container_is_not_a_learning_rate(build):
    message = _raises(build, "`learning_rate`", "must be a number, an array of numbers or a schedule")
    assert "got learning_rate=" in message


def test_a_str_is_not_a_count():
    _raises(lambda: gx.MultiSteps(gx.sgd(0.1), every_k_schedule="2"), "`every_k_schedule`", "(a str)")


# --------------------------------------------------------------------------- schedules


def test_a_schedule_where_the_argument_takes_none_names_those_that_do():
    message = _raises(lambda: gx.adam(1e-3, b1=lambda c: 0.9), "adam: `b1`", "not a schedule")
    assert "adam takes schedules for `learning_rate`" in message
    message = _raises(lambda: gx.adamw(1e-3, b2=lambda c: 0.9), "`b2`")
    assert "`learning_rate`, `weight_decay`" in message
    _raises(lambda: gx.clip_by_global_norm(lambda c: 1.0), "`max_norm`", "clip_by_global_norm takes no schedules")


def test_schedules_stay_valid_where_taken():
    schedule = gx.schedules.linear_schedule(0.1, 0.01, 10)
    gx.adam(schedule)
    gx.adamw(1e-3, weight_decay=lambda count: 1e-4)  # optax's adamw takes a weight-decay schedule too
    gx.MultiSteps(gx.sgd(0.1), every_k_schedule=lambda count: 2)  # annotated Union[int, Callable]


def test_which_arguments_take_schedules_is_declared_on_the_factory():
    assert gx.adam.takes_schedules == {"learning_rate"}
    assert gx.adamw.takes_schedules == {"learning_rate", "weight_decay"}
    assert gx.MultiSteps.takes_schedules == {"every_k_schedule"}
    assert "learning_rate" in gx.adadelta.accepts_none and "learning_rate" not in gx.adam.accepts_none


# --------------------------------------------------------------------------- inject_hyperparams


def test_inject_hyperparams_checks_what_it_passes_on():
    inject = gx.inject_hyperparams(gx.adam)
    _raises(lambda: inject(learning_rate=None), "`learning_rate`", "not None")
    _raises(lambda: inject(1e-3, b1=True), "`b1`", "bool")
    _raises(lambda: inject(1e-3, b2=1 - 1e-10), "`b2`", "rounds to 1.0")
    # Every number takes a schedule there; its value at step 0 is range-checked.
    inject(1e-3, b1=lambda count: 0.9)
    _raises(lambda: inject(1e-3, b1=lambda count: 1.0), "`b1`")
    assert {"b1", "b2", "eps", "learning_rate"} <= inject.takes_schedules
    stateful = gx.inject_stateful_hyperparams(gx.adam)
    _raises(lambda: stateful(1e-3, b1=True), "`b1`", "bool")
    stateful(1e-3, b1=lambda count: 0.9)


def test_injected_values_change_between_steps_without_a_check_or_a_retrace():
    tx = gx.inject_hyperparams(gx.adam)(learning_rate=0.1)
    params = jnp.ones(3)
    state = tx.init(params)
    step = jax.jit(tx.update)
    step(params, state, params)
    state = gx.set_hyperparams(state, b1=0.5)
    step(params, state, params)
    assert step._cache_size() == 1


# --------------------------------------------------------------------------- values that stay valid


@pytest.mark.parametrize(
    "lr",
    [0.1, 1, -0.1, 0.0, np.float64(0.1), np.float32(0.1), np.int32(1), jnp.float32(0.1), jnp.asarray(0.1, jnp.bfloat16),
     np.asarray(0.1), jnp.array([0.1, 0.2, 0.3])],
    ids=repr,
)
def test_numbers_and_arrays_are_valid_learning_rates(lr):
    gx.adam(lr)  # validated at construction
    gx.adam(0.1, b1=lr if np.ndim(lr) == 0 and 0 <= float(lr) < 1 else 0.9)


def test_an_array_learning_rate_runs():
    tx = gx.adam(jnp.array([0.1, 0.2, 0.3]))
    params = jnp.ones(3)
    u, _ = tx.update(params, tx.init(params), params)
    assert u.shape == (3,)


def test_traced_values_pass_unchecked():
    params = jnp.ones(3)

    @jax.jit
    def step(lr, b1):
        tx = gx.adam(lr, b1=b1)
        return tx.update(params, tx.init(params), params)[0]

    assert step(jnp.float32(0.1), jnp.float32(0.9)).shape == (3,)


# --------------------------------------------------------------------------- learning-rate arrays


def _tree():
    return {"w": jnp.ones((2, 3)), "b": jnp.ones((3,))}


def test_a_rate_array_that_broadcasts_scales_each_element():
    lr = np.array([0.1, 0.2, 0.3])
    tx = gx.sgd(jnp.asarray(lr, jnp.float32))
    grads = {"w": jnp.asarray(np.arange(6.0).reshape(2, 3), jnp.float32), "b": jnp.asarray([1.0, -2.0, 3.0])}
    u, _ = jax.jit(tx.update)(grads, tx.init(grads))
    np.testing.assert_allclose(u["w"], -lr * np.arange(6.0).reshape(2, 3), rtol=1e-6)
    np.testing.assert_allclose(u["b"], -lr * np.array([1.0, -2.0, 3.0]), rtol=1e-6)


@pytest.mark.parametrize("shape", [(2,), (2, 1), (4, 3)])
@pytest.mark.parametrize("jit", [False, True])
def test_a_rate_array_that_does_not_broadcast_names_the_leaf_and_both_shapes(shape, jit):
    tx = gx.sgd(jnp.full(shape, 0.1))
    params = _tree()
    update = jax.jit(tx.update) if jit else tx.update
    message = _raises(lambda: update(params, tx.init(params), params), "`learning_rate`", f"of shape {shape}")
    # (2,) and (4, 3) do not fit `b` (3,) nor `w` (2, 3); (2, 1) fits `w` but widens `b` to (2, 3).
    assert "['b'] of shape (3,)" in message or "['w'] of shape (2, 3)" in message, message


def test_a_schedule_returning_an_array_that_does_not_broadcast_is_named():
    tx = gx.sgd(lambda count: jnp.full((2,), 0.1))
    params = jnp.ones(3)
    _raises(lambda: tx.update(params, tx.init(params)), "scale_by_schedule", "(2,)", "(3,)")


def _lr_entries():
    from gradxform.testing.registry import REGISTRY  # noqa: PLC0415

    return [e for e in REGISTRY if not e.slow and not e.random and "learning_rate" in _hyper.declared(e.factory)]


def _scalar_lr(entry):
    spec = _hyper.declared(entry.factory).get("learning_rate")
    return spec is not None and spec.scalar


@pytest.mark.parametrize("entry", [e for e in _lr_entries() if _scalar_lr(e)], ids=lambda e: e.name)
def test_a_rule_that_uses_the_rate_as_one_number_rejects_an_array_when_built(entry):
    """Rules whose learning rate enters scalar sums or their state (D-Adaptation, Prodigy, Momo,
    MADGRAD, schedule-free, Fromage, Rprop's initial step, optimistic Adam) take one number."""
    kwargs = {**entry.kwargs, "learning_rate": jnp.full((3,), 0.1)}
    _raises(lambda: entry.factory(**kwargs), "`learning_rate`", "not an array of shape (3,)", "uses it as one number")
    entry.factory(**{**entry.kwargs, "learning_rate": jnp.asarray(0.1)})  # a 0-d array is a number


def _lr_sample():
    from _entries import CI_SAMPLE  # noqa: PLC0415

    in_ci = CI_SAMPLE | {"sgd", "adam"}  # one entry per update path, and the two everyday aliases
    return [
        pytest.param(e, id=e.name, marks=[] if e.name in in_ci else [pytest.mark.slow])
        for e in _lr_entries() if not _scalar_lr(e)
    ]


@pytest.mark.parametrize("entry", _lr_sample())
def test_every_rate_array_that_fits_no_leaf_is_named(entry):
    """Across the registry, an array learning rate that broadcasts to no leaf raises a ValueError
    naming `learning_rate` (at update: the leaves' shapes are known only then), never a bare
    broadcasting error from deep inside the rule."""
    tx = entry.factory(**{**entry.kwargs, "learning_rate": jnp.full((5,), 0.1)})
    params = _tree()
    with jax.numpy_dtype_promotion("standard"):
        extra = dict(entry.extra_args_fn(1, params, params)) if entry.extra_args_fn else {}
        _raises(lambda: tx.update(params, tx.init(params), params, **extra), "`learning_rate`", "(5,)")


def test_the_shape_check_is_free_at_run_time():
    # Shapes are static: the jitted step with a checked rate array is the same program as
    # one scaling by the same array with no check at all.
    lr = jnp.array([0.1, 0.2, 0.3])
    grads = _tree()
    tx = gx.sgd(lr)
    checked = jax.make_jaxpr(tx.update)(grads, tx.init(grads))
    plain = jax.make_jaxpr(lambda g: jax.tree_util.tree_map(lambda x: x * (-lr).astype(x.dtype), g))(grads)
    count = lambda jaxpr: sum(1 for e in jaxpr.eqns if e.primitive.name == "mul")  # noqa: E731
    assert count(checked.jaxpr) <= count(plain.jaxpr)


# --------------------------------------------------------------------------- the derived cases, and mutants


def _let_through(factory, cases_from=None, **required):
    """The invalid cases derived from `cases_from` (default `factory`) that `factory` does not
    reject with a ValueError naming the argument."""
    missed = []
    for override, arg in _hyper.invalid_cases(cases_from or factory):
        try:
            factory(**{**required, **override})
        except ValueError as e:
            if f"`{arg}`" not in str(e):
                missed.append((override, "wrong message: " + str(e)))
        else:
            missed.append((override, "accepted"))
    return missed


def _kinds(factory):
    kinds = set()
    for override, _ in _hyper.invalid_cases(factory):
        v = next(iter(override.values()))
        kinds.add("nan" if isinstance(v, float) and math.isnan(v) else type(v).__name__)
    return kinds


def test_the_derived_cases_cover_every_kind_of_bad_value():
    assert {"bool", "str", "list", "NoneType", "function", "float", "nan"} <= _kinds(gx.adam)
    b2_cases = [o["b2"] for o, a in _hyper.invalid_cases(gx.adam) if a == "b2" and type(o["b2"]) is float]
    assert any(v < 1 and float(np.float32(v)) == 1.0 for v in b2_cases)  # rounds onto the bound


def test_the_derived_cases_of_adam_and_multisteps_all_raise():
    assert _let_through(gx.adam, learning_rate=0.1) == []
    assert _let_through(gx.MultiSteps, opt=gx.sgd(0.1)) == []


def test_a_validator_without_the_bool_rejection_lets_a_derived_case_through(monkeypatch):
    monkeypatch.setattr(_hyper, "_is_bool", lambda value: False)
    missed = _let_through(gx.adam, learning_rate=0.1)
    assert any(o.get("learning_rate") is True or o.get("eps") is True for o, _ in missed), missed


def test_a_validator_without_the_float32_check_lets_a_derived_case_through(monkeypatch):
    monkeypatch.setattr(_hyper, "_check_float32", lambda *args: None)
    missed = _let_through(gx.adam, learning_rate=0.1)
    assert any("b1" in o or "b2" in o for o, _ in missed), missed
    assert all(isinstance(next(iter(o.values())), float) for o, _ in missed), missed


def test_a_declaration_wrongly_taking_a_schedule_lets_a_derived_case_through():
    # The same rule declared twice: rightly (b1 takes no schedule) and with a broken row
    # (b1 said to take one). The rule itself does no checking; the cases derived from the
    # right declaration catch the broken one.
    def rule(learning_rate, b1=0.9):
        return learning_rate, b1

    good = _hyper.declare(learning_rate=_hyper.LR, b1=_hyper.DECAY)(rule)
    broken = _hyper.declare(learning_rate=_hyper.LR, b1=_hyper.DECAY._replace(schedule=True))(rule)
    assert _let_through(good, learning_rate=0.1) == []
    missed = _let_through(broken, cases_from=good, learning_rate=0.1)
    assert [o for o, _ in missed] == [{"b1": _hyper._constant_schedule}], missed


def test_a_wrong_kind_of_value_is_both_a_value_error_and_a_type_error():
    # gradxform raises ValueError for impossible hyperparameters; Python code catching
    # TypeError for a wrong type (a str, a schedule where none is taken) catches it too.
    for build in (lambda: gx.adam("0.1"), lambda: gx.adam(1e-3, b1=lambda c: 0.9), lambda: gx.adam(None)):
        with pytest.raises(TypeError):
            build()
        with pytest.raises(ValueError):
            build()
    with pytest.raises(ValueError) as info:  # out of range: a ValueError only
        gx.adam(1e-3, b1=1.5)
    assert not isinstance(info.value, TypeError)
