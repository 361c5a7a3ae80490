"""Flat true-model MPC and the generic episode runner."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hplan import costs, mpc, tasks
from hplan.planning import planners as P


@pytest.fixture(scope="module")
def open_task():
    return tasks.load("open")


def test_flat_mpc_reaches_goal_on_open(open_task):
    policy = mpc.flat_mpc(open_task, P.cem(64, 8), mpc.MPCConfig(horizon=16, iters=4))
    out = mpc.evaluate(open_task, policy, jax.random.key(0), episodes=32)
    assert float(out["success"].mean()) >= 0.9
    steps = np.asarray(out["steps_to_goal"])[np.asarray(out["success"])]
    pos = np.asarray(out["positions"])
    assert np.all(steps >= 1) and np.all(steps <= open_task.episode_length)
    chex.assert_shape(out["positions"], (32, open_task.episode_length + 1, 2))
    assert np.all(np.asarray(out["n_evals"]) == 64 * 4)
    assert np.all(np.abs(np.diff(pos, axis=1)) <= open_task.env.config.max_step + 1e-5)


def test_gradient_mpc_reaches_goal_on_open(open_task):
    planner = P.gradient(optax.adam(0.1), restarts=8, init_noise=0.5)
    out = mpc.evaluate(open_task, mpc.flat_mpc(open_task, planner, mpc.MPCConfig(iters=8)),
                       jax.random.key(1), episodes=16)
    assert float(out["success"].mean()) >= 0.9


def test_whole_batch_is_one_jitted_program(open_task):
    """Tracing happens once, the jaxpr holds one scan over the episode (batched inside),
    and the AOT-compiled executable alone runs the batch."""
    traces = []
    evaluate = mpc.make_evaluate(open_task, mpc.flat_mpc(open_task, P.cem(16, 4),
                                                         mpc.MPCConfig(horizon=8, iters=2)))

    def counted(keys):
        traces.append(1)
        return evaluate(keys)

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

    def step(agent, state):
        d = state.info["target"] - state.env_state.pos
        return agent + 1, d / (jnp.linalg.norm(d) + 1e-6)

    policy = mpc.Policy(init=lambda key, s: jnp.int32(0), step=step)
    s0, rec = jax.jit(lambda k: mpc.run_episodes(open_task.env, policy, k, 30))(
        jax.random.split(jax.random.key(2), 4))
    chex.assert_shape(rec["action"], (4, 30, 2))
    chex.assert_shape(s0.obs, (4, 2))
    assert bool(jnp.all(jnp.any(rec["success"] > 0, axis=1)))


def _guarded_task(guardrails):
    layout = (tasks.TASKS_DIR / "layouts" / "open.txt").read_text()
    spec = tasks.TaskSpec(name="guarded", layout=layout, episode_length=40, start=(4, 1),
                          goal=(4, 8), guardrails=guardrails)
    return tasks.build(spec)


def test_mpc_respects_guardrails_and_still_arrives():
    """A keep-out disc on the straight start-goal line, and a speed limit."""
    rails = (tasks.KeepOut(center=(4.5, 5.0), radius=1.2), tasks.SpeedLimit(0.4))
    cfg = mpc.MPCConfig(horizon=16, iters=4)
    guarded, free = _guarded_task(rails), _guarded_task(())
    out = mpc.evaluate(guarded, mpc.flat_mpc(guarded, P.cem(64, 8), cfg), jax.random.key(0),
                       episodes=8)
    assert bool(out["success"].all())
    assert np.all(np.asarray(out["violations"]) == 0)
    speed = guarded.env.config.max_step * np.linalg.norm(np.asarray(out["actions"]), axis=-1)
    assert speed.max() <= 0.4 and speed.max() > 0.35  # limited, yet not timid
    # without guardrails in the cost, the same planner cuts straight through the disc
    check = mpc.make_evaluate(guarded, mpc.flat_mpc(free, P.cem(64, 8), cfg))
    unguarded = check(jax.random.split(jax.random.key(0), 8))
    for out_, inside in ((out, False), (unguarded, True)):
        d = np.linalg.norm(np.asarray(out_["positions"]) - np.array([4.5, 5.0]), axis=-1)
        assert np.all((d.min(axis=1) < 1.2) == inside)


def test_maze_cost_matches_rollout(open_task):
    pos, target = jnp.array([1.5, 1.5]), jnp.array([6.5, 7.5])
    cost = mpc.maze_cost(open_task, pos, target, mpc.MPCConfig(horizon=4))
    acts = jnp.array([[1.0, 1.0], [2.0, 0.0], [0.0, -1.0], [0.5, 0.5]])
    xs = costs.rollout(open_task.env.move, pos, jnp.clip(acts, -1, 1))
    expect = np.linalg.norm(np.asarray(xs[1:]) - np.asarray(target), axis=-1).sum()
    assert float(cost(acts)) == pytest.approx(expect, rel=1e-5)
