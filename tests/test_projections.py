"""gx.projections: each projection is the nearest feasible point, and matches optax where optax is right.

Optimality is checked from the definition, in float64 NumPy:

* convex polytopes (simplex, l1 ball, box): the variational inequality
  :math:`\\langle x - y, z - y \\rangle \\le 0` at every vertex :math:`z`, which
  holds for all of the polytope iff :math:`y` is the projection;
* smooth sets (l2 ball, hyperplane, halfspace, line): the KKT conditions;
* the two (non-convex) spheres: no random point of the sphere is closer.
"""

from __future__ import annotations

import inspect
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx
import gradxform.projections  # until gradxform/__init__ imports it

P = gx.projections
NAMES = sorted(n for n in dir(optax.projections) if n.startswith("projection_"))


def tree_of(vec, dtype=jnp.float32):
    """A dict/list tree holding the elements of `vec` (length 7)."""
    vec = np.asarray(vec)
    return {"a": jnp.asarray(vec[:4].reshape(2, 2)).astype(dtype), "b": [jnp.asarray(vec[4:]).astype(dtype)]}


def flat(tree) -> np.ndarray:
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree_util.tree_leaves(tree)])


def points(seed: int, n: int = 6, dim: int = 7, spread: float = 2.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    pts = [rng.normal(size=dim) * spread for _ in range(n)]
    pts.append(rng.normal(size=dim) * 0.05)  # inside the unit balls
    pts.append(np.r_[3.0, 0.0, -1.0, 0.0, 0.5, 0.5, 0.0])  # zeros and ties
    return pts


def vi_holds(x, y, vertices, tol=1e-5) -> bool:
    """<x - y, z - y> <= tol |x - y| for every vertex z: y is the projection onto their hull."""
    r = x - y
    return all(np.dot(r, z - y) <= tol * (1 + np.linalg.norm(r)) for z in vertices)


def signed_vertices(dim, s):
    eye = np.eye(dim) * s
    return list(eye) + list(-eye)


# --------------------------------------------------------------------------- names


def test_names_and_signatures_match_optax():
    assert P.__all__ == NAMES
    for name in NAMES:
        ours = inspect.signature(getattr(P, name)).parameters.values()
        theirs = inspect.signature(getattr(optax.projections, name)).parameters.values()
        assert [(p.name, p.kind, p.default) for p in ours] == [(p.name, p.kind, p.default) for p in theirs]


# --------------------------------------------------------------------------- definitions


@pytest.mark.parametrize("s", [1.0, 2.5, 0.0])
def test_simplex_is_the_nearest_point_of_the_simplex(s):
    for x in points(0):
        y = flat(P.projection_simplex(tree_of(x), s))
        assert np.all(y >= 0) and abs(y.sum() - s) <= 1e-5 * (1 + s)
        assert vi_holds(x, y, list(np.eye(7) * s))


@pytest.mark.parametrize("s", [1.0, 2.5, 0.0])
def test_l1_ball_is_the_nearest_point_of_the_ball(s):
    for x in points(1):
        y = flat(P.projection_l1_ball(tree_of(x), s))
        assert np.abs(y).sum() <= s * (1 + 1e-5) + 1e-6
        assert vi_holds(x, y, signed_vertices(7, s))
        if np.abs(x).sum() <= s:
            np.testing.assert_allclose(y, x, rtol=1e-6)


@pytest.mark.parametrize("s", [1.0, 2.5])
def test_l2_ball_satisfies_kkt(s):
    for x in points(2):
        y = flat(P.projection_l2_ball(tree_of(x), s))
        ny, nx = np.linalg.norm(y), np.linalg.norm(x)
        assert ny <= s * (1 + 1e-6)
        if nx <= s:
            np.testing.assert_allclose(y, x, rtol=1e-6)
        else:  # x - y = lam * y with lam >= 0 and |y| = s
            np.testing.assert_allclose(ny, s, rtol=1e-6)
            np.testing.assert_allclose(x - y, (nx / s - 1) * y, rtol=1e-5, atol=1e-6)


def test_box_hypercube_linf_and_orthant_are_the_nearest_points():
    lower, upper = np.linspace(-1, 0, 7), np.linspace(0.1, 2, 7)
    for x in points(3):
        cases = [
            (P.projection_box(tree_of(x), tree_of(lower), tree_of(upper)), lower, upper),
            (P.projection_hypercube(tree_of(x), 0.7), np.zeros(7), np.full(7, 0.7)),
            (P.projection_hypercube(tree_of(x), tree_of(upper)), np.zeros(7), upper),
            (P.projection_linf_ball(tree_of(x), 1.5), np.full(7, -1.5), np.full(7, 1.5)),
            (P.projection_non_negative(tree_of(x)), np.zeros(7), np.full(7, np.inf)),
        ]
        for got, lo, hi in cases:
            y = flat(got)
            assert np.all(y >= lo - 1e-7) and np.all(y <= hi + 1e-7)
            finite_hi = np.where(np.isinf(hi), np.maximum(x, lo) + 1, hi)
            vertices = [np.where(mask, finite_hi, lo) for mask in itertools.product([0, 1], repeat=7)]
            assert vi_holds(x, y, vertices)


def test_hyperplane_halfspace_and_vector_satisfy_kkt():
    rng = np.random.default_rng(4)
    for x in points(5):
        a, b = rng.normal(size=7), float(rng.normal())
        ta = tree_of(a)
        y = flat(P.projection_hyperplane(tree_of(x), ta, b))
        np.testing.assert_allclose(np.dot(a, y), b, atol=1e-5)
        lam = np.dot(a, x - y) / np.dot(a, a)
        np.testing.assert_allclose(x - y, lam * a, atol=1e-5)
        y = flat(P.projection_halfspace(tree_of(x), ta, b))
        assert np.dot(a, y) <= b + 1e-5
        lam = np.dot(a, x - y) / np.dot(a, a)
        assert lam >= -1e-6 and abs(lam * (np.dot(a, y) - b)) <= 1e-5
        np.testing.assert_allclose(x - y, lam * a, atol=1e-5)
        y = flat(P.projection_vector(tree_of(x), ta))
        np.testing.assert_allclose(np.dot(x - y, a), 0, atol=1e-5)  # the residual is orthogonal to a
        np.testing.assert_allclose(y, np.dot(x, a) / np.dot(a, a) * a, rtol=1e-5, atol=1e-6)


def _closest_on_sphere_sampled(x, sample):
    return np.min(np.linalg.norm(sample - x, axis=1))


@pytest.mark.parametrize("s", [1.0, 2.0])
def test_spheres_are_nearer_than_any_sampled_point(s):
    rng = np.random.default_rng(6)
    dim = 7
    directions = rng.normal(size=(20000, dim))
    on_l2 = s * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    on_l1 = s * directions / np.abs(directions).sum(axis=1, keepdims=True)
    for x in points(7) + [np.zeros(dim)]:
        y = flat(P.projection_l2_sphere(tree_of(x), s))
        np.testing.assert_allclose(np.linalg.norm(y), s, rtol=1e-6)
        assert np.linalg.norm(x - y) <= _closest_on_sphere_sampled(x, on_l2) + 1e-6
        y = flat(P.projection_l1_sphere(tree_of(x), s))
        np.testing.assert_allclose(np.abs(y).sum(), s, rtol=1e-6)
        # Also against the sphere's vertices and the nearby points of random perturbations of y.
        near = y + 0.05 * rng.normal(size=(2000, dim))
        near = s * near / np.abs(near).sum(axis=1, keepdims=True)
        sample = np.concatenate([on_l1, near, np.array(signed_vertices(dim, s))])
        assert np.linalg.norm(x - y) <= _closest_on_sphere_sampled(x, sample) + 1e-6


def _broken_simplex(tree, scale=1.0):
    """A deliberately broken projection: the threshold from one element too many (off by one)."""
    v = flat(tree)
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - scale
    rho = min(int(np.sum(u - css / np.arange(1, v.size + 1) > 0)) + 1, v.size)
    return np.maximum(v - css[rho - 1] / rho, 0)


def test_optimality_check_catches_a_broken_simplex_projection():
    caught = 0
    for x in points(8):
        y = _broken_simplex(tree_of(x))
        feasible = np.all(y >= 0) and abs(y.sum() - 1) <= 1e-5
        caught += (not feasible) or (not vi_holds(x, y, list(np.eye(7))))
    assert caught >= len(points(8)) - 2


# --------------------------------------------------------------------------- optax parity and dtypes


def _std(fn, *args):
    with jax.numpy_dtype_promotion("standard"):
        return fn(*args)


def test_parity_with_optax():
    rng = np.random.default_rng(9)
    for x in points(10, n=2)[:-1]:  # optax's l1 sphere leaves zeros off the sphere (last point)
        t, a = tree_of(x), tree_of(rng.normal(size=7))
        for name, args in [
            ("projection_simplex", (1.5,)),
            ("projection_l1_ball", (1.5,)),
            ("projection_l1_sphere", (1.5,)),
            ("projection_l2_ball", (1.5,)),
            ("projection_l2_sphere", (1.5,)),
            ("projection_linf_ball", (0.5,)),
            ("projection_non_negative", ()),
        ]:
            ours, theirs = getattr(P, name)(t, *args), _std(getattr(optax.projections, name), t, *args)
            assert jax.tree_util.tree_structure(ours) == jax.tree_util.tree_structure(theirs)
            np.testing.assert_allclose(flat(ours), flat(theirs), rtol=1e-5, atol=1e-6, err_msg=name)
        for name, args in [("projection_hyperplane", (a, 0.3)), ("projection_halfspace", (a, -0.3)),
                           ("projection_vector", (a,))]:
            ours, theirs = getattr(P, name)(t, *args), _std(getattr(optax.projections, name), t, *args)
            np.testing.assert_allclose(flat(ours), flat(theirs), rtol=1e-5, atol=1e-6, err_msg=name)
        arr = jnp.asarray(x, jnp.float32)  # optax's box needs a single array (its dict case fails)
        np.testing.assert_allclose(P.projection_box(arr, -0.5, 0.5), optax.projections.projection_box(arr, -0.5, 0.5))
        np.testing.assert_allclose(P.projection_hypercube(arr), optax.projections.projection_hypercube(arr))


def test_leaf_dtypes_are_kept_and_low_precision_is_accurate():
    x = np.linspace(-2, 3, 7)
    a = np.linspace(1, 2, 7)
    for name, args in [
        ("projection_simplex", ()),
        ("projection_l1_ball", ()),
        ("projection_l1_sphere", ()),
        ("projection_l2_ball", ()),
        ("projection_l2_sphere", ()),
        ("projection_linf_ball", ()),
        ("projection_hypercube", ()),
        ("projection_non_negative", ()),
        ("projection_halfspace", (tree_of(a, jnp.bfloat16), 0.1)),
        ("projection_hyperplane", (tree_of(a, jnp.bfloat16), 0.1)),
        ("projection_vector", (tree_of(a, jnp.bfloat16),)),
    ]:
        low = getattr(P, name)(tree_of(x, jnp.bfloat16), *args)
        assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree_util.tree_leaves(low)), name
        args32 = tuple(tree_of(a) if isinstance(v, dict) else v for v in args)
        want = flat(getattr(P, name)(tree_of(flat(tree_of(x, jnp.bfloat16))), *args32))
        np.testing.assert_allclose(flat(low), want, rtol=2**-7, atol=2**-7, err_msg=name)
    ints = P.projection_l2_ball({"w": jnp.array([3, 4], jnp.int32)})
    assert ints["w"].dtype == jnp.float32
    np.testing.assert_allclose(ints["w"], [0.6, 0.8], rtol=1e-6)


def test_where_optax_is_wrong():
    t = {"w": jnp.array([2.5, -3.2]), "b": jnp.array(0.5)}
    zero = {"w": jnp.zeros(3)}
    # A radius of 0: the only feasible point is 0 (optax: NaN).
    assert np.all(flat(P.projection_l1_ball(t, 0.0)) == 0) and np.all(flat(P.projection_simplex(t, 0.0)) == 0)
    assert np.isnan(flat(_std(optax.projections.projection_l1_ball, t, 0.0))).all()
    # The projection of 0 onto a sphere is on the sphere (optax: NaN for l2, 0 for l1).
    np.testing.assert_allclose(np.linalg.norm(flat(P.projection_l2_sphere(zero))), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.abs(flat(P.projection_l1_sphere(zero))).sum(), 1.0, rtol=1e-6)
    # Scalar bounds on a dict tree (optax raises).
    assert flat(P.projection_hypercube(t)).tolist() == [0.5, 1.0, 0.0]
    with pytest.raises(ValueError):
        _std(optax.projections.projection_hypercube, t)
    # A bfloat16 l1 ball (optax raises in lax.cond).
    assert P.projection_l1_ball(jax.tree_util.tree_map(lambda v: v.astype(jnp.bfloat16), t))["w"].dtype == jnp.bfloat16


def test_negative_radius_is_rejected_and_traced_radius_works():
    for name in ["projection_simplex", "projection_l1_ball", "projection_l1_sphere", "projection_l2_ball",
                 "projection_l2_sphere", "projection_linf_ball", "projection_hypercube"]:
        with pytest.raises(ValueError, match="scale"):
            getattr(P, name)({"w": jnp.ones(2)}, -1.0)
    t = tree_of(np.linspace(-2, 3, 7))
    for name in ["projection_simplex", "projection_l1_ball", "projection_l2_ball", "projection_linf_ball"]:
        fn = getattr(P, name)
        np.testing.assert_allclose(flat(jax.jit(fn)(t, 1.5)), flat(fn(t, 1.5)), rtol=1e-6)


def test_mismatched_normal_is_a_key_path_error():
    with pytest.raises(gx.TreeMismatchError, match="a"):
        P.projection_hyperplane({"w": jnp.ones(2)}, {"v": jnp.ones(2)}, 1.0)


def test_none_leaves_stay_none():
    t = {"w": jnp.array([2.0, -1.0]), "skip": None}
    for name in ["projection_simplex", "projection_l1_ball", "projection_l2_ball", "projection_non_negative",
                 "projection_linf_ball"]:
        assert getattr(P, name)(t)["skip"] is None
