"""Augmented-Lagrangian outer loop around any planner, for inequality constraints g <= 0.

A penalty needs a large weight to make violations vanish, which distorts the cost
landscape; the multipliers learn the needed push instead, so a moderate `rho` suffices.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from hplan.planning.costs import augmented_lagrangian_value
from hplan.planning.planners.base import Planner, solve

Problem = Callable[[jax.Array], tuple[jax.Array, jax.Array]]  # actions -> (cost, g [M])


def solve_al(planner: Planner, problem: Problem, init_actions: jax.Array, key: jax.Array,
             iters: int, outer_iters: int, rho: float = 10.0
             ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`outer_iters` rounds of `solve(iters)` on the augmented Lagrangian, warm-started.

    Returns (actions, info) with `cost` (objective of the returned plan), `max_violation`,
    `multipliers`, per-round `cost_trace` / `violation_trace`, `n_evals`, `n_nonfinite`.
    """
    if rho <= 0:
        raise ValueError(f"rho={rho} must be > 0")
    if outer_iters < 1:
        raise ValueError(f"outer_iters={outer_iters} must be >= 1")
    _, g0 = jax.eval_shape(problem, init_actions)
    lam0 = jnp.zeros(g0.shape, jnp.float32)

    def round_(carry, k):
        actions, lam, n_evals, n_bad = carry

        def lagrangian(a):
            f, g = problem(a)
            return f + augmented_lagrangian_value(g, lam, rho)

        actions, info = solve(planner, lagrangian, actions, k, iters)
        f, g = problem(actions)
        lam = jnp.maximum(0.0, lam + rho * g)
        carry = (actions, lam, n_evals + info["n_evals"] + 1, n_bad + info["n_nonfinite"])
        return carry, (f, jnp.max(g, initial=0.0))

    keys = jax.random.split(key, outer_iters)
    carry = (jnp.asarray(init_actions, jnp.float32), lam0, jnp.int32(0), jnp.int32(0))
    (actions, lam, n_evals, n_bad), (f_trace, v_trace) = jax.lax.scan(round_, carry, keys)
    info = {"cost": f_trace[-1], "max_violation": v_trace[-1], "multipliers": lam,
            "cost_trace": f_trace, "violation_trace": v_trace, "n_evals": n_evals,
            "n_nonfinite": n_bad}
    return actions, info
