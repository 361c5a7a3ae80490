import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("brax")

from hplan.brax_env import BraxEnv  # noqa: E402


def test_reacher_behind_the_protocol():
    env = BraxEnv("reacher")
    assert env.action_size == 2 and env.observation_size == 11
    reset, step = jax.jit(env.reset), jax.jit(env.step)
    s = reset(jax.random.key(0))
    s1 = step(s, jnp.ones(2))
    s2 = step(s1, jnp.ones(2))
    assert s2.obs.shape == (11,) and np.isfinite(np.asarray(s2.obs)).all()
    # Torque moves the arm: the observation changes.
    assert not np.allclose(s.obs, s2.obs)


def test_unknown_brax_env():
    with pytest.raises(ValueError, match="unknown brax environment 'nope'. Known: .*reacher"):
        BraxEnv("nope")
