"""What a goal-reaching task adds to an environment, as wrappers (brax style).

- `GoalWrapper`: start/goal pairs drawn from a table in goal space, staged waypoints, the
  goal observation in `info["goal_obs"]`, `metrics["success"]` once the last target is
  reached. It needs three hooks of the inner env: `reset_at(key, xy)` (the agent placed
  at a goal-space point), `goal_obs(xy)` (what the agent would observe there) and
  `metrics["xy"]` (where it is). With `contexts` (one per pair: which map of a family
  the pair is on), the env takes it as `reset_at(key, xy, context=c)` and
  `goal_obs(xy, c)`, and keeps it in `info["context"]`.
- `ActionFilter`: guardrails that act on actions (a speed limit), applied to every action
  the env executes and exposed as `action_filter` so planners apply it in their rollouts.
- `EpisodeLength`: `done` after a fixed number of steps, the step count in `info["t"]`.
"""

from __future__ import annotations

from collections.abc import Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

from hplan.core import ConfigError, SpeedLimit, State, Wrapper


def clip_actions(a: jax.Array) -> jax.Array:
    """The default action filter: the action box [-1, 1]."""
    return jnp.clip(jnp.where(jnp.isfinite(a), a, 0.0), -1.0, 1.0)


class GoalWrapper(Wrapper):
    """Episode i starts at `starts[i]` and must reach `waypoints` in order, then
    `goals[i]` (all [., 2] goal-space points), each within `radius`."""

    def __init__(self, env, starts: np.ndarray, goals: np.ndarray,
                 waypoints: np.ndarray | None = None, radius: float = 0.5,
                 contexts: np.ndarray | None = None):
        super().__init__(env)
        starts, goals = np.asarray(starts, np.float32), np.asarray(goals, np.float32)
        if starts.ndim != 2 or starts.shape != goals.shape or len(starts) == 0:
            raise ConfigError("start_goal", f"starts {starts.shape} and goals {goals.shape} "
                              "must both be [n > 0, d]", "give at least one start/goal pair")
        if radius <= 0:
            raise ConfigError("success_radius", f"success_radius={radius} must be > 0",
                              "use a positive radius")
        self.starts, self.goals = jnp.asarray(starts), jnp.asarray(goals)
        wp = np.zeros((0, starts.shape[1]), np.float32) if waypoints is None else waypoints
        self.waypoints = jnp.asarray(np.asarray(wp, np.float32).reshape(-1, starts.shape[1]))
        self.radius = float(radius)
        if contexts is not None:
            contexts = np.asarray(contexts, np.int32)
            if contexts.shape != (len(starts),):
                raise ConfigError("start_goal", f"contexts {contexts.shape} must be one per "
                                  f"start/goal pair ({len(starts)})", "give one map per pair")
            contexts = jnp.asarray(contexts)
        self.contexts = contexts

    @property
    def n_pairs(self) -> int:
        return self.starts.shape[0]

    @property
    def n_targets(self) -> int:
        return self.waypoints.shape[0] + 1

    def reset(self, key: jax.Array) -> State:
        """A start/goal pair drawn at random."""
        k_pair, k_rest = jax.random.split(key)
        return self.reset_pair(k_rest, jax.random.randint(k_pair, (), 0, self.n_pairs))

    def reset_pair(self, key: jax.Array, i: jax.Array) -> State:
        """Pair `i` of the table (a benchmark can enumerate them)."""
        if self.contexts is None:
            state = self.env.reset_at(key, self.starts[i])
        else:
            state = self.env.reset_at(key, self.starts[i], context=self.contexts[i])
        targets = jnp.concatenate([self.waypoints, self.goals[i][None]], axis=0)
        return self._goal(state, targets, jnp.int32(0))

    def step(self, state: State, action: jax.Array) -> State:
        targets, stage = state.info["targets"], state.info["stage"]
        state = self.env.step(state, action)
        k = targets.shape[0]
        cur = targets[jnp.minimum(stage, k - 1)]
        hit = (jnp.linalg.norm(state.metrics["xy"] - cur) < self.radius) & (stage < k)
        state = self._goal(state, targets, stage + hit.astype(jnp.int32))
        return state.replace(reward=hit.astype(jnp.float32))

    def _goal(self, state: State, targets: jax.Array, stage: jax.Array) -> State:
        k = targets.shape[0]
        target = targets[jnp.minimum(stage, k - 1)]
        done = stage >= k
        metrics = {**state.metrics, "success": done.astype(jnp.float32),
                   "distance": jnp.linalg.norm(state.metrics["xy"] - targets[-1]),
                   "stage": stage.astype(jnp.float32)}
        goal_obs = (self.env.goal_obs(target) if self.contexts is None
                    else self.env.goal_obs(target, state.info["context"]))
        info = {**state.info, "goal_obs": goal_obs, "target_xy": target,
                "targets": targets, "stage": stage}
        return state.replace(done=done, metrics=metrics, info=info)


class ActionFilter(Wrapper):
    """Hard guardrails on actions: the tightest of `limits`, projected before each step."""

    def __init__(self, env, limits: Sequence[SpeedLimit]):
        super().__init__(env)
        scale = getattr(env, "action_scale", None)
        if limits and scale is None:
            raise ConfigError("max_speed", "a speed limit needs the env's action_scale (goal-"
                              "space displacement of a unit action), which this env lacks",
                              "drop the speed_limit guardrail for this env")
        self.limit = min(limits, key=lambda g: g.max_speed) if limits else None

    def action_filter(self, a: jax.Array) -> jax.Array:
        inner = self.env.action_filter(a) if hasattr(self.env, "action_filter") else a
        if self.limit is None:
            return clip_actions(inner)
        return self.limit.project(inner, self.env.action_scale)

    def step(self, state: State, action: jax.Array) -> State:
        return self.env.step(state, self.action_filter(action))


class EpisodeLength(Wrapper):
    """`done` once `length` steps have passed (or the inner env is done)."""

    def __init__(self, env, length: int):
        super().__init__(env)
        if not (isinstance(length, int) and length > 0):
            raise ConfigError("episode_length", f"episode_length={length!r} must be a "
                              "positive integer", "set episode_length to e.g. 100")
        self.length = length

    def reset(self, key: jax.Array) -> State:
        return self._count(self.env.reset(key), jnp.int32(0))

    def reset_pair(self, key: jax.Array, i: jax.Array) -> State:
        return self._count(self.env.reset_pair(key, i), jnp.int32(0))

    def step(self, state: State, action: jax.Array) -> State:
        t = state.info["t"]
        return self._count(self.env.step(state, action), t + 1)

    def _count(self, state: State, t: jax.Array) -> State:
        chex.assert_rank(t, 0)
        return state.replace(done=state.done | (t >= self.length),
                             info={**state.info, "t": t})
