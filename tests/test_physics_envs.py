"""The physics mazes (pointmaze-mjx, antmaze): shapes, walls that stop the body, inertia,
bad input. One batch shape and one jitted function per env, so each compiles once."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("brax")

from hplan import envs, tasks  # noqa: E402

B, T = 6, 200  # point-mass batch and steps


@functools.cache
def _ball():
    task = tasks.load("pointmaze-mjx-large")
    env = task.env.unwrapped

    @jax.jit
    def run(xy0, actions):  # [B, 2], [B, T, 2] -> xy [B, T+1, 2], obs [B, T+1, 4]
        def one(xy, acts):
            s = env.reset_at(jax.random.key(0), xy)

            def body(s, a):
                s = env.step(s, a)
                return s, (s.metrics["xy"], s.obs)

            _, (xy_t, obs_t) = jax.lax.scan(body, s, acts)
            return (jnp.concatenate([s.metrics["xy"][None], xy_t]),
                    jnp.concatenate([s.obs[None], obs_t]))

        return jax.vmap(one)(xy0, actions)

    return task, env, run


def test_pointmaze_mjx_task_has_the_documented_shapes():
    task, env, _ = _ball()
    assert task.episode_length == 300 and task.env.action_size == 2
    assert task.env.observation_size == 4 and env.action_scale == 0.5

    @jax.jit
    def run(keys):  # the wrapped task env: reset, then 3 steps of full force
        s0 = jax.vmap(task.env.reset)(keys)
        s, _ = jax.lax.scan(lambda s, a: (jax.vmap(task.env.step)(s, a), None), s0,
                            jnp.ones((3, 4, 2)))
        return s0, s

    s0, s = run(jax.random.split(jax.random.key(0), 4))
    assert s0.obs.shape == (4, 4) and s0.metrics["xy"].shape == (4, 2)
    np.testing.assert_array_equal(s0.obs[:, 2:], 0.0)  # at rest
    np.testing.assert_array_equal(s0.info["goal_obs"][:, 2:], 0.0)  # goals at rest
    np.testing.assert_allclose(s0.metrics["xy"], np.floor(s0.metrics["xy"]) + 0.5)  # starts
    assert s.obs.shape == (4, 4) and np.isfinite(np.asarray(s.obs)).all()
    assert s.metrics["success"].shape == (4,) and s.info["t"].tolist() == [3] * 4
    speed = np.abs(np.asarray(s.obs[:, 2:])).max(1)  # a start has a wall on one side
    assert np.all((speed > 0.3) & (speed < 1.0))


def test_a_ball_pushed_at_walls_never_crosses_them():
    """Full force into a wall (and into corners) for 200 steps: the ball stops at the wall
    (its centre a radius away) and its cell is always free."""
    _, env, run = _ball()
    # large: row 0 and col 0 are walls; (2, 1) and (2, 2) are walls below (1, 1)-(1, 2).
    xy0 = jnp.array([[1.5, 1.5], [1.5, 1.5], [1.5, 2.5], [1.5, 1.5], [3.5, 5.5], [1.5, 14.5]])
    push = np.array([[-1, 0], [0, -1], [1, 0], [-1, -1], [1, -1], [-1, 1]], np.float32)
    xy, _ = run(xy0, jnp.broadcast_to(jnp.asarray(push)[:, None], (B, T, 2)))
    xy = np.asarray(xy)
    cells = np.floor(xy).astype(int)
    assert not env.layout.walls[cells[..., 0], cells[..., 1]].any()
    radius = 0.25 / env.cell_size
    assert np.all(xy[0, :, 0] > 1.0) and abs(xy[0, -1, 0] - (1 + radius)) < 0.01  # top
    assert np.all(xy[1, :, 1] > 1.0) and abs(xy[1, -1, 1] - (1 + radius)) < 0.01  # left
    assert np.all(xy[2, :, 0] < 2.0) and abs(xy[2, -1, 0] - (2 - radius)) < 0.01  # below
    np.testing.assert_allclose(xy[3, -1], 1 + radius, atol=0.01)  # into the corner
    np.testing.assert_allclose(xy[4, -1], [6 - radius, 1 + radius], atol=0.01)  # slid
    np.testing.assert_allclose(xy[5, -1], [1 + radius, 16 - radius], atol=0.01)


def test_the_ball_has_inertia():
    """From rest under full force it speeds up over several steps towards `max_step`
    cells per step; with the force off it coasts; full reverse force brakes it."""
    _, env, run = _ball()
    acts = np.zeros((B, T, 2), np.float32)
    acts[:, :10, 1] = 1.0  # along the open corridor of row 1 (cols 1..15)
    acts[1, 10:, 1] = -1.0  # brake
    xy, obs = run(jnp.tile(jnp.array([[1.5, 1.5]]), (B, 1)), jnp.asarray(acts))
    v = np.asarray(obs)[:, :, 3] * env.action_scale  # cells per step along col
    assert 0 < v[0, 1] < 0.5 * v[0, 10] and v[0, 1] < v[0, 2] < v[0, 3]
    assert 0.35 < v[0, 10] <= 0.5 + 1e-3  # near the terminal speed, not above it
    assert v[0, 13] > 0.3 * v[0, 10]  # coasting without force
    assert v[1, 13] < v[0, 13] and np.asarray(xy)[1, -1, 1] < np.asarray(xy)[0, -1, 1]


@functools.cache
def _ant(backend: str):
    spec = tasks.load("antmaze-large").spec
    spec = dataclasses.replace(spec, env_args={**spec.env_args, "backend": backend})
    task = tasks.build(spec, base_dir=tasks.TASKS_DIR)
    env = task.env.unwrapped
    assert env.config.backend == backend

    @jax.jit
    def run(xy0, vel0, key):  # [8, 2] cells, [8, 2] world m/s: 60 steps of random torques
        def one(xy, vel, k):
            s0 = env.reset_at(k, xy)
            qd = jnp.zeros(14).at[:2].set(vel)
            s = env.state_of(env.pipeline.init(s0.env_state.q, qd))
            acts = jax.random.uniform(k, (60, 8), minval=-1, maxval=1)

            def body(s, a):
                s = env.step(s, a)
                return s, s.metrics["xy"]

            last, xy_t = jax.lax.scan(body, s, acts)
            return jnp.concatenate([s.metrics["xy"][None], xy_t]), last.obs

        return jax.vmap(one)(xy0, vel0, jax.random.split(key, xy0.shape[0]))

    return task, env, run


@pytest.mark.parametrize("backend", ["spring", pytest.param("mjx", marks=pytest.mark.slow)])
def test_the_ants_torso_never_enters_a_wall_cell(backend):
    """Thrown at walls at 10 m/s (and into a corner), with random torques: the torso is
    stopped next to the wall (with the broadphase limit after brax's numerics, the walls
    silently vanish and this fails) and never enters a wall cell; the observation is
    29-D, the action 8-D."""
    task, env, run = _ant(backend)
    assert task.env.action_size == 8 and task.env.observation_size == 29
    assert task.episode_length == 1000 and task.env.radius == 0.125
    xy0 = jnp.array([[1.5, 1.5]] * 3 + [[1.5, 2.5], [3.5, 5.5], [5.5, 1.5], [9.5, 5.5],
                                         [13.5, 3.5]])
    # world velocity: +y is up a row (towards row 0), +x along the columns
    vel = jnp.array([[0, 10], [-10, 0], [-7, 7], [0, -10], [0, -10], [10, 0], [0, 10],
                     [-10, 0]], jnp.float32)
    xy, obs = run(xy0, vel, jax.random.key(0))
    xy = np.asarray(xy)
    assert obs.shape == (8, 29) and np.isfinite(np.asarray(obs)).all()
    cells = np.floor(xy).astype(int)
    assert not env.layout.walls[cells[..., 0], cells[..., 1]].any()
    assert xy[0, :, 0].min() < 1.4  # it reached the top wall (the feet touch first) ...
    assert xy[1, :, 1].min() < 1.4  # ... and the left one


def test_bad_input_is_refused_with_a_fix():
    lay = "#####\n#S.G#\n#####"
    with pytest.raises(ValueError, match=r"cell_size=0.4 m is too small for the ball .*Fix: "
                                         r"use a cell_size above 0.5 m"):
        envs.make("pointmaze-mjx", layout=lay, cell_size=0.4)
    with pytest.raises(ValueError, match=r"too small for the ant \(it spans 2.42 m.*Fix:"):
        envs.make("antmaze", layout=lay, cell_size=2.0)
    with pytest.raises(ValueError, match=r"unknown backend 'warp'. Fix: use 'mjx'"):
        envs.make("pointmaze-mjx", layout=lay, backend="warp")
    with pytest.raises(ValueError, match=r"unknown backend 'gpu'. Fix: use 'spring' or 'mjx'"):
        envs.make("antmaze", layout=lay, backend="gpu")
    text = ('name = "x"\nenv = "antmaze"\n[env_args]\nlayout = """\n#####\n#S.G#\n#####"""\n'
            'backend = "warp"\n')
    with pytest.raises(ValueError, match=r"^x.toml:8:\d+: unknown backend 'warp'. Fix: use "):
        tasks.parse_task(text, source="x.toml")


def test_physics_task_files_load_with_their_walls():
    import mujoco

    for name in ["pointmaze-mjx-two-rooms", "pointmaze-mjx-medium", "pointmaze-mjx-large",
                 "pointmaze-mjx-trap", "pointmaze-mjx-maze32", "antmaze-medium",
                 "antmaze-large", "antmaze-medium-gait", "antmaze-large-gait",
                 "antmaze-medium-gait-fast"]:
        task = tasks.load(name)
        env = task.env.unwrapped
        assert task.env.n_pairs > 0 and env.oracle is not None
        walls = env.walls
        assert 0 < len(walls.boxes) < env.layout.walls.sum()  # merged
        m = mujoco.MjModel.from_xml_string(env.xml)
        i = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_NUMERIC, "max_geom_pairs")
        assert i >= 0 and m.numeric_adr[i] == 0  # read by index: must come first
        assert m.numeric_data[0] == walls.max_pairs > 0
    assert tasks.load("pointmaze-mjx-large").key() != tasks.load("large").key()
    gait = tasks.load("antmaze-medium-gait")
    assert gait.key() != tasks.load("antmaze-medium").key()  # another world: its own data
    assert gait.env.action_size == 2 and gait.env.unwrapped.config.gait_repeat == 10
