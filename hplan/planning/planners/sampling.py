"""Sampling planners: CEM and MPPI share one Gaussian update and differ only in weights.

Each iteration evaluates the current mean (noise-free) plus `n_samples - 1` clipped
Gaussian samples, refits mean/std from weighted samples and smooths with `momentum`.
Non-finite costs get zero weight; if no sample is finite the distribution is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from hplan.planning.planners.base import (
    CostFn,
    Planner,
    PlannerState,
    bounds,
    initial_state,
    keep_best,
    project,
)


class GaussianInner(NamedTuple):
    mean: jax.Array  # [H, A]
    std: jax.Array  # [H, A]


def cem_weights(costs: jax.Array, n_elites: int) -> jax.Array:
    """Uniform weights on the `n_elites` lowest finite costs; zeros if none is finite."""
    finite = jnp.isfinite(costs)
    safe = jnp.where(finite, costs, jnp.inf)
    _, idx = jax.lax.top_k(-safe, n_elites)
    w = jnp.zeros_like(costs).at[idx].set(1.0) * finite
    return w / jnp.maximum(w.sum(), 1.0)


def mppi_weights(costs: jax.Array, temperature: float, normalize: bool = True) -> jax.Array:
    """Softmax of `-cost / temperature` over finite costs; zeros if none is finite.

    With `normalize`, the temperature is relative to the std of the finite costs, so the
    weighting is as sharp far from the goal (large cost spread) as near it.
    """
    finite = jnp.isfinite(costs)
    safe = jnp.where(finite, costs, jnp.inf)
    if normalize:
        n = jnp.maximum(finite.sum(), 1)
        mu = jnp.sum(jnp.where(finite, costs, 0.0)) / n
        sd = jnp.sqrt(jnp.sum(jnp.where(finite, (costs - mu) ** 2, 0.0)) / n)
        temperature = temperature * (sd + 1e-8)
    logits = -(safe - jnp.min(safe)) / temperature
    w = jnp.where(finite, jnp.exp(jnp.where(finite, logits, 0.0)), 0.0)
    return w / jnp.where(w.sum() > 0, w.sum(), 1.0)


def _gaussian(n_samples: int, weights_fn: Callable[[jax.Array], jax.Array], low, high,
              init_std: float, min_std: float, momentum: float) -> Planner:
    if n_samples < 2:
        raise ValueError(f"n_samples={n_samples} must be >= 2")
    if not 0 < min_std <= init_std:
        raise ValueError(f"need 0 < min_std <= init_std, got {min_std}, {init_std}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum={momentum} must be in [0, 1)")
    low, high = bounds(low, high)

    def init(key: jax.Array, init_actions: jax.Array) -> PlannerState:
        mean = project(jnp.asarray(init_actions, jnp.float32), low, high)
        inner = GaussianInner(mean=mean, std=jnp.full_like(mean, init_std))
        return initial_state(key, mean, inner)

    def update(state: PlannerState, cost_fn: CostFn) -> PlannerState:
        inner: GaussianInner = state.inner
        key, k = jax.random.split(state.key)
        eps = jax.random.normal(k, (n_samples - 1, *inner.mean.shape))
        samples = jnp.concatenate([inner.mean[None], inner.mean + inner.std * eps])
        samples = project(samples, low, high)
        costs = jax.vmap(cost_fn)(samples)
        finite = jnp.isfinite(costs)
        w = weights_fn(costs)[:, None, None]
        mean = jnp.sum(w * samples, axis=0)
        std = jnp.sqrt(jnp.sum(w * (samples - mean) ** 2, axis=0))
        any_ok = jnp.any(finite)
        mean = jnp.where(any_ok, momentum * inner.mean + (1 - momentum) * mean, inner.mean)
        std = jnp.where(any_ok, momentum * inner.std + (1 - momentum) * std, inner.std)
        inner = GaussianInner(mean=mean, std=jnp.clip(std, min_std, init_std))
        actions, cost = keep_best(state, samples, costs)
        return state._replace(actions=actions, cost=cost, key=key,
                              iteration=state.iteration + 1,
                              n_evals=state.n_evals + n_samples,
                              n_nonfinite=state.n_nonfinite + jnp.sum(~finite).astype(jnp.int32),
                              inner=inner)

    return Planner(init=init, update=update)


def cem(n_samples: int = 64, n_elites: int = 8, low=-1.0, high=1.0, init_std: float = 0.5,
        min_std: float = 0.05, momentum: float = 0.1) -> Planner:
    """Cross-entropy method: refit to the `n_elites` best samples each iteration."""
    if not 1 <= n_elites <= n_samples:
        raise ValueError(f"need 1 <= n_elites <= n_samples, got {n_elites}, {n_samples}")
    return _gaussian(n_samples, lambda c: cem_weights(c, n_elites), low, high, init_std,
                     min_std, momentum)


def mppi(n_samples: int = 64, temperature: float = 0.5, low=-1.0, high=1.0,
         init_std: float = 0.5, min_std: float = 0.05, momentum: float = 0.1,
         normalize: bool = True) -> Planner:
    """MPPI: exponentially weighted refit.

    `temperature` is in units of the sample-cost std (`normalize=True`) or in cost units.
    The std is refit from the weighted samples too (as in TD-MPC2); set
    `min_std = init_std` for classic fixed-noise MPPI.
    """
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0")
    return _gaussian(n_samples, lambda c: mppi_weights(c, temperature, normalize), low, high,
                     init_std, min_std, momentum)
