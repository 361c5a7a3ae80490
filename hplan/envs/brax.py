"""Any `brax.envs` environment behind hplan's `Env` protocol (registered as `brax`).

A brax env has no goal of its own here: `info["goal_obs"]` is the first observation of
the episode (hold still) and `metrics["success"]` is 0, so any agent runs on it end to
end; a goal task wraps it with a `GoalWrapper` once it gives `reset_at`/`goal_obs`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from hplan.core import ConfigError, State, register


class BraxEnv:
    """Adapter: `State.env_state` holds the whole brax state."""

    def __init__(self, name: str, backend: str = "mjx", **kwargs):
        import brax.envs

        known = sorted(brax.envs._envs)  # brax keeps its registry here
        if name not in known:
            raise ConfigError("name", f"unknown brax environment {name!r}. Known: "
                              f"{', '.join(known)}", "pick one of these")
        self.name = name
        self.inner = brax.envs.get_environment(name, backend=backend, **kwargs)

    @functools.cached_property
    def observation_size(self) -> int:
        # brax's own property runs a reset eagerly (17 s for reacher on mjx, on this CPU);
        # its shape alone costs nothing.
        return jax.eval_shape(self.inner.reset, jax.random.key(0)).obs.shape[-1]

    @property
    def action_size(self) -> int:
        return self.inner.action_size

    def reset(self, key: jax.Array) -> State:
        s = self.inner.reset(key)
        return self._wrap(s, s.obs)

    def step(self, state: State, action: jax.Array) -> State:
        return self._wrap(self.inner.step(state.env_state, action), state.info["goal_obs"])

    @staticmethod
    def _wrap(s, goal_obs) -> State:
        metrics = {k: v for k, v in s.metrics.items()}
        metrics["success"] = jnp.float32(0.0)
        return State(env_state=s, obs=s.obs, reward=s.reward, done=s.done.astype(bool),
                     metrics=metrics, info={"goal_obs": goal_obs})


register("brax", BraxEnv)
