"""Composition: a sampling planner explores, then a gradient planner refines its best plan.

The phase switch is a `lax.cond` on the iteration counter. `initial_state` makes that
counter a constant, so under `vmap` (over problems or episodes) it stays unbatched and
only one branch runs; if states themselves are vmapped, both run (correct, just slower).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from hplan.planning.planners.base import CostFn, Planner, PlannerState, initial_state


class HybridInner(NamedTuple):
    sampler: PlannerState
    refiner: PlannerState


def _combine(state: PlannerState, s: PlannerState, r: PlannerState) -> PlannerState:
    better = r.cost < s.cost
    return state._replace(
        actions=jnp.where(better, r.actions, s.actions), cost=jnp.minimum(s.cost, r.cost),
        iteration=state.iteration + 1, n_evals=s.n_evals + r.n_evals,
        n_nonfinite=s.n_nonfinite + r.n_nonfinite, inner=HybridInner(s, r))


def hybrid(sampler: Planner, refiner: Planner, sample_iters: int) -> Planner:
    """First `sample_iters` iterations run `sampler`; every later one runs `refiner`,
    which starts from the sampler's best plan. `solve(..., iters)` with
    `iters = sample_iters + refine_iters` gives the usual two-stage schedule.
    """
    if sample_iters < 0:
        raise ValueError(f"sample_iters={sample_iters} must be >= 0")

    def init(key: jax.Array, init_actions: jax.Array) -> PlannerState:
        key, k_s, k_r = jax.random.split(key, 3)
        s, r = sampler.init(k_s, init_actions), refiner.init(k_r, init_actions)
        return initial_state(key, s.actions, HybridInner(s, r))

    def update(state: PlannerState, cost_fn: CostFn) -> PlannerState:
        inner: HybridInner = state.inner

        def sample_phase(inner: HybridInner) -> HybridInner:
            s = sampler.update(inner.sampler, cost_fn)
            handover = state.iteration + 1 >= sample_iters
            fresh = refiner.init(inner.refiner.key, s.actions)
            r = jax.tree.map(lambda a, b: jnp.where(handover, a, b), fresh, inner.refiner)
            return HybridInner(s, r)

        def refine_phase(inner: HybridInner) -> HybridInner:
            return HybridInner(inner.sampler, refiner.update(inner.refiner, cost_fn))

        inner = jax.lax.cond(state.iteration < sample_iters, sample_phase, refine_phase, inner)
        return _combine(state, inner.sampler, inner.refiner)

    return Planner(init=init, update=update)
