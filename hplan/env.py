"""Environment protocol, brax style: pure `reset(key)` / `step(state, action)` over `State`."""

from __future__ import annotations

from typing import Any, Protocol

import jax
from flax import struct


@struct.dataclass
class State:
    """One environment state. Every field is a pytree, so `State` jits and vmaps.

    `env_state` is the physics/internal state (maze position, brax pipeline state);
    `info` carries what an agent may read besides `obs`, e.g. `goal_obs`.
    """

    env_state: Any
    obs: jax.Array
    reward: jax.Array
    done: jax.Array
    metrics: dict[str, jax.Array] = struct.field(default_factory=dict)
    info: dict[str, Any] = struct.field(default_factory=dict)


class Env(Protocol):
    """What every hplan environment provides."""

    @property
    def observation_size(self) -> int | tuple[int, ...]: ...

    @property
    def action_size(self) -> int: ...

    def reset(self, key: jax.Array) -> State: ...

    def step(self, state: State, action: jax.Array) -> State: ...
