"""The frame step: a one-step predictor that reads the frame learns which pushes a wall
blocks, wherever the wall is; the chain hands the actuator the frame it asks for."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hplan.agents.actuator import MPCConfig
from hplan.agents.level import Actuator, chain
from hplan.core import ConfigError, State
from hplan.wm import frame_step as F

CELLS, PX = 8, 2  # an 8 x 8 grid of 2-pixel cells: 16 x 16 frames


def frame(row: int, col: int, wall: int) -> np.ndarray:
    """Channel 0: a wall down column `wall` (and the border); channel 1: the agent."""
    f = np.zeros((CELLS * PX, CELLS * PX, 2), np.uint8)
    f[:, wall * PX:(wall + 1) * PX, 0] = 255
    f[:PX, :, 0] = f[-PX:, :, 0] = f[:, :PX, 0] = f[:, -PX:, 0] = 255
    f[row * PX:(row + 1) * PX, col * PX:(col + 1) * PX, 1] = 255
    return f


def transitions(walls, rng, n: int):
    """(frames, z, z', actions): pushes of a full cell east or west; a wall stops them.
    The latent is the agent's (row, col) / CELLS: it knows nothing of the wall."""
    obs, z0, z1, act = [], [], [], []
    for _ in range(n):
        wall = rng.choice(walls)
        row = rng.integers(1, CELLS - 1)
        col = rng.choice([c for c in range(1, CELLS - 1) if c != wall])
        a = rng.choice([-1.0, 1.0])
        nxt = col + int(a)
        blocked = nxt in (0, CELLS - 1, wall)
        obs.append(frame(row, col, wall))
        z0.append([row / CELLS, col / CELLS])
        z1.append([row / CELLS, (col if blocked else nxt) / CELLS])
        act.append([0.0, a])
    return (np.stack(obs), np.array(z0, np.float32), np.array(z1, np.float32),
            np.array(act, np.float32))


def test_the_frame_step_learns_blocked_pushes_at_walls_it_never_saw():
    rng = np.random.default_rng(0)
    obs, z0, z1, act = transitions([2, 3], rng, 4096)  # walls in columns 2 and 3
    model, loss = F.fit(obs, z0, z1, act, updates=400, seed=0, batch=128, lr=3e-3)
    assert loss < 0.2
    t_obs, t_z0, t_z1, t_act = transitions([5], np.random.default_rng(1), 256)  # column 5
    step = jax.jit(jax.vmap(lambda o, z, a: model.step(model.context(o), z, a)))
    moved = np.abs(np.asarray(step(t_obs, t_z0, t_act))[:, 1] - t_z0[:, 1]) * CELLS
    blocked = np.isclose(t_z1[:, 1], t_z0[:, 1])
    assert blocked.sum() > 20 and (~blocked).sum() > 100
    # A model of the latent alone must answer the same for both: it cannot see the wall.
    assert np.median(moved[blocked]) < 0.3
    assert np.median(moved[~blocked]) > 0.7


def test_the_frame_step_refuses_what_is_not_a_frame():
    z = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="pixel task"):
        F.fit(np.zeros((4, 6), np.float32), z, z, z, updates=1)
    with pytest.raises(ValueError, match="one of each"):
        F.fit(np.zeros((4, 8, 8, 2), np.uint8), z, z[:3], z, updates=1)
    with pytest.raises(ConfigError, match="frame_step"):
        MPCConfig(frame_step=-1)


def test_the_chain_hands_the_actuator_the_observation_it_asks_for():
    def act(s, key, z, subgoal, obs=None):
        return s, jnp.full((2,), -1.0 if obs is None else obs.sum()), {
            "cost": 0.0, "n_evals": 0, "n_model": 0, "n_critic": 0}

    def encode(state):
        return jnp.zeros(2), jnp.zeros(2)

    state = State(env_state=None, obs=jnp.full((3, 3, 1), 2.0), reward=jnp.float32(0),
                  done=jnp.bool_(False))
    for observe, want in ((lambda st: st.obs, 18.0), (None, -1.0)):
        policy = chain([], Actuator(lambda key: jnp.zeros(()), act, observe), encode)
        _, action, _ = policy.step(policy.init(jax.random.key(0), state), state)
        assert np.allclose(action, want)
