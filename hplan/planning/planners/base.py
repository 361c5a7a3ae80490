"""Planner protocol, optax style: a pair of pure functions over a state pytree.

`update` takes the cost function as an argument (not at construction) because in MPC the
cost closes over the current observation and changes every control step, while the
planner itself (and its compiled code) stays the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp

CostFn = Callable[[jax.Array], jax.Array]  # actions [H, A] -> scalar cost


class PlannerState(NamedTuple):
    """Everything a planner carries between iterations.

    `actions`/`cost` are the best plan evaluated so far and its cost (inf before any finite
    evaluation), so `cost` never increases. `n_evals` counts cost-function evaluations
    (one sample, or one value-and-grad, is one model rollout). `n_nonfinite` counts
    rejected non-finite evaluations. `inner` is planner-specific (optax state, mean/std).
    """

    actions: jax.Array
    cost: jax.Array
    key: jax.Array
    iteration: jax.Array
    n_evals: jax.Array
    n_nonfinite: jax.Array
    inner: Any


class Planner(NamedTuple):
    """`init(key, init_actions [H, A])` and `update(state, cost_fn)`; both pure and jit-able."""

    init: Callable[[jax.Array, jax.Array], PlannerState]
    update: Callable[[PlannerState, CostFn], PlannerState]


def initial_state(key: jax.Array, init_actions: jax.Array, inner: Any) -> PlannerState:
    """A fresh state: nothing evaluated yet."""
    chex.assert_rank(init_actions, 2)
    # Constants (not derived from inputs) stay unbatched under vmap, so planners can
    # branch on `iteration` with a real `lax.cond` (see `hybrid`).
    return PlannerState(actions=jnp.asarray(init_actions, jnp.float32),
                        cost=jnp.float32(jnp.inf), key=key, iteration=jnp.int32(0),
                        n_evals=jnp.int32(0), n_nonfinite=jnp.int32(0), inner=inner)


def keep_best(state: PlannerState, actions: jax.Array, costs: jax.Array) -> tuple[jax.Array,
                                                                                   jax.Array]:
    """Best of the incumbent and candidates `actions` [N, H, A] with `costs` [N].

    Non-finite costs never win.
    """
    costs = jnp.where(jnp.isfinite(costs), costs, jnp.inf)
    i = jnp.argmin(costs)
    better = costs[i] < state.cost
    return (jnp.where(better, actions[i], state.actions),
            jnp.where(better, costs[i], state.cost))


def bounds(low, high) -> tuple[jax.Array, jax.Array]:
    """Validate and convert action bounds (scalars or [A] arrays)."""
    low_np, high_np = jnp.asarray(low, jnp.float32), jnp.asarray(high, jnp.float32)
    if low_np.ndim > 1 or high_np.ndim > 1:
        raise ValueError(f"bounds must be scalars or [A] arrays, got {low_np.shape}, "
                         f"{high_np.shape}")
    try:
        bad = bool(jnp.any(low_np >= high_np))
    except jax.errors.ConcretizationTypeError:  # traced bounds: cannot check here
        bad = False
    if bad:
        raise ValueError(f"need low < high, got low={low}, high={high}")
    return low_np, high_np


def project(actions: jax.Array, low, high) -> jax.Array:
    """Projection onto the box [low, high] (broadcast over the horizon)."""
    return jnp.clip(actions, low, high)


def shift(actions: jax.Array, fill: jax.Array | float | None = None) -> jax.Array:
    """Receding-horizon warm start: drop the first action, repeat the last (or `fill`)."""
    chex.assert_rank(actions, 2)
    last = actions[-1:] if fill is None else jnp.broadcast_to(
        jnp.asarray(fill, actions.dtype), actions[-1:].shape)
    return jnp.concatenate([actions[1:], last], axis=0)


def solve(planner: Planner, cost_fn: CostFn, init_actions: jax.Array, key: jax.Array,
          iters: int) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Run `iters` planner updates under `lax.scan`; returns (best actions, info).

    `info`: `cost` (best), `cost_trace` [iters] (best after each update), `n_evals`,
    `n_nonfinite`, `iterations`.
    """
    if iters < 0:
        raise ValueError(f"iters={iters} must be >= 0")
    state = planner.init(key, init_actions)

    def body(s, _):
        s = planner.update(s, cost_fn)
        return s, s.cost

    state, trace = jax.lax.scan(body, state, None, length=iters)
    info = {"cost": state.cost, "cost_trace": trace, "n_evals": state.n_evals,
            "n_nonfinite": state.n_nonfinite, "iterations": state.iteration}
    return state.actions, info
