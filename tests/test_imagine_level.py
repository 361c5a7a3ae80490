"""The imagined-graph level: optimistic about walls it cannot see, it finds the way round
one by cutting where it is stopped."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hplan.agents import imagine_level as IL
from hplan.core import ConfigError

STEP = 0.5  # a full-speed step; the latent is the position itself


class FreeSpace:
    """A level-0 model that knows no walls."""

    def rollout(self, level, z, actions):
        return z + STEP * jnp.cumsum(actions, axis=0)


def critic(a, b):
    return jnp.linalg.norm(a - b, axis=-1) / STEP


def world_step(p, a):
    """A wall on x = 1 for |y| < 2.5: a move that would cross it does not happen."""
    q = p + STEP * a
    crosses = ((p[0] < 1.0) != (q[0] < 1.0)) & (jnp.abs(q[1]) < 2.5)
    return jnp.where(crosses, p, q)


def thick_step(p, a):
    """A wall filling 1 <= x < 2 for |y| < 2.5 (the graph links states within 1.5 steps,
    and walls in a maze are a cell thick: states across one are farther apart)."""
    q = p + STEP * a
    inside = (q[0] >= 1.0) & (q[0] < 2.0) & (jnp.abs(q[1]) < 2.5)
    crosses = ((p[0] < 1.0) != (q[0] < 1.0)) & (jnp.abs(q[1]) < 2.5)
    return jnp.where(inside | crosses, p, q)


class Seer:
    """A map step that reads the wall off the frame it is shown (here, a flag)."""

    def context(self, frame):
        return frame

    def step(self, ctx, z, a):
        return jnp.where(ctx > 0, thick_step(z, a), z + STEP * a)


def run(cfg, steps=120, start=(0.0, 0.0), goal=(4.0, 0.0), seer=None, world=world_step):
    level = IL.imagine_level(cfg, FreeSpace, critic, STEP, 2, seer)
    goal = jnp.asarray(goal)
    where = () if seer is None else (jnp.float32(1.0),)  # the frame shows the wall

    def body(carry, k):
        p, s = carry
        s, sub, info = level.step(s, k, p, goal, *where)
        d = sub - p
        a = d / jnp.maximum(jnp.linalg.norm(d), 1.0)  # greedy, full speed at most
        p = world(p, a)
        return (p, s), (p, info["cut"])

    s0 = level.init(jax.random.key(0), goal)
    keys = jax.random.split(jax.random.key(1), steps)
    (_, _), (ps, cuts) = jax.jit(lambda: jax.lax.scan(body, (jnp.asarray(start), s0), keys))()
    return np.asarray(ps), np.asarray(cuts)


def test_goes_straight_in_free_space():
    ps, cuts = run(IL.Config(rollouts=32, horizon=24, nodes=256), goal=(0.0, 4.0))
    assert np.linalg.norm(ps[-1] - [0.0, 4.0]) < 0.3  # and stays
    assert np.argmax(np.linalg.norm(ps - [0.0, 4.0], axis=1) < 0.3) <= 12  # 8 steps is optimal
    assert not cuts.any()


@pytest.mark.parametrize("cone,wide", [(0.0, 0.0), (0.7, 0.0), (0.0, 2.0)])
def test_finds_the_way_round_a_wall_it_cannot_see(cone, wide):
    cfg = IL.Config(rollouts=64, horizon=24, nodes=384, cone=cone, cut_wide=wide)
    ps, cuts = run(cfg)
    reached = np.linalg.norm(ps - [4.0, 0.0], axis=1) < 0.3
    assert reached.any(), ps[-1]
    assert cuts.sum() >= 1
    # Without cutting (patience longer than the episode) it stays at the wall.
    ps, cuts = run(dataclasses.replace(cfg, patience=10_000))
    assert not (np.linalg.norm(ps - [4.0, 0.0], axis=1) < 0.3).any()
    assert ps[-1][0] < 1.0


def test_imagining_with_a_map_step_goes_round_the_wall_without_touching_it():
    cfg = IL.Config(rollouts=64, horizon=24, nodes=384)
    ps, cuts = run(cfg, seer=Seer(), world=thick_step)
    reached = np.linalg.norm(ps - [4.0, 0.0], axis=1) < 0.3
    assert reached.any(), ps[-1]
    # round the wall's end is about 15 steps; at most a corner is cut on the way
    assert np.argmax(reached) <= 25 and cuts.sum() <= 2, (np.argmax(reached), cuts.sum())
    ps, blind = run(cfg, world=thick_step)  # the level-0 model: it learns the wall by touch
    assert blind.sum() >= 4
    assert not (np.linalg.norm(ps[:40] - [4.0, 0.0], axis=1) < 0.3).any()


@pytest.mark.parametrize("kw", [{"nodes": 0}, {"rollouts": 1}, {"link": 0.0},
                                {"horizon": 2, "segments": 3},
                                {"nodes": 10_000}, {"cone": 1.0}, {"cone_near": 0.0},
                                {"cut_wide": -1.0}, {"map_step": -1}, {"map_rollout": 0},
                                {"map_sharp": -1.0}])
def test_bad_config_is_refused(kw):
    with pytest.raises(ConfigError):
        IL.Config(**kw)


def test_a_wide_cut_blocks_across_its_heading_and_a_ball_does_not():
    """One cut made heading +x from the origin: a point 1.5 steps to its side is inside a
    cut 2 steps wide, outside a ball of 0.9; the point beyond it along the heading is
    outside both."""
    for wide, inside in [(0.0, False), (2.0, True)]:
        level = IL.imagine_level(IL.Config(rollouts=8, horizon=4, nodes=8, cut_wide=wide),
                                 FreeSpace, critic, STEP, 2)
        s = level.init(jax.random.key(0), jnp.asarray([4.0, 0.0]))
        s = s._replace(cuts=s.cuts.at[0].set(jnp.asarray([0.5, 0.0])),
                       n_cuts=jnp.int32(1), built=jnp.bool_(True), sub=jnp.asarray([4.0, 0.0]))
        s = s._replace(nodes=jnp.zeros_like(s.nodes).at[:3].set(
            jnp.asarray([[0.5, 0.75], [1.2, 0.0], [0.5, 1.5]])), stale=jnp.bool_(True))
        # the recompute kills nodes inside a cut: their distance to go is BIG
        s, _, _ = level.step(s, jax.random.key(1), jnp.asarray([0.0, 0.0]),
                             jnp.asarray([4.0, 0.0]))
        dead = np.asarray(s.togo[:3]) >= IL.BIG
        assert dead[0] == inside, (wide, dead)  # 1.5 steps to the side
        assert not dead[1]  # 1.4 steps ahead, beyond a cut 0.9 deep
        assert not dead[2]  # 3 steps to the side
