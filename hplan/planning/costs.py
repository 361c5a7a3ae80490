"""Composable trajectory costs and guardrail constraints.

A cost term maps a trajectory (`xs` [H+1, D] including the start state, `actions` [H, A])
to a scalar. A constraint maps it to a vector `g` whose positive entries are violations.
Guardrails are written over positions through a `pos_fn` (identity for the true maze, a
learned probe for latents), and become costs through `penalty` or
`augmented_lagrangian`; `violations` reports how a plan or an episode breaks them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import chex
import jax
import jax.numpy as jnp

from hplan.core import Guardrail, KeepOut, SpeedLimit

Term = Callable[[jax.Array, jax.Array], jax.Array]  # (xs, actions) -> scalar
Constraint = Callable[[jax.Array, jax.Array], jax.Array]  # (xs, actions) -> g [M]
PosFn = Callable[[jax.Array], jax.Array]  # state [D] -> position [2]
StepFn = Callable[[jax.Array, jax.Array], jax.Array]  # (state, action) -> next state

_EPS = 1e-12


def identity(x: jax.Array) -> jax.Array:
    return x


def safe_norm(x: jax.Array, axis: int = -1) -> jax.Array:
    """Euclidean norm with a finite gradient at zero."""
    return jnp.sqrt(jnp.sum(x * x, axis=axis) + _EPS)


# -- trajectories ------------------------------------------------------------------------
def rollout(step_fn: StepFn, x0: jax.Array, actions: jax.Array) -> jax.Array:
    """States [H+1, ...] from `x0` under `actions` [H, A]."""
    chex.assert_rank(actions, 2)

    def body(x, a):
        x = step_fn(x, a)
        return x, x

    _, xs = jax.lax.scan(body, x0, actions)
    return jnp.concatenate([x0[None], xs], axis=0)


def trajectory_cost(step_fn: StepFn, x0: jax.Array, term: Term) -> Callable[[jax.Array],
                                                                              jax.Array]:
    """The planner's `CostFn`: actions -> term(rollout(x0, actions), actions)."""
    return lambda actions: term(rollout(step_fn, x0, actions), actions)


def sum_costs(*terms: Term) -> Term:
    """Sum of terms."""
    return lambda xs, actions: sum(t(xs, actions) for t in terms)


# -- objectives --------------------------------------------------------------------------
def goal_distance(goal: jax.Array, pos_fn: PosFn = identity, running: float = 1.0,
                  terminal: float = 0.0, squared: bool = False) -> Term:
    """`running` * sum over steps 1..H of the distance to `goal`, plus `terminal` * last.

    Plain distance has unit-norm gradient far from the goal; `squared` is smoother near it.
    """

    def term(xs, actions):
        d = vmap_pos(pos_fn, xs[1:]) - goal
        d = jnp.sum(d * d, -1) if squared else safe_norm(d)
        return running * jnp.sum(d) + terminal * d[-1]

    return term


def quadratic(state_weight: jax.Array | float = 0.0, action_weight: jax.Array | float = 0.0,
              target: jax.Array | float = 0.0) -> Term:
    """sum_t (x_t - target)^T Q (x_t - target) + a_t^T R a_t, over steps 1..H.

    Weights may be scalars, diagonals [D] or full matrices [D, D].
    """

    def form(w, v):
        w = jnp.asarray(w, jnp.float32)
        if w.ndim == 2:
            return jnp.einsum("ti,ij,tj->", v, w, v)
        return jnp.sum(w * v * v)

    return lambda xs, actions: form(state_weight, xs[1:] - target) + form(action_weight, actions)


# -- constraints (g > 0 is a violation) --------------------------------------------------
def vmap_pos(pos_fn: PosFn, xs: jax.Array) -> jax.Array:
    return jax.vmap(pos_fn)(xs)


def keep_out(zone: KeepOut, pos_fn: PosFn = identity) -> Constraint:
    """radius - distance(pos_t, centre) for t = 1..H (the start state is not plannable)."""
    center = jnp.asarray(zone.center, jnp.float32)
    return lambda xs, actions: zone.radius - safe_norm(vmap_pos(pos_fn, xs[1:]) - center)


def speed_limit(limit: SpeedLimit, max_step: float) -> Constraint:
    """|displacement| - max_speed, with displacement = max_step * clip(action, -1, 1)."""
    return lambda xs, actions: (max_step * safe_norm(jnp.clip(actions, -1.0, 1.0))
                                - limit.max_speed)


def box(low: jax.Array | float, high: jax.Array | float, pos_fn: PosFn = identity) -> Constraint:
    """Positions stay within [low, high] per coordinate."""

    def g(xs, actions):
        p = vmap_pos(pos_fn, xs[1:])
        return jnp.concatenate([(p - high).ravel(), (low - p).ravel()])

    return g


def guardrails(items: Iterable[Guardrail], pos_fn: PosFn = identity,
               max_step: float = 1.0) -> Constraint:
    """All of a task's guardrails as one constraint vector (empty if there are none)."""
    parts = []
    for item in items:
        if isinstance(item, KeepOut):
            parts.append(keep_out(item, pos_fn))
        elif isinstance(item, SpeedLimit):
            parts.append(speed_limit(item, max_step))
        else:
            raise TypeError(f"unknown guardrail {item!r}")
    return lambda xs, actions: jnp.concatenate(
        [jnp.zeros((0,), jnp.float32)] + [p(xs, actions).ravel() for p in parts])


# -- treatments --------------------------------------------------------------------------
def penalty(constraint: Constraint, weight: float = 10.0, margin: float = 0.0) -> Term:
    """weight * sum(v + v^2), v = relu(g + margin).

    The linear (exact) part makes small violations cost something, so the constrained
    optimum is exact for a large enough weight; the quadratic part grows with depth.
    """

    def term(xs, actions):
        v = jax.nn.relu(constraint(xs, actions) + margin)
        return weight * jnp.sum(v + v * v)

    return term


def augmented_lagrangian_value(g: jax.Array, multipliers: jax.Array, rho: float) -> jax.Array:
    """PHR augmented Lagrangian for g <= 0: (|relu(lam + rho g)|^2 - |lam|^2) / (2 rho)."""
    return jnp.sum(jax.nn.relu(multipliers + rho * g) ** 2 - multipliers**2) / (2 * rho)


def augmented_lagrangian(constraint: Constraint, multipliers: jax.Array, rho: float) -> Term:
    """The term for fixed multipliers; update them with `update_multipliers` between solves."""
    return lambda xs, actions: augmented_lagrangian_value(constraint(xs, actions),
                                                          multipliers, rho)


def update_multipliers(g: jax.Array, multipliers: jax.Array, rho: float) -> jax.Array:
    return jax.nn.relu(multipliers + rho * g)


def violations(constraint: Constraint, xs: jax.Array, actions: jax.Array,
               tol: float = 1e-6) -> dict[str, jax.Array]:
    """`count` of entries with g > tol, summed `amount` and `max` of relu(g)."""
    g = constraint(xs, actions)
    v = jax.nn.relu(g)
    return {"count": jnp.sum(g > tol).astype(jnp.int32), "amount": jnp.sum(v),
            "max": jnp.max(v, initial=0.0)}
