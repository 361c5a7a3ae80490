"""Flat MPC through the env's own step (the oracle baseline) and the one evaluator."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hplan import tasks
from hplan.agents import MPCConfig
from hplan.agents.true_dynamics import true_mpc
from hplan.core import KeepOut, Policy, SpeedLimit
from hplan.eval.runner import evaluate, make_evaluate, run_episodes


@pytest.fixture(scope="module")
def open_task():
    return tasks.load("open")


def test_cem_through_the_true_dynamics_reaches_goal_on_open(open_task):
    cfg = MPCConfig(planner="cem", samples=64, elites=8, horizon=16, iters=4, running=1.0,
                    terminal=0.0)
    out = evaluate(open_task, true_mpc(open_task, cfg), jax.random.key(0), episodes=32)
    assert float(out["success"].mean()) >= 0.9
    steps = np.asarray(out["steps_to_goal"])[np.asarray(out["success"])]
    pos = np.asarray(out["positions"])
    assert np.all(steps >= 1) and np.all(steps <= open_task.episode_length)
    chex.assert_shape(out["positions"], (32, open_task.episode_length + 1, 2))
    assert np.all(np.asarray(out["info"]["n_evals"]) == 64 * 4)
    assert np.all(np.abs(np.diff(pos, axis=1)) <= open_task.env.action_scale + 1e-5)


def test_gradient_through_the_true_dynamics_reaches_goal_on_open(open_task):
    cfg = MPCConfig(lr=0.1, restarts=8, iters=8, running=1.0, terminal=0.0)
    out = evaluate(open_task, true_mpc(open_task, cfg), jax.random.key(1), episodes=16)
    assert float(out["success"].mean()) >= 0.9


def test_whole_batch_is_one_jitted_program(open_task):
    """Tracing happens once, the jaxpr holds one scan over the episode (batched inside),
    and the AOT-compiled executable alone runs the batch."""
    traces = []
    cfg = MPCConfig(planner="cem", samples=16, elites=4, horizon=8, iters=2)
    ev = make_evaluate(open_task, true_mpc(open_task, cfg))

    def counted(keys):
        traces.append(1)
        return ev(keys)

    keys = jax.random.split(jax.random.key(0), 8)
    jaxpr = jax.make_jaxpr(counted)(keys)
    top = [e for e in jaxpr.eqns if e.primitive.name == "scan"]
    assert len(top) == 1 and top[0].params["length"] == open_task.episode_length
    run = jax.jit(counted)
    compiled = run.lower(keys).compile()
    n_traces = len(traces)
    out = compiled(keys)
    out2 = run(keys)
    assert len(traces) == n_traces  # calls reuse the one compiled program
    np.testing.assert_array_equal(out["success"], out2["success"])
    chex.assert_shape(out["success"], (8,))


def test_run_episodes_with_any_policy(open_task):
    """The runner is agent-agnostic: a hand-written straight-line policy."""

    def step(count, state):
        d = state.info["target_xy"] - state.metrics["xy"]
        return count + 1, d / (jnp.linalg.norm(d) + 1e-6), {"count": count}

    policy = Policy(init=lambda key, s: jnp.int32(0), step=step)
    s0, rec = jax.jit(lambda k: run_episodes(open_task.env, policy, k, 30))(
        jax.random.split(jax.random.key(2), 4))
    chex.assert_shape(rec["action"], (4, 30, 2))
    chex.assert_shape(s0.obs, (4, 2))
    np.testing.assert_array_equal(rec["info"]["count"][0], np.arange(30))
    assert bool(jnp.all(jnp.any(rec["metrics"]["success"] > 0, axis=1)))


def _guarded_task(guardrails):
    spec = tasks.TaskSpec(name="guarded", env="pointmaze",
                          env_args={"layout": "layouts/open.txt", "start": [4, 1],
                                    "goal": [4, 8]},
                          episode_length=40, guardrails=guardrails)
    return tasks.build(spec, base_dir=tasks.TASKS_DIR)


def test_mpc_respects_guardrails_and_still_arrives():
    """A keep-out disc on the straight start-goal line, and a speed limit."""
    rails = (KeepOut(center=(4.5, 5.0), radius=1.2), SpeedLimit(0.4))
    cfg = MPCConfig(planner="cem", samples=64, elites=8, horizon=16, iters=4, running=1.0,
                    terminal=0.0)
    guarded, free = _guarded_task(rails), _guarded_task(())
    out = evaluate(guarded, true_mpc(guarded, cfg), jax.random.key(0), episodes=8)
    assert bool(out["success"].all())
    assert np.all(np.asarray(out["violations"]) == 0)
    step = np.linalg.norm(np.diff(np.asarray(out["positions"]), axis=1), axis=-1)
    assert step.max() <= 0.4 + 1e-5 and step.max() > 0.35  # limited, yet not timid
    # without guardrails in the cost, the same planner cuts straight through the disc
    unguarded = evaluate(guarded, true_mpc(free, cfg), jax.random.key(0), episodes=8)
    for out_, inside in ((out, False), (unguarded, True)):
        d = np.linalg.norm(np.asarray(out_["positions"]) - np.array([4.5, 5.0]), axis=-1)
        assert np.all((d.min(axis=1) < 1.2) == inside)
