"""The generic laws of gradient transformations, checked by `gradxform.testing.check_transformation`.

Every transformation, built in or written by a user, owes its callers the same
contract (see `gradxform._base`): ``init`` and ``update`` are pure, the updates
keep the incoming tree, shapes and dtypes, the state keeps the tree and dtypes
``init`` gave it, and the whole thing runs under ``jax.jit``, ``lax.cond`` and
``lax.scan``. Each law is one `Law` record: its name (the report says
``law '<name>'``), its statement, a hint for the fix, the function that checks it
(in ``gradxform.testing._law_checks``), and whether it compiles or is optional.
``LAWS`` maps each name to its record, in the order the reports list them;
``DEFAULT_LAWS`` and ``OPTIONAL_LAWS`` are derived from the records:

=======================  ============================================================
runs                     init and update run on the example without raising
updates_structure        the updates have the tree structure of the incoming updates
updates_shape            ... and their shapes
updates_dtype            ... and their dtypes
finite                   finite gradients (all-zero ones included) give finite
                         updates and a finite state
state_structure          the state keeps the tree structure ``init`` gave it
state_dtype              the state keeps the shapes and dtypes ``init`` gave it
init_pure                two calls of ``init`` on the same params give equal states
init_value_independent   ``init`` reads the params' shapes and dtypes, not their
                         values (turn off with ``init_reads_params=True``)
deterministic            ``update`` twice on the same inputs gives identical results
no_retrace               a jitted ``update`` is not traced again on the next step
                         (catches a state whose dtype or weak type drifts)
jit_consistent           ``jax.jit(update)`` agrees with ``update`` (tight tolerance)
donation                 ``jax.jit(update, donate_argnums=...)`` donating the params
                         and init's state runs for two steps (no buffer in two
                         places: XLA's "Attempt to donate the same buffer twice")
lax_cond                 ``update`` runs as a branch of ``lax.cond`` whose other
                         branch keeps the state, and agrees with ``update``
lax_scan                 ``update`` runs as the body of ``lax.scan`` over the steps
                         and agrees with the Python loop
chain_identity_left      ``chain(identity(), tx)`` behaves like ``tx``, step by step
chain_identity_right     ``chain(tx, identity())`` behaves like ``tx``, step by step
none_leaves (optional)   ``None`` leaves in the updates stay ``None``; the state
                         keeps its tree and dtypes
masked (optional)        under ``masked(tx, mask)`` masked-out leaves pass through
                         unchanged; the updates and state keep their trees
ignores_extra_args       an unknown extra keyword argument to ``update`` changes
(optional)               nothing
=======================  ============================================================

The default examples (`gradxform.testing.default_examples`) are hypothesis-free
and small (a float32 dict tree, a bfloat16 tree, a tree with a scalar and an
empty axis, a nested list / tuple / NamedTuple tree). Gradients are
deterministic (`gradxform.testing.make_grads`): step 1 is all zeros and the first
entry of every leaf with more than one entry is zero at every step (a coordinate
that never receives gradient), the rest standard normal. The eager laws run on
every example; the laws that compile run on the first ones only (``no_retrace``,
``jit_consistent`` and ``donation`` on the float32 and bfloat16 trees, sharing one
compiled update that donates the state and the params, ``lax_cond`` and
``lax_scan`` on the float32 tree: ``Law.compiles``), since a compilation costs far
more than the eager steps; the eager laws that run the whole trajectory again
(``deterministic``, ``chain_identity_left``, ``chain_identity_right``) run on the
float32 and bfloat16 trees (``Law.examples``): each costs as much as the baseline,
and the chain and a second call behave alike on every tree. ``thorough=True`` adds float16, bf16 params with f32
grads, a bare array and a larger tree, runs at least 6 steps (with a huge and a
tiny one), and runs every law on every example and every step.

The agreement laws (jit, cond, scan, chain) compare with the ``'agreement'`` rows
of the toolkit's one tolerance table (`gradxform.testing._compare.TOLERANCES`).

Examples:
    >>> import jax.numpy as jnp, gradxform as gx
    >>> gx.testing.check_transformation(gx.sgd(0.1, momentum=0.9))  # returns None: all laws hold
    >>> def leaky(): # returns float32 updates for bfloat16 gradients
    ...     return gx.stateless(lambda g, p: {k: v.astype(jnp.float32) for k, v in g.items()})
    >>> gx.testing.check_transformation(leaky(), {'w': jnp.ones(2, jnp.bfloat16)}, laws=['updates_dtype'])
    Traceback (most recent call last):
        ...
    gradxform.testing.LawViolation: check_transformation: 1 of 1 laws broken: updates_dtype
    <BLANKLINE>
    law 'updates_dtype': the updates have the dtypes of the incoming updates
        where:    updates['w'] at step 0
        expected: bf16[2]
        got:      f32[2]
        example:  'given params', 3 steps
                  params {'w': bf16[2]}
                  grads  like params
        hint:     cast each update back to its gradient's dtype (`u.astype(g.dtype)`)
    >>> gx.testing.laws.LAWS['no_retrace'].compiles
    2
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from gradxform.testing import _law_checks as checks

__all__ = ["DEFAULT_LAWS", "LAWS", "Law", "OPTIONAL_LAWS"]


@dataclasses.dataclass(frozen=True)
class Law:
    """One law of the transformation contract.

    Attributes:
        name: the name reports and ``laws=`` / ``skip=`` / ``include=`` use.
        statement: what the law says, shown in its report.
        hint: how to fix a transformation that breaks it (None: no hint).
        check: ``(run) -> None``; raises ``_law_checks.Broken`` with a counterexample. None for
            ``runs``, which the runner checks by running the example.
        compiles: None for an eager law; for a law that compiles, on how many of
            the examples it runs by default (``thorough=True`` runs it on all).
        examples: for an eager law that runs a whole trajectory again (``deterministic``,
            the chain laws), on how many of the examples it runs by default (None: all;
            ``thorough=True`` runs it on all).
        optional: checked only when asked for (``include=``).
        checks_types: a law on the updates' or state's types: a lax.cond / lax.scan
            type mismatch already reported by one of these is left out of the report.
    """

    name: str
    statement: str
    hint: Optional[str]
    check: Optional[Callable[[checks.Run], None]]
    compiles: Optional[int] = None
    optional: bool = False
    examples: Optional[int] = None
    checks_types: bool = False


# --------------------------------------------------------------------------- the laws

_SAME_IN_CHAIN = "the transformation must not depend on where it sits in a chain"

LAWS: dict[str, Law] = {
    law.name: law
    for law in (
        Law("runs", "init and update run on the example without raising", None, None),
        Law(
            "updates_structure",
            "the updates have the tree structure of the incoming updates",
            "return updates with exactly the incoming tree (same keys, same node types)",
            checks.updates_structure,
            checks_types=True,
        ),
        Law(
            "updates_shape",
            "the updates have the shapes of the incoming updates",
            "return one update per parameter, shaped like its gradient",
            checks.updates_shape,
            checks_types=True,
        ),
        Law(
            "updates_dtype",
            "the updates have the dtypes of the incoming updates",
            "cast each update back to its gradient's dtype (`u.astype(g.dtype)`)",
            checks.updates_dtype,
            checks_types=True,
        ),
        Law(
            "finite",
            "finite gradients (all-zero ones included) give finite updates and a finite state",
            "guard divisions and roots (an `eps`), and compute low-precision leaves in float32",
            checks.finite,
        ),
        Law(
            "state_structure",
            "the state keeps the tree structure init gave it, step after step",
            "return a state of the same tree as init's (no leaves added or dropped)",
            checks.state_structure,
            checks_types=True,
        ),
        Law(
            "state_dtype",
            "the state keeps the shapes and dtypes init gave it, step after step",
            "cast each new state leaf back to the dtype init gave it (`new.astype(old.dtype)`)",
            checks.state_dtype,
            checks_types=True,
        ),
        Law(
            "init_pure",
            "two calls of init on the same params give equal states",
            "build the state from the params' shapes and dtypes only, with no Python-side "
            "state or randomness (take a PRNG key as a hyperparameter)",
            checks.init_pure,
        ),
        Law(
            "init_value_independent",
            "init reads the params' shapes and dtypes, not their values",
            "build the state from shapes and dtypes (`jnp.zeros_like(p)`); "
            "if reading the params' values is the contract (lookahead), pass init_reads_params=True",
            checks.init_value_independent,
        ),
        Law(
            "deterministic",
            "update called twice on the same inputs gives identical results",
            "keep every piece of state in the returned state, not in Python globals, "
            "closures or NumPy random generators",
            checks.deterministic,
            examples=2,
        ),
        Law(
            "no_retrace",
            "a jitted update is not traced again on the next step",
            "give each state leaf an explicit dtype in init and cast it back in update "
            "(`jnp.zeros([], jnp.int32)`, not `jnp.asarray(0)`)",
            checks.no_retrace,
            compiles=2,
        ),
        Law(
            "jit_consistent",
            "jax.jit(update) agrees with update",
            "do not depend on Python-side state or on concrete values; anything that "
            "changes from step to step belongs in the state",
            checks.jit_consistent,
            compiles=2,
        ),
        Law(
            "donation",
            "a jitted step donating the params and the state straight after init runs",
            "give every state leaf a buffer of its own: never the params themselves or one "
            "array in two fields (`jnp.array(p, copy=True)`, one `jnp.zeros` call per field)",
            checks.donation,
            compiles=2,
        ),
        Law(
            "lax_cond",
            "update runs as a branch of lax.cond (other branch keeps the state) and agrees",
            "update must return the state's exact tree, shapes and dtypes and the updates' "
            "dtypes, and use no Python control flow on array values",
            checks.lax_cond,
            compiles=1,
        ),
        Law(
            "lax_scan",
            "update runs as the body of lax.scan over the steps and agrees with the loop",
            "the state must be a fixed-type carry: same tree, shapes and dtypes out as in",
            checks.lax_scan,
            compiles=1,
        ),
        Law(
            "chain_identity_left",
            "chain(identity(), tx) behaves like tx, step by step",
            _SAME_IN_CHAIN,
            checks.chain_identity_left,
            examples=2,
        ),
        Law(
            "chain_identity_right",
            "chain(tx, identity()) behaves like tx, step by step",
            _SAME_IN_CHAIN,
            checks.chain_identity_right,
            examples=2,
        ),
        Law(
            "none_leaves",
            "None leaves in the updates stay None, and the state keeps its tree and dtypes",
            "map over leaves with `is_leaf=lambda x: x is None` and return None for them",
            checks.none_leaves,
            optional=True,
        ),
        Law(
            "masked",
            "under masked(tx, mask) the masked-out leaves pass through unchanged",
            "the transformation must work on any subtree of the params",
            checks.masked,
            optional=True,
        ),
        Law(
            "ignores_extra_args",
            "an unknown extra keyword argument to update changes nothing",
            "accept `**extra_args` in update and ignore the ones you do not use",
            checks.ignores_extra_args,
            optional=True,
        ),
    )
}
OPTIONAL_LAWS: tuple[str, ...] = tuple(name for name, law in LAWS.items() if law.optional)
DEFAULT_LAWS: tuple[str, ...] = tuple(
    name for name, law in LAWS.items() if law.check is not None and not law.optional
)
