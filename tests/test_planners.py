"""Planners: known LQ optimum, NaN robustness, batching, composition, properties."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hplan.planning import planners as P
from hplan.planning.lq import BOUND, LQ_CASES, H, lq_cost, lq_optimum, lq_x0  # noqa: E402


@pytest.mark.parametrize("name", list(LQ_CASES))
def test_lq_known_optimum(name):
    make, iters, tol = LQ_CASES[name]
    planner = make()
    run = jax.jit(lambda x0, k: P.solve(planner, lq_cost(x0), jnp.zeros((H, 1)), k, iters))
    for seed in range(3):
        x0 = lq_x0(seed)
        u_star, c_star = lq_optimum(x0)
        assert np.abs(u_star).max() < BOUND / 5
        actions, info = run(jnp.asarray(x0, jnp.float32), jax.random.key(seed))
        gap = (float(info["cost"]) - c_star) / c_star
        assert gap < tol, f"{name} seed {seed}: gap {gap:.2e}"
        assert gap > -1e-4  # cannot beat the optimum beyond float32 rounding
        np.testing.assert_allclose(float(lq_cost(jnp.asarray(x0, jnp.float32))(actions)),
                                   float(info["cost"]), rtol=1e-5)
        trace = np.asarray(info["cost_trace"])
        assert trace.shape == (iters,) and np.all(np.diff(trace) <= 0)


def test_n_evals_accounting():
    cost = lambda a: jnp.sum(a**2)
    init = jnp.zeros((5, 2))
    key = jax.random.key(0)
    _, info = P.solve(P.gradient(optax.adam(0.1), restarts=3), cost, init, key, 7)
    assert int(info["n_evals"]) == 21 and int(info["iterations"]) == 7
    _, info = P.solve(P.cem(32, 4), cost, init, key, 3)
    assert int(info["n_evals"]) == 96
    _, info = P.solve(P.hybrid(P.mppi(16), P.gradient(optax.adam(0.1), restarts=2), 2),
                      cost, init, key, 5)
    assert int(info["n_evals"]) == 2 * 16 + 3 * 2


# -- robustness to non-finite costs ------------------------------------------------------
def nan_cost(actions):
    """Optimum at a = 1, but the cost is NaN (or inf) wherever a[0, 0] > 0.5."""
    c = jnp.sum((actions - 1.0) ** 2)
    c = jnp.where(actions[0, 0] > 0.5, jnp.nan, c)
    return jnp.where(actions[1, 0] > 0.8, jnp.inf, c)


@pytest.mark.parametrize("planner", [
    P.gradient(optax.adam(0.2), low=-2.0, high=2.0, restarts=4),
    P.cem(64, 8, low=-2.0, high=2.0, init_std=1.0),
    P.mppi(64, 0.5, low=-2.0, high=2.0, init_std=1.0),
    P.hybrid(P.cem(64, 8, low=-2.0, high=2.0, init_std=1.0),
             P.gradient(optax.adam(0.2), low=-2.0, high=2.0, restarts=2), 5),
], ids=["gradient", "cem", "mppi", "hybrid"])
def test_nonfinite_costs_do_not_poison(planner):
    actions, info = jax.jit(lambda k: P.solve(planner, nan_cost, jnp.zeros((4, 2)), k, 40))(
        jax.random.key(0))
    assert np.all(np.isfinite(actions))
    assert np.isfinite(float(info["cost"]))
    assert int(info["n_nonfinite"]) > 0
    assert float(actions[0, 0]) <= 0.5 and float(actions[1, 0]) <= 0.8
    # It still makes progress on the finite part: from cost 8 at zero to near 0.25 + 0.04.
    assert float(info["cost"]) < 1.0


def test_gradient_nan_rejects_step_and_keeps_iterate():
    """A restart whose first candidate is NaN keeps its (finite) accepted iterate."""
    planner = P.gradient(optax.sgd(1.0), low=-5.0, high=5.0)
    cost = lambda a: jnp.where(jnp.abs(a).max() > 1.5, jnp.nan, jnp.sum((a - 3.0) ** 2))
    state = planner.init(jax.random.key(0), jnp.zeros((2, 1)))
    state = planner.update(state, cost)  # evaluates 0 (finite), steps to 6 -> clipped to 5
    assert int(state.n_nonfinite) == 0
    state = planner.update(state, cost)  # evaluates 5: NaN, rejected
    assert int(state.n_nonfinite) == 1
    np.testing.assert_allclose(state.inner.accepted[0], 0.0)
    np.testing.assert_allclose(state.inner.candidate[0], 2.5)  # backtracked halfway
    assert float(state.cost) == pytest.approx(18.0)


def test_all_nan_keeps_initial_plan():
    planner = P.cem(16, 4)
    init = jnp.full((3, 2), 0.25)
    actions, info = P.solve(planner, lambda a: jnp.nan * jnp.sum(a), init, jax.random.key(1), 3)
    np.testing.assert_allclose(actions, init)
    assert float(info["cost"]) == np.inf and int(info["n_nonfinite"]) == 48


# -- batching ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gradient", "cem", "mppi"])
def test_vmap_batch_equals_separate_calls(name):
    planner = {"gradient": P.gradient(optax.adam(0.3), -BOUND, BOUND, restarts=2),
               "cem": P.cem(64, 8, -BOUND, BOUND, init_std=2.0),
               "mppi": P.mppi(64, 0.5, -BOUND, BOUND, init_std=2.0)}[name]
    x0s = jnp.asarray(np.stack([lq_x0(s) for s in range(64)]), jnp.float32)
    keys = jax.random.split(jax.random.key(0), 64)
    init = jnp.zeros((H, 1))
    one = jax.jit(lambda x0, k: P.solve(planner, lq_cost(x0), init, k, 10))
    batch_actions, batch_info = jax.jit(jax.vmap(one))(x0s, keys)
    chex.assert_shape(batch_actions, (64, H, 1))
    chex.assert_shape(batch_info["cost_trace"], (64, 10))
    for i in range(64):
        a, info = one(x0s[i], keys[i])
        np.testing.assert_allclose(batch_actions[i], a, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(batch_info["cost"][i], info["cost"], rtol=1e-4)


def test_hybrid_phase_switch_stays_a_cond_under_vmap():
    """The iteration counter is unbatched under vmap, so only one phase runs per step."""
    planner = P.hybrid(P.cem(8, 2), P.gradient(optax.adam(0.1)), 2)
    f = jax.vmap(lambda x0, k: P.solve(planner, lq_cost(x0), jnp.zeros((H, 1)), k, 4))
    jaxpr = jax.make_jaxpr(f)(jnp.ones((3, 2)), jax.random.split(jax.random.key(0), 3))
    assert "cond[" in str(jaxpr)


# -- pieces ------------------------------------------------------------------------------
def test_shift():
    a = jnp.arange(8.0).reshape(4, 2)
    np.testing.assert_array_equal(P.shift(a), [[2, 3], [4, 5], [6, 7], [6, 7]])
    np.testing.assert_array_equal(P.shift(a, 0.0)[-1], [0, 0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="low < high"):
        P.cem(low=1.0, high=-1.0)
    with pytest.raises(ValueError, match="n_elites"):
        P.cem(n_samples=8, n_elites=9)
    with pytest.raises(ValueError, match="restarts"):
        P.gradient(optax.adam(0.1), restarts=0)
    with pytest.raises(ValueError, match="temperature"):
        P.mppi(temperature=0.0)


def test_per_dimension_bounds():
    low, high = jnp.array([-0.1, -1.0]), jnp.array([0.1, 1.0])
    cost = lambda a: jnp.sum((a - 5.0) ** 2)
    for planner in (P.gradient(optax.adam(0.5), low, high), P.cem(32, 4, low, high)):
        actions, _ = P.solve(planner, cost, jnp.zeros((3, 2)), jax.random.key(0), 20)
        np.testing.assert_allclose(actions, jnp.broadcast_to(high, (3, 2)), atol=0.05)


finite_floats = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@settings(max_examples=50, deadline=None)
@given(st.lists(finite_floats, min_size=1, max_size=12), finite_floats, finite_floats)
def test_project_within_bounds(values, a, b):
    low, high = min(a, b), max(a, b)
    x = jnp.asarray(values, jnp.float32).reshape(-1, 1)
    y = P.project(x, low, high)
    assert bool(jnp.all((y >= low) & (y <= high)))
    inside = (x >= low) & (x <= high)
    assert bool(jnp.all(jnp.where(inside, y == x, True)))


cost_lists = st.lists(st.one_of(finite_floats, st.sampled_from([np.nan, np.inf, -np.inf])),
                      min_size=2, max_size=16)


@settings(max_examples=50, deadline=None)
@given(cost_lists, st.integers(1, 16))
@example([0.0, -0.0], 1)  # a tie that hypothesis found: the top-1 may be either
def test_cem_weights(costs_, k):
    c = jnp.asarray(costs_, jnp.float32)
    k = min(k, len(costs_))
    w = np.asarray(P.cem_weights(c, k))
    finite = np.isfinite(np.asarray(c))
    assert np.all(w >= 0) and np.all(w[~finite] == 0)
    assert w.sum() == pytest.approx(1.0 if finite.any() else 0.0, abs=1e-5)
    if finite.any():
        best = np.asarray(c) == np.nanmin(np.where(finite, np.asarray(c), np.nan))
        assert w[best].sum() > 0  # ties (0.0 and -0.0 too): one of them is weighted


@settings(max_examples=50, deadline=None)
@given(cost_lists, st.floats(1e-3, 10.0), st.booleans())
def test_mppi_weights(costs_, temperature, normalize):
    c = jnp.asarray(costs_, jnp.float32)
    w = np.asarray(P.mppi_weights(c, temperature, normalize))
    finite = np.isfinite(np.asarray(c))
    assert np.all(np.isfinite(w)) and np.all(w >= 0) and np.all(w[~finite] == 0)
    assert w.sum() == pytest.approx(1.0 if finite.any() else 0.0, abs=1e-5)


@jax.jit
def _gradient_and_cem_plans(bound, key):
    """Planners built inside jit with traced bounds; a cost that pulls far outside them."""
    cost = lambda a: jnp.sum((a - 10.0) ** 2 * (1.5 + jnp.sin(3 * a)))
    init = jnp.zeros((4, 2))
    cem_plan, _ = P.solve(P.cem(16, 4, -bound, bound, init_std=3.0, min_std=0.1), cost,
                          init, key, 3)
    grad_plan, _ = P.solve(P.gradient(optax.sgd(5.0), -bound, bound, restarts=3,
                                      init_noise=3.0), cost, init, key, 3)
    return cem_plan, grad_plan


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**16), st.floats(0.05, 2.0))
def test_plans_stay_in_bounds(seed, bound):
    for plan in _gradient_and_cem_plans(jnp.float32(bound), jax.random.key(seed)):
        assert bool(jnp.all(jnp.abs(plan) <= np.float32(bound)))
