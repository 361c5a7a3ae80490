"""Gradient planner: any optax optimizer on the action sequence, with box projection.

Restarts run in parallel (vmapped). A step whose cost or gradient is non-finite is
rejected for that restart: the last accepted iterate and optimizer state are kept and the
next candidate backtracks halfway towards it, so a NaN region shrinks the step instead
of poisoning the plan. (A restart whose very first point is non-finite has nothing to
fall back on and stays there; the other restarts carry on.)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from hplan.planning.planners.base import (
    CostFn,
    Planner,
    PlannerState,
    bounds,
    initial_state,
    keep_best,
    project,
)


class GradientInner(NamedTuple):
    candidate: jax.Array  # [R, H, A] point evaluated next
    accepted: jax.Array  # [R, H, A] last point with finite cost and gradient
    opt_state: optax.OptState  # vmapped over restarts


def gradient(optimizer: optax.GradientTransformation, low=-1.0, high=1.0, restarts: int = 1,
             init_noise: float = 0.3) -> Planner:
    """Projected optax descent; restart 0 starts at the given plan, others add noise.

    Each iteration costs `restarts` value-and-grad evaluations.
    """
    if restarts < 1:
        raise ValueError(f"restarts={restarts} must be >= 1")
    if init_noise < 0:
        raise ValueError(f"init_noise={init_noise} must be >= 0")
    low, high = bounds(low, high)

    def init(key: jax.Array, init_actions: jax.Array) -> PlannerState:
        key, k_noise = jax.random.split(key)
        init_actions = project(jnp.asarray(init_actions, jnp.float32), low, high)
        noise = init_noise * jax.random.normal(k_noise, (restarts, *init_actions.shape))
        noise = noise.at[0].set(0.0)
        x0 = project(init_actions[None] + noise, low, high)
        inner = GradientInner(candidate=x0, accepted=x0,
                              opt_state=jax.vmap(optimizer.init)(x0))
        return initial_state(key, init_actions, inner)

    def update(state: PlannerState, cost_fn: CostFn) -> PlannerState:
        inner: GradientInner = state.inner
        y = inner.candidate
        f, g = jax.vmap(jax.value_and_grad(cost_fn))(y)
        ok = jnp.isfinite(f) & jnp.all(jnp.isfinite(g), axis=(1, 2))
        g = jnp.where(ok[:, None, None], g, 0.0)
        updates, opt_new = jax.vmap(optimizer.update)(g, inner.opt_state, y)
        stepped = project(optax.apply_updates(y, updates), low, high)
        backtrack = project(inner.accepted + 0.5 * (y - inner.accepted), low, high)

        def pick(a, b):
            return jnp.where(ok.reshape(ok.shape + (1,) * (a.ndim - 1)), a, b)

        inner = GradientInner(candidate=pick(stepped, backtrack), accepted=pick(y, inner.accepted),
                              opt_state=jax.tree.map(pick, opt_new, inner.opt_state))
        actions, cost = keep_best(state, y, jnp.where(ok, f, jnp.inf))
        return state._replace(actions=actions, cost=cost, iteration=state.iteration + 1,
                              n_evals=state.n_evals + restarts,
                              n_nonfinite=state.n_nonfinite + jnp.sum(~ok).astype(jnp.int32),
                              inner=inner)

    return Planner(init=init, update=update)
