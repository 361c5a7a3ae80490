"""The ant's locomotion primitive (`hplan.envs.pointmaze.gait`) and the gait-driven ant
maze: rotation invariance of its input, that the shipped gait follows commands and stops,
that walls still stop the torso, bad input."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("brax")

from hplan import envs, tasks  # noqa: E402
from hplan.envs.pointmaze import gait  # noqa: E402
from hplan.envs.pointmaze.ant import yaw_quaternion  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(yaw=st.floats(-3.1, 3.1), turn=st.floats(-3.1, 3.1),
       cmd=st.tuples(st.floats(-1, 1), st.floats(-1, 1)),
       vel=st.tuples(st.floats(-3, 3), st.floats(-3, 3)))
def test_the_gait_sees_the_same_thing_whatever_the_ants_heading(yaw, turn, cmd, vel):
    """Turning the ant, its velocity and the command together by any angle leaves the
    gait's input unchanged (it is in the torso's heading frame)."""
    def rot(v, a):
        return jnp.array([np.cos(a) * v[0] - np.sin(a) * v[1],
                          np.sin(a) * v[0] + np.cos(a) * v[1]])

    rest = jnp.linspace(-1, 1, 27)

    def body(a):
        v = rot(jnp.array(vel), a)
        return rest.at[1:5].set(yaw_quaternion(jnp.float32(yaw + a))).at[13:15].set(v)

    x0 = gait.heading_frame(body(0.0), jnp.array(cmd))
    x1 = gait.heading_frame(body(turn), rot(jnp.array(cmd), turn))
    keep = np.r_[0, 5:30]  # the quaternion itself turns, of course
    np.testing.assert_allclose(np.asarray(x0)[keep], np.asarray(x1)[keep], atol=2e-4)


GAITS = ["gaits/ant.msgpack", "gaits/ant-fast.msgpack"]  # shipped: 2 and 3 m/s at |c| = 1


@functools.cache
def _walked(path: str):
    """Commands in 6 directions at full size and a zero command, held 24 steps (6 s) from
    an open room's centre: the env, the torso's move (metres) and its heights."""
    env = envs.make("antmaze", layout=gait.open_room(7), gait=path,
                    base_dir=str(tasks.TASKS_DIR)).unwrapped
    ang = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    cmds = np.concatenate([np.stack([np.cos(ang), np.sin(ang)], 1), [[0, 0]]])
    xy, height = jax.jit(lambda c, k: gait.walk(env, c, jnp.array([4.5, 4.5]), 24, k))(
        jnp.asarray(cmds, jnp.float32), jax.random.key(3))
    world = np.asarray(env.to_world(xy))
    return env, cmds, world[:, -1] - world[:, 0], np.asarray(height)


@pytest.mark.parametrize("path", GAITS)
def test_the_shipped_gaits_walk_where_told_and_stand_when_told(path):
    """The torso goes the commanded way (cosine > 0.8) at least at a third of the
    commanded speed; with a zero command it stays within half a metre; it never flips."""
    env, cmds, moved, height = _walked(path)
    assert env.action_size == 2 and env.observation_size == 29
    speed, seconds = env.max_speed, 24 * env.config.dt
    for m, c in zip(moved[:6], cmds[:6], strict=True):
        assert m @ c / np.linalg.norm(m) > 0.8, (m, c)
        assert np.linalg.norm(m) > speed * seconds / 3, (m, c)
    assert np.linalg.norm(moved[6]) < 0.5
    assert (height[:, -1] > 0.2).all()


def test_the_fast_gait_covers_more_ground_at_full_command():
    """What antmaze-medium-gait-fast is for: at full command it travels clearly further
    in the same 6 s than the 2 m/s gait (measured 2.46 against 1.80 m/s over 10 s)."""
    slow = np.median(np.linalg.norm(_walked(GAITS[0])[2][:6], axis=1))
    fast_env, _, moved, _ = _walked(GAITS[1])
    assert fast_env.max_speed == 3.0
    assert np.median(np.linalg.norm(moved[:6], axis=1)) > 1.2 * slow


def test_a_gait_needs_a_file_and_the_spring_backend():
    lay = "#####\n#S.G#\n#####"
    with pytest.raises(ValueError, match=r"no gait file at .*nope.msgpack.*Fix: train one"):
        envs.make("antmaze", layout=lay, gait="/nope.msgpack")
    with pytest.raises(ValueError, match=r"trained on the spring backend.*Fix: use backend"):
        envs.make("antmaze", layout=lay, gait="/nope.msgpack", backend="mjx")
    with pytest.raises(ValueError, match=r"gait_repeat=0.*Fix: use a whole number"):
        envs.make("antmaze", layout=lay, gait="/nope.msgpack", gait_repeat=0)
    with pytest.raises(ValueError, match=r"pillars=1.5.*Fix: use a share"):
        gait.GaitConfig(pillars=1.5)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(3, 14), density=st.floats(0.0, 0.4))
def test_a_pillar_room_is_one_walled_region(seed, n, density):
    """The room the gait can train among walls in: walled all round, its floor one
    4-connected region, no bigger than asked."""
    from hplan.envs.pointmaze import generate
    from hplan.envs.pointmaze.layout import bfs

    layout = generate.pillar_room(np.random.default_rng(seed), n, density)
    w = layout.walls
    assert w[0].all() and w[-1].all() and w[:, 0].all() and w[:, -1].all()
    assert w.shape[0] <= n + 2 and w.shape[1] <= n + 2
    free = layout.free_cells
    reach = bfs(w, tuple(free[0]))
    assert (reach[~w] >= 0).all()


def test_a_saved_gait_reads_back_as_a_restart_point(tmp_path):
    """`save` then `load_params` gives the same policy parameters and PPO's own normalizer
    counter type (a fine-tune restarts from it); unknown config keys are ignored."""
    from brax.training import types

    stats, policy, config = gait.load_params(tasks.TASKS_DIR / "gaits/ant.msgpack")
    assert isinstance(stats.count, types.UInt64)
    path = gait.save((stats, policy), tmp_path / "g.msgpack", config)
    stats2, policy2, config2 = gait.load_params(path)
    assert config2 == config
    from flax import serialization

    blob = serialization.msgpack_restore(path.read_bytes())
    blob["config"]["from_a_later_version"] = 1
    path.write_bytes(serialization.msgpack_serialize(blob))
    assert gait.load_params(path)[2] == config
    for a, b in zip(jax.tree.leaves(policy), jax.tree.leaves(policy2), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_the_walled_training_env_starts_the_ant_on_the_floor():
    """With `pillars`, the PPO env is the maze env's physics (walls included) and every
    reset stands the ant on a free cell of its pillar room."""
    env = gait.command_ant(gait.GaitConfig(pillars=0.2, room=6))
    s = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), 16))
    assert s.obs.shape == (16, gait.GAIT_OBS)
    assert env.sys.ngeom > gait.command_ant(gait.GaitConfig()).sys.ngeom  # the walls
    pos = np.asarray(s.pipeline_state.q[:, :2])
    cells = np.floor(np.stack([-pos[:, 1], pos[:, 0]], 1) / 4.0).astype(int)
    from hplan.envs.pointmaze import generate

    walls = generate.pillar_room(np.random.default_rng(0), 6, 0.2).walls
    assert not walls[cells[:, 0], cells[:, 1]].any()
