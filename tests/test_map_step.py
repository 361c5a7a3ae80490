"""`hplan.wm.map_step`: a predictor that reads the walls where the latent says the agent
is, from a frame taken at another time of the episode."""

import numpy as np
import pytest

from hplan.wm import map_step

N = 8  # frame side (pixels); the agent moves one pixel a step


def world(seed: int, episodes: int, steps: int = 24):
    """A vertical wall at a random column per episode (no door); latent = position / N;
    frames: wall and agent channels. Returns frames [E, T+1, N, N, 2], latents, actions,
    and which steps pushed into the wall from beside it."""
    rng = np.random.default_rng(seed)
    moves = np.array([[0, 1], [0, -1], [1, 0], [-1, 0]])
    obs = np.zeros((episodes, steps + 1, N, N, 2), np.uint8)
    pos = np.zeros((episodes, steps + 1, 2), np.int64)
    acts = np.zeros((episodes, steps, 2), np.float32)
    into = np.zeros((episodes, steps), bool)
    for e in range(episodes):
        wall = rng.integers(2, N - 2)
        side = rng.integers(0, 2)
        p = np.array([rng.integers(0, N), rng.integers(0, wall) if side == 0
                      else rng.integers(wall + 1, N)])
        for t in range(steps + 1):
            obs[e, t, :, wall, 0] = 255
            obs[e, t, p[0], p[1], 1] = 255
            pos[e, t] = p
            if t == steps:
                break
            a = moves[rng.integers(0, 4)]
            q = p + a
            blocked = not (0 <= q[0] < N and 0 <= q[1] < N) or q[1] == wall
            into[e, t] = q[1] == wall
            acts[e, t] = a
            p = p if blocked else q
    return obs, (pos / N).astype(np.float32), acts, into


@pytest.mark.slow
@pytest.mark.parametrize("locate,horizon", [("attention", 1), ("difference", 4)])
def test_map_step_sees_the_wall_from_a_frame_of_another_time(locate, horizon):
    obs, z, acts, _ = world(0, 512)
    model, loss = map_step.fit(obs, z, acts, updates=1500, seed=0, lr=3e-3, horizon=horizon,
                               locate=locate)
    tobs, tz, tacts, into = world(1, 64)  # fresh episodes, fresh walls
    e, t = np.nonzero(into)
    import jax
    import jax.numpy as jnp

    step = jax.jit(jax.vmap(lambda o, zz, aa: model.step(model.context(o), zz, aa)))
    # the frame is the episode's first: the agent is elsewhere in it
    pred = np.asarray(step(jnp.asarray(tobs[e, 0]), jnp.asarray(tz[e, t]),
                           jnp.asarray(tacts[e, t])))
    moved = np.linalg.norm(pred - tz[e, t], axis=-1) * N  # pixels
    assert len(e) > 50
    assert np.median(moved) < 0.3, f"pushes into the wall moved {np.median(moved):.2f} px"
    free = ~into & (np.linalg.norm(tz[:, 1:] - tz[:, :-1], axis=-1) > 0)
    fe, ft = np.nonzero(free)
    fp = np.asarray(step(jnp.asarray(tobs[fe, 0]), jnp.asarray(tz[fe, ft]),
                         jnp.asarray(tacts[fe, ft])))
    assert np.median(np.linalg.norm(fp - tz[fe, ft], axis=-1) * N) > 0.7


def test_map_step_refuses_flat_frames():
    with pytest.raises(ValueError, match="pixel task"):
        map_step.fit(np.zeros((10, 8, 8, 2)), np.zeros((10, 2)), np.zeros((10, 2)), 1)
    obs, z, acts, _ = world(0, 2, steps=4)
    with pytest.raises(ValueError, match="locate"):
        map_step.fit(obs, z, acts, 1, locate="nearest")
    with pytest.raises(ValueError, match="horizon"):
        map_step.fit(obs, z, acts, 1, horizon=5)


def test_moved_finds_what_differs_between_two_frames_of_one_map():
    import jax.numpy as jnp

    obs, _, _, _ = world(3, 1, steps=12)
    now, then = obs[0, 12], obs[0, 0]
    p, ok = map_step.moved(jnp.asarray(now[None]), jnp.asarray(then[None]))
    r, c = np.argwhere(now[..., 1])[0]  # the agent's pixel now
    assert (now != then).any() and bool(ok[0])  # the agent moved in these 12 steps
    assert int(np.argmax(p[0])) == (r // 2) * (N // 2) + c // 2
    assert np.isclose(float(p[0].sum()), 1.0)
    same, none = map_step.moved(jnp.asarray(then[None]), jnp.asarray(then[None]))
    assert not bool(none[0]) and float(same.sum()) == 0.0


def test_fitted_model_is_saved_beside_the_stack_and_restored(tmp_path):
    import jax.numpy as jnp
    from flax import nnx

    from hplan.wm.fitted import load_or_fit

    obs, z, acts, _ = world(0, 16, steps=4)
    shape, d = obs.shape[2:], z.shape[-1]

    def skeleton():
        return map_step.MapStep(shape, d, 2, nnx.Rngs(0))

    path = tmp_path / "fitted" / "map-3-s0"
    model = load_or_fit(path, skeleton, lambda: map_step.fit(obs, z, acts, 3)[0],
                        map_step.MapStepModel)

    def never():
        raise AssertionError("fitted again although it was saved")

    again = load_or_fit(path, skeleton, never, map_step.MapStepModel)
    c0, c1 = model.context(jnp.asarray(obs[0, 0])), again.context(jnp.asarray(obs[0, 0]))
    a = jnp.asarray(acts[0, 0])
    assert again.unit == model.unit
    assert jnp.allclose(model.step(c0, z[0, 0], a), again.step(c1, z[0, 0], a))
    (path / "unit.json").unlink()  # a save killed before its last write is fitted again
    assert load_or_fit(path, skeleton, lambda: model, map_step.MapStepModel) is model


def test_a_map_step_on_state_observations_is_refused_with_the_fix():
    from types import SimpleNamespace

    from hplan.agents.context import Context
    from hplan.core import ConfigError

    data = SimpleNamespace(obs=np.zeros((4, 9, 4), np.float32),
                           actions=np.zeros((4, 8, 2), np.float32))
    ctx = Context(task=None, stack=None, data=data, scale=1.0)
    with pytest.raises(ConfigError, match="pixel task"):
        ctx.frame_step(3000, kind="map", horizon=8)
