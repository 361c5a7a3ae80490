import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hplan import tasks
from hplan.envs.pointmaze import MazeConfig

LAYOUT_TASKS = ["open", "umaze", "two-rooms", "four-rooms", "medium", "large", "trap", "maze32"]
T = 24


@functools.cache
def _rollout(name):
    task = tasks.load(name)
    env = task.env.unwrapped

    @jax.jit
    def run(start_idx, jitter, actions):
        free = jnp.asarray(env.layout.free_cells, jnp.float32)
        pos0 = free[start_idx % free.shape[0]] + 0.5 + jitter
        s = env.reset_at(jax.random.key(0), pos0)

        def body(s, a):
            s = env.step(s, a)
            return s, s.env_state.pos

        _, pos = jax.lax.scan(body, s, actions)
        return jnp.concatenate([pos0[None], pos])

    return task, run


# Any float32, including huge magnitudes, NaN and inf.
any_actions = arrays(np.float32, (T, 2), elements=st.floats(width=32, allow_nan=True,
                                                           allow_infinity=True))


def _check_never_in_or_through_walls(walls, pos):
    cells = np.floor(pos).astype(int)
    assert np.isfinite(pos).all()
    assert not walls[cells[:, 0], cells[:, 1]].any(), "agent inside a wall"
    # Moves are axis by axis: the corner point (new row, old col) must be free too,
    # and no step skips a cell, so the agent cannot pass through a wall.
    corner = np.stack([cells[1:, 0], cells[:-1, 1]], axis=1)
    assert not walls[corner[:, 0], corner[:, 1]].any(), "agent tunnelled through a wall"
    assert (np.abs(np.diff(cells, axis=0)) <= 1).all()


@pytest.mark.parametrize("name", LAYOUT_TASKS)
@settings(max_examples=25, deadline=None)
@given(start=st.integers(0, 10_000),
       jitter=arrays(np.float32, 2, elements=st.floats(-0.4375, 0.4375, width=32)),
       actions=any_actions, scale=st.sampled_from([1.0, 1e3, 1e30]))
def test_random_actions_never_enter_walls(name, start, jitter, actions, scale):
    task, run = _rollout(name)
    with np.errstate(over="ignore", invalid="ignore"):
        actions = actions * np.float32(scale)
    pos = np.asarray(run(start, jitter, actions))
    _check_never_in_or_through_walls(task.env.unwrapped.layout.walls, pos)


def test_slides_along_wall_instead_of_sticking():
    task, run = _rollout("open")
    # Start next to the top wall, push up-right: row is blocked, column keeps moving.
    pos = np.asarray(run(0, np.zeros(2, np.float32), np.tile([[-1.0, 1.0]], (T, 1))))
    assert pos[-1, 0] == pytest.approx(1.0 + 1e-3, abs=1e-4)
    assert pos[-1, 1] > pos[0, 1] + 3


def test_step_size_and_clipping():
    env = tasks.load("open").env.unwrapped
    p = env.move(jnp.array([4.5, 4.5]), jnp.array([10.0, -0.5]))
    np.testing.assert_allclose(p, [5.0, 4.25])


def _teleport(s, pos):
    return s.replace(env_state=s.env_state.replace(pos=jnp.asarray(pos, jnp.float32)))


def test_success_radius_and_staged_targets_in_order():
    env = tasks.load("four-rooms-staged").env
    s = env.reset(jax.random.key(0))
    targets = np.asarray(s.info["targets"])
    assert targets.shape == (3, 2)
    np.testing.assert_allclose(s.info["target_xy"], targets[0])
    # Teleport onto the final goal first: not a success, waypoints come first.
    s2 = env.step(_teleport(s, targets[2]), jnp.zeros(2))
    assert float(s2.metrics["success"]) == 0.0 and int(s2.info["stage"]) == 0
    for k in range(3):
        s = env.step(_teleport(s, targets[k]), jnp.zeros(2))
        assert int(s.info["stage"]) == k + 1
        # the goal observation follows the current target
        if k < 2:
            np.testing.assert_allclose(s.info["goal_obs"],
                                       env.unwrapped.observe(jnp.asarray(targets[k + 1])))
    assert bool(s.done) and float(s.metrics["success"]) == 1.0


def test_speed_limit_filters_every_executed_action():
    env = tasks.load("four-rooms-staged").env  # speed limit 0.45 cells per step
    s = env.reset(jax.random.key(0))
    s2 = env.step(s, jnp.array([1.0, 1.0]))
    moved = np.linalg.norm(np.asarray(s2.metrics["xy"]) - np.asarray(s.metrics["xy"]))
    assert moved <= 0.45 + 1e-6
    assert float(np.linalg.norm(env.action_filter(jnp.array([1.0, 1.0])))) * 0.5 <= 0.45


def test_reset_step_jit_and_vmap():
    env = tasks.load("two-rooms").env
    keys = jax.random.split(jax.random.key(1), 16)
    s = jax.jit(jax.vmap(env.reset))(keys)
    assert s.obs.shape == (16, 2) and s.info["goal_obs"].shape == (16, 2)
    s = jax.jit(jax.vmap(env.step))(s, jnp.ones((16, 2)))
    assert s.obs.shape == (16, 2) and s.reward.shape == (16,)
    np.testing.assert_allclose(jax.vmap(env.unwrapped.observe)(s.metrics["xy"]), s.obs,
                               atol=1e-6)


def _variant(name, **env_args):
    import dataclasses

    spec = tasks.load(name).spec
    return tasks.build(dataclasses.replace(spec, env_args={**spec.env_args, **env_args}),
                       base_dir=tasks.TASKS_DIR)


def test_pixel_observations():
    t = _variant("two-rooms", obs="pixels", image_size=24)
    s = t.env.reset(jax.random.key(0))
    assert s.obs.shape == (24, 24, 2) == t.env.observation_size
    img = np.asarray(s.obs)
    assert img.dtype == np.uint8  # stored as observed
    # Wall channel matches layout border; agent channel peaks near the agent.
    assert img[0, :, 0].all()
    r, c = np.unravel_index(img[..., 1].argmax(), (24, 24))
    pos = np.asarray(s.metrics["xy"])
    assert abs((r + 0.5) / 24 * 9 - pos[0]) < 1.0 and abs((c + 0.5) / 24 * 13 - pos[1]) < 1.0


def test_slip_makes_dynamics_stochastic():
    env = _variant("open", slip_prob=0.5).env.unwrapped
    s = env.reset_at(jax.random.key(0), jnp.array([4.5, 4.5]))
    outs = jax.vmap(lambda k: env.step(s.replace(env_state=s.env_state.replace(key=k)),
                                       jnp.array([1.0, 0.0])).env_state.pos)(
        jax.random.split(jax.random.key(2), 64))
    assert np.unique(np.round(np.asarray(outs), 4), axis=0).shape[0] > 10


def test_bad_config():
    with pytest.raises(ValueError, match="max_step"):
        MazeConfig(max_step=1.5)
    with pytest.raises(ValueError, match="obs='rgb'.*Fix"):
        MazeConfig(obs_type="rgb")
