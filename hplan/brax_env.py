"""Any `brax.envs` environment behind hplan's `Env` protocol."""

from __future__ import annotations

import jax

from hplan.env import State


class BraxEnv:
    """Adapter: hplan `State.env_state` holds the whole brax state."""

    def __init__(self, name: str, backend: str = "mjx", **kwargs):
        import brax.envs

        known = sorted(brax.envs._envs)  # brax keeps its registry here
        if name not in known:
            raise ValueError(f"unknown brax environment {name!r}. Known: {', '.join(known)}")
        self.name = name
        self.inner = brax.envs.get_environment(name, backend=backend, **kwargs)

    @property
    def observation_size(self) -> int:
        return self.inner.observation_size

    @property
    def action_size(self) -> int:
        return self.inner.action_size

    def reset(self, key: jax.Array) -> State:
        return self._wrap(self.inner.reset(key))

    def step(self, state: State, action: jax.Array) -> State:
        return self._wrap(self.inner.step(state.env_state, action))

    @staticmethod
    def _wrap(s) -> State:
        return State(env_state=s, obs=s.obs, reward=s.reward, done=s.done,
                     metrics=dict(s.metrics), info={})
