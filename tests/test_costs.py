"""Cost terms and guardrails: values, treatments, and a keep-out that bends the plan."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hplan.core import KeepOut, SpeedLimit
from hplan.planning import costs as C
from hplan.planning import planners as P


def integrator(p, a):
    return p + 0.5 * jnp.clip(a, -1.0, 1.0)


def test_rollout_and_goal_distance():
    acts = jnp.ones((4, 2))
    xs = C.rollout(integrator, jnp.zeros(2), acts)
    np.testing.assert_allclose(xs[:, 0], [0, 0.5, 1.0, 1.5, 2.0])
    goal = jnp.array([2.0, 2.0])
    d = np.sqrt(2) * np.array([1.5, 1.0, 0.5, 0.0])
    term = C.goal_distance(goal, running=1.0, terminal=3.0)
    assert float(term(xs, acts)) == pytest.approx(d.sum() + 3 * d[-1], abs=1e-4)
    sq = C.goal_distance(goal, running=0.0, terminal=1.0, squared=True)
    assert float(sq(xs, acts)) == pytest.approx(0.0, abs=1e-6)
    # distance has a finite gradient even at the goal
    g = jax.grad(lambda a: term(C.rollout(integrator, jnp.zeros(2), a), a))(acts)
    assert np.all(np.isfinite(g))


def test_pos_fn_lets_guardrails_act_on_latents():
    """A latent [4] whose position is a linear probe: the same guardrail applies."""
    probe = jnp.array([[2.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]])
    pos_fn = lambda z: probe @ z
    zs = jnp.array([[0.0, 0.0, 1, 1], [2.5, 2.5, 0, 0], [0.5, 0.5, 0, 0]])
    g = C.keep_out(KeepOut((5.0, 5.0), 1.0), pos_fn)(zs, jnp.zeros((2, 2)))
    np.testing.assert_allclose(g, [1.0, 1.0 - np.sqrt(32)], atol=1e-5)
    assert int(C.violations(C.keep_out(KeepOut((5.0, 5.0), 1.0), pos_fn), zs,
                            jnp.zeros((2, 2)))["count"]) == 1


def test_speed_limit_and_guardrail_bundle():
    acts = jnp.array([[1.0, 0.0], [0.5, 0.0], [1.0, 1.0]])
    xs = C.rollout(integrator, jnp.zeros(2), acts)
    con = C.guardrails([SpeedLimit(0.4), KeepOut((0.0, 0.0), 0.3)], max_step=0.5)
    g = con(xs, acts)
    np.testing.assert_allclose(g[:3], [0.1, -0.15, 0.5 * np.sqrt(2) - 0.4], atol=1e-5)
    v = C.violations(con, xs, acts)
    assert int(v["count"]) == 2
    assert float(v["amount"]) == pytest.approx(0.1 + 0.5 * np.sqrt(2) - 0.4, abs=1e-5)
    assert C.guardrails([])(xs, acts).shape == (0,)
    assert int(C.violations(C.guardrails([]), xs, acts)["count"]) == 0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-5, 5, width=32), min_size=2, max_size=16).filter(
    lambda v: len(v) % 2 == 0), st.floats(0.05, 1.0))
def test_project_speed_satisfies_limit(values, max_speed):
    acts = jnp.asarray(values, jnp.float32).reshape(-1, 2)
    limit = SpeedLimit(max_speed)
    proj = limit.project(acts, 0.5)
    g = C.speed_limit(limit, 0.5)(None, proj)
    assert bool(jnp.all(g <= 0))
    assert bool(jnp.all(jnp.abs(proj) <= 1.0))


def test_box_penalty_and_augmented_lagrangian_values():
    xs = jnp.array([[0.0, 0.0], [2.0, 0.5]])
    con = C.box(-1.0, 1.0)
    np.testing.assert_allclose(con(xs, None), [1.0, -0.5, -3.0, -1.5])
    assert float(C.penalty(con, weight=2.0)(xs, None)) == pytest.approx(2 * (1 + 1))
    assert float(C.penalty(C.box(-5.0, 5.0), weight=2.0)(xs, None)) == 0.0
    lam = jnp.zeros(4)
    # lam = 0 and feasible -> 0; the AL value equals the quadratic penalty rho/2 relu(g)^2
    assert float(C.augmented_lagrangian(con, lam, 4.0)(xs, None)) == pytest.approx(2.0)
    lam = C.update_multipliers(con(xs, None), lam, 4.0)
    np.testing.assert_allclose(lam, [4.0, 0, 0, 0])


def test_sum_costs_and_quadratic():
    xs, acts = jnp.ones((3, 2)), jnp.ones((2, 1))
    q = C.quadratic(jnp.array([1.0, 2.0]), 0.5)
    assert float(q(xs, acts)) == pytest.approx(2 * 3 + 0.5 * 2)
    q_full = C.quadratic(jnp.eye(2) * 3.0, jnp.eye(1))
    assert float(C.sum_costs(q, q_full)(xs, acts)) == pytest.approx(7 + 12 + 2)


# -- a keep-out disc on the straight line from start to goal -----------------------------
ZONE = KeepOut(center=(5.0, 5.0), radius=1.2)
START, GOAL = jnp.array([2.0, 5.0]), jnp.array([8.0, 5.0])
HORIZON = 20


def _problem():
    obj, con = C.goal_distance(GOAL), C.keep_out(ZONE)
    penalized = C.trajectory_cost(integrator, START,
                                  C.sum_costs(obj, C.penalty(con, weight=20.0, margin=0.1)))

    def constrained(a):  # for the augmented Lagrangian: (objective, g + margin)
        xs = C.rollout(integrator, START, a)
        return obj(xs, a), con(xs, a) + 0.1

    return obj, con, penalized, constrained


def _check_safe_and_at_goal(con, actions):
    xs = C.rollout(integrator, START, actions)
    assert int(C.violations(con, xs, actions)["count"]) == 0
    assert float(jnp.linalg.norm(xs[-1] - GOAL)) < 0.5


def test_unconstrained_plan_crosses_the_zone():
    obj, con, _, _ = _problem()
    plan, _ = P.solve(P.cem(256, 16, init_std=0.7), C.trajectory_cost(integrator, START, obj),
                      jnp.zeros((HORIZON, 2)), jax.random.key(0), 30)
    xs = C.rollout(integrator, START, plan)
    assert int(C.violations(con, xs, plan)["count"]) > 0


@pytest.mark.parametrize("name", ["cem", "gradient", "hybrid"])
def test_penalty_plan_avoids_zone_and_reaches_goal(name):
    _, con, penalized, _ = _problem()
    planner, iters = {
        "cem": (P.cem(256, 16, init_std=0.7), 30),
        "gradient": (P.gradient(optax.adam(0.05), restarts=8, init_noise=0.5), 100),
        "hybrid": (P.hybrid(P.cem(128, 16, init_std=0.7),
                            P.gradient(optax.adam(0.05), restarts=4), 10), 60),
    }[name]
    run = jax.jit(lambda k: P.solve(planner, penalized, jnp.zeros((HORIZON, 2)), k, iters))
    for seed in range(3):
        plan, _ = run(jax.random.key(seed))
        _check_safe_and_at_goal(con, plan)


def test_augmented_lagrangian_plan_avoids_zone_and_reaches_goal():
    _, con, _, constrained = _problem()
    planner = P.gradient(optax.adam(0.05), restarts=8, init_noise=0.5)
    run = jax.jit(lambda k: P.solve_al(planner, constrained, jnp.zeros((HORIZON, 2)), k,
                                       iters=20, outer_iters=5, rho=10.0))
    for seed in range(3):
        plan, info = run(jax.random.key(seed))
        _check_safe_and_at_goal(con, plan)
        assert float(info["max_violation"]) < 0.1  # of g + margin: inside the margin only
        assert int(info["n_evals"]) == 5 * (20 * 8 + 1)
        assert float(jnp.max(info["multipliers"])) > 0  # the constraint was active
