"""The contracts every part of hplan is written against, brax and optax style.

- `State` / `Env` / `Wrapper`: pure `reset(key)` / `step(state, action)` over a pytree.
  What consumers read lives in `state.metrics` (at least `success`; `xy` where the world
  has a position, for plots, probes and guardrails) and `state.info` (what an agent may
  read besides `obs`: `goal_obs`, the current target in goal space `target_xy`).
- `Policy`: `init(key, state)` / `step(policy_state, state) -> (policy_state, action,
  info)`; `info` is a dict of arrays recorded by the evaluator (compute counts, subgoals).
- A registry of environments: `register(name, factory)`, `make(name, **kwargs)`; a task
  file names `env = "NAME"` and may name `env_module` to import first, so a user's own
  environment needs no edit of hplan.

Optional environment hooks (absent: the benchmark prints n/a instead of failing):
`explore_reset(key)` (spread-out starts for exploration data), `oracle` (an object with
`optimal_steps(first_states)`, `geodesic(xy_a, xy_b)`, `near_obstacle(xy)`,
`region(xy)`, `draw(ax)`), `action_scale` (goal-space displacement of a unit action).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
from flax import struct


@struct.dataclass
class State:
    """One environment state; every field is a pytree, so `State` jits and vmaps."""

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


class Wrapper:
    """Wraps an `Env`; anything not overridden (hooks included) comes from the inner env."""

    def __init__(self, env):
        self.env = env

    @property
    def unwrapped(self):
        return getattr(self.env, "unwrapped", self.env)

    @property
    def observation_size(self):
        return self.env.observation_size

    @property
    def action_size(self) -> int:
        return self.env.action_size

    def reset(self, key: jax.Array) -> State:
        return self.env.reset(key)

    def step(self, state: State, action: jax.Array) -> State:
        return self.env.step(state, action)

    def __getattr__(self, name: str):
        if name == "env":  # not yet set: no recursion
            raise AttributeError(name)
        return getattr(self.env, name)


def explore_reset(env) -> Callable[[jax.Array], State]:
    """The env's spread-out reset for exploration data (`reset` where it has none)."""
    return getattr(env, "explore_reset", env.reset)


class ConfigError(ValueError):
    """A bad setting, with the key it is about (so a file reader can point at its line)."""

    def __init__(self, key: str, what: str, fix: str, at: tuple[int, int] | None = None):
        super().__init__(f"{what}. Fix: {fix}")
        self.key, self.what, self.fix = key, what, fix
        self.at = at  # (line, column) inside a multi-line value, line 1 after the key's


@dataclasses.dataclass(frozen=True)
class KeepOut:
    """Guardrail: a disc (goal-space coordinates) the agent must stay out of."""

    center: tuple[float, float]
    radius: float


@dataclasses.dataclass(frozen=True)
class SpeedLimit:
    """Guardrail: goal-space displacement per step at most `max_speed`."""

    max_speed: float

    def project(self, actions: jax.Array, action_scale: float, slack: float = 1e-3
                ) -> jax.Array:
        """Hard treatment: clip to the action box, then shrink each action onto the speed
        disc (`action_scale`: goal-space displacement of a unit action)."""
        import jax.numpy as jnp

        actions = jnp.clip(jnp.where(jnp.isfinite(actions), actions, 0.0), -1.0, 1.0)
        r = (1.0 - slack) * self.max_speed / action_scale
        n = jnp.sqrt(jnp.sum(actions * actions, axis=-1, keepdims=True) + 1e-12)
        return actions * jnp.minimum(1.0, r / n)


Guardrail = KeepOut | SpeedLimit


class Policy(NamedTuple):
    """`init(key, first_state) -> policy_state`;
    `step(policy_state, state) -> (policy_state, action, info)`. Pure: an episode is a
    `lax.scan`, a batch of episodes a `vmap`."""

    init: Callable[[jax.Array, State], Any]
    step: Callable[[Any, State], tuple[Any, jax.Array, dict]]


# -- the environment registry ---------------------------------------------------------------
_ENVS: dict[str, Callable[..., Any]] = {}
_BUILTIN = {"pointmaze": "hplan.envs.pointmaze", "pointmaze-mjx": "hplan.envs.pointmaze",
            "antmaze": "hplan.envs.pointmaze", "brax": "hplan.envs.brax"}


def register(name: str, factory: Callable[..., Any]) -> None:
    """Make `make(name, **kwargs)` call `factory(**kwargs)`."""
    _ENVS[name] = factory


def registered() -> list[str]:
    return sorted(set(_ENVS) | set(_BUILTIN))


def import_env_module(module: str) -> None:
    """Import a user's module that calls `register`; a clear error if it is missing."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise ValueError(f"env_module {module!r} cannot be imported ({e}). Fix: put the "
                         "module on PYTHONPATH (or install it), or fix its name") from None


def factory(name: str) -> Callable[..., Any]:
    """The factory registered under `name` (importing hplan's own env packages lazily)."""
    if name not in _ENVS and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in _ENVS:
        raise ValueError(f"unknown env {name!r}. Registered: {', '.join(registered())}. Fix: "
                         "pick one of these, or name the module that registers it with "
                         "env_module = \"your.module\"")
    return _ENVS[name]


def make(name: str, /, **kwargs):
    """Build the environment registered as `name` with the factory's keyword arguments."""
    import inspect

    fn = factory(name)
    params = inspect.signature(fn).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise ValueError(f"env {name!r} does not take {', '.join(map(repr, unknown))}. "
                             f"Fix: use only {', '.join(params) or 'no arguments'}")
    return fn(**kwargs)
