"""brax environments behind the protocol, an agent running on one end to end."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("brax")

from hplan import envs, tasks  # noqa: E402
from hplan.agents import Context, MPCConfig, chain, encoder, mpc  # noqa: E402
from hplan.core import Policy  # noqa: E402
from hplan.data import collect  # noqa: E402
from hplan.eval.runner import evaluate  # noqa: E402
from hplan.wm.config import stack_config  # noqa: E402


def test_reacher_behind_the_protocol():
    env = envs.make("brax", name="reacher")
    assert env.action_size == 2 and env.observation_size == 11
    reset, step = jax.jit(env.reset), jax.jit(env.step)
    s = reset(jax.random.key(0))
    s1 = step(s, jnp.ones(2))
    s2 = step(s1, jnp.ones(2))
    assert s2.obs.shape == (11,) and np.isfinite(np.asarray(s2.obs)).all()
    assert not np.allclose(s.obs, s2.obs)  # torque moves the arm
    np.testing.assert_allclose(s2.info["goal_obs"], s.obs)  # the goal is held


# slow (~55 s): trains a stack; the protocol test above covers the env by default.
@pytest.mark.slow
def test_an_agent_runs_on_reacher_end_to_end():
    """Task file form, exploration data, a (tiny) world model, flat MPC over it: the same
    code path as the maze, a few steps of it."""
    task = tasks.build(tasks.TaskSpec(name="reacher", env="brax", env_args={"name": "reacher"},
                                      episode_length=4))
    ds = collect(task, jax.random.key(0), episodes=8, steps=8)
    assert ds.obs.shape == (8, 9, 11) and ds.xy is None
    from hplan.train.pipeline import train_stack

    cfg = stack_config({"wm": {"hidden": 32, "latent_dim": 4, "strides": [1, 2]},
                        "train": {"steps": 20, "chunk": 10, "rollout": [2, 2], "batch": 8},
                        "critic": {"steps": 20, "chunk": 10, "nodes": 16, "batch": 8},
                        "data": {"steps": 8}})
    st = train_stack(task, ds, None, cfg, show=False)
    ctx = Context(task, st, ds)
    policy = chain([], mpc(ctx, MPCConfig(horizon=3, iters=2, restarts=2)), encoder(st))
    assert isinstance(policy, Policy)
    out = evaluate(task, policy, jax.random.key(1), episodes=2)
    assert out["actions"].shape == (2, 4, 2) and np.isfinite(np.asarray(out["actions"])).all()
    assert np.all(np.asarray(out["info"]["n_model"]) == 2 * 2 * 3)


def test_unknown_brax_env():
    with pytest.raises(ValueError, match="unknown brax environment 'nope'. Known: .*reacher"):
        envs.make("brax", name="nope")
