"""Point-mass maze in pure JAX: solid walls, sliding contact, optional slip and pixels.

Coordinates are continuous (row, col) in cell units: cell (r, c) covers
[r, r+1) x [c, c+1). The action is a 2-D velocity in [-1, 1]^2 scaled by `max_step`
(< 1 cell), applied one axis at a time so that the agent slides along walls and can
never enter or tunnel through one.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from hplan.env import State
from hplan.layout import Layout

_EPS = 1e-3  # keeps a blocked agent strictly inside its free cell


@struct.dataclass
class MazeState:
    pos: jax.Array  # [2] (row, col)
    targets: jax.Array  # [K, 2] waypoints then final goal
    stage: jax.Array  # index of the current target; K means done
    t: jax.Array
    key: jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class MazeConfig:
    max_step: float = 0.5
    success_radius: float = 0.5
    slip_prob: float = 0.0  # chance an action is replaced by a random one
    obs_type: str = "state"  # "state" or "pixels"
    image_size: int = 32
    start_jitter: float = 0.0  # uniform jitter (cells) around start cell centres, < 0.5

    def __post_init__(self):
        if not 0 < self.max_step < 1:
            raise ValueError(f"max_step={self.max_step} must be in (0, 1) cells; "
                             "larger steps could jump across a wall")
        if self.obs_type not in ("state", "pixels"):
            raise ValueError(f"obs_type={self.obs_type!r}; use 'state' or 'pixels'")
        if not 0 <= self.start_jitter < 0.5:
            raise ValueError(f"start_jitter={self.start_jitter} must be in [0, 0.5)")
        if not 0 <= self.slip_prob <= 1:
            raise ValueError(f"slip_prob={self.slip_prob} must be in [0, 1]")


class PointMaze:
    """Maze environment. Starts/goals come from candidate cell pairs sampled at reset."""

    def __init__(self, layout: Layout, starts: np.ndarray, goals: np.ndarray,
                 waypoints: np.ndarray | None = None, config: MazeConfig = MazeConfig()):
        starts, goals = np.asarray(starts, np.int32), np.asarray(goals, np.int32)
        if starts.ndim != 2 or starts.shape[1] != 2 or starts.shape != goals.shape:
            raise ValueError(f"starts {starts.shape} and goals {goals.shape} must both be [n, 2]")
        if len(starts) == 0:
            raise ValueError("no start/goal pairs; relax min_distance or change the layout")
        for name, cells in (("start", starts), ("goal", goals)):
            bad = layout.walls[cells[:, 0], cells[:, 1]]
            if bad.any():
                raise ValueError(f"{name} cell {tuple(cells[bad][0])} is a wall")
        self.layout = layout
        self.config = config
        self.walls = jnp.asarray(layout.walls)
        self.starts = jnp.asarray(starts)
        self.goals = jnp.asarray(goals)
        wp = np.zeros((0, 2), np.float32) if waypoints is None else np.asarray(waypoints, float)
        self.waypoints = jnp.asarray(wp.reshape(-1, 2) + 0.5, jnp.float32)
        h, w = layout.shape
        self._scale = jnp.array([h, w], jnp.float32)
        self._wall_image = jnp.asarray(self._render_walls(layout.walls, config.image_size))

    # -- protocol -------------------------------------------------------------------------
    @property
    def action_size(self) -> int:
        return 2

    @property
    def observation_size(self) -> int | tuple[int, ...]:
        if self.config.obs_type == "pixels":
            return (self.config.image_size, self.config.image_size, 2)
        return 2

    @property
    def n_targets(self) -> int:
        return self.waypoints.shape[0] + 1

    @property
    def n_pairs(self) -> int:
        return self.starts.shape[0]

    def reset(self, key: jax.Array) -> State:
        """A start/goal pair drawn at random."""
        k_pair, k_rest = jax.random.split(key)
        return self.reset_pair(k_rest, jax.random.randint(k_pair, (), 0, self.n_pairs))

    def reset_pair(self, key: jax.Array, i: jax.Array) -> State:
        """Start/goal pair `i` (an index into the task's pairs)."""
        k_jit, k_next = jax.random.split(key)
        jitter = self.config.start_jitter * jax.random.uniform(k_jit, (2,), minval=-1, maxval=1)
        pos = self.starts[i].astype(jnp.float32) + 0.5 + jitter
        goal = self.goals[i].astype(jnp.float32) + 0.5
        targets = jnp.concatenate([self.waypoints, goal[None]], axis=0)
        ms = MazeState(pos=pos, targets=targets, stage=jnp.int32(0), t=jnp.int32(0), key=k_next)
        return self._state(ms, reward=jnp.float32(0))

    def reset_at(self, key: jax.Array, pos: jax.Array) -> State:
        """Reset with the agent placed at `pos` (continuous cell coordinates)."""
        state = self.reset(key)
        ms = state.env_state.replace(pos=jnp.asarray(pos, jnp.float32))
        return self._state(ms, reward=state.reward)

    def step(self, state: State, action: jax.Array) -> State:
        ms: MazeState = state.env_state
        action = self._sanitize(action)
        key, k_slip, k_rand = jax.random.split(ms.key, 3)
        if self.config.slip_prob > 0:
            slip = jax.random.uniform(k_slip) < self.config.slip_prob
            action = jnp.where(slip, jax.random.uniform(k_rand, (2,), minval=-1, maxval=1), action)
        pos = self.move(ms.pos, action)
        # Advance through staged targets in order; reaching the last one ends the episode.
        k = ms.targets.shape[0]
        cur = ms.targets[jnp.minimum(ms.stage, k - 1)]
        hit = (jnp.linalg.norm(pos - cur) < self.config.success_radius) & (ms.stage < k)
        stage = ms.stage + hit.astype(jnp.int32)
        ms = ms.replace(pos=pos, stage=stage, t=ms.t + 1, key=key)
        reward = hit.astype(jnp.float32)
        return self._state(ms, reward=reward)

    # -- dynamics -------------------------------------------------------------------------
    def move(self, pos: jax.Array, action: jax.Array) -> jax.Array:
        """True dynamics: pos' = pos + max_step * clip(action), blocked by walls per axis."""
        delta = self.config.max_step * self._sanitize(action)
        pos = self._move_axis(pos, delta[0], 0)
        return self._move_axis(pos, delta[1], 1)

    def _move_axis(self, pos: jax.Array, d: jax.Array, axis: int) -> jax.Array:
        cell = jnp.floor(pos).astype(jnp.int32)
        new = pos[axis] + d
        tgt = cell.at[axis].set(jnp.floor(new).astype(jnp.int32))
        blocked = self._is_wall(tgt)
        edge = jnp.where(d > 0, cell[axis] + 1 - _EPS, cell[axis] + _EPS)
        new = jnp.where(blocked, edge, new)
        return pos.at[axis].set(new)

    def _is_wall(self, cell: jax.Array) -> jax.Array:
        h, w = self.walls.shape
        inside = (cell[0] >= 0) & (cell[0] < h) & (cell[1] >= 0) & (cell[1] < w)
        safe = jnp.clip(cell, 0, jnp.array([h - 1, w - 1]))
        return ~inside | self.walls[safe[0], safe[1]]

    @staticmethod
    def _sanitize(action: jax.Array) -> jax.Array:
        action = jnp.asarray(action, jnp.float32)
        return jnp.clip(jnp.where(jnp.isfinite(action), action, 0.0), -1.0, 1.0)

    # -- observations ---------------------------------------------------------------------
    def observe(self, pos: jax.Array) -> jax.Array:
        """Observation of an agent at `pos` (also used to encode goals)."""
        if self.config.obs_type == "pixels":
            return self._render_agent(pos)
        return pos / self._scale * 2.0 - 1.0

    def pos_from_obs(self, obs: jax.Array) -> jax.Array:
        """Inverse of `observe` for state observations."""
        return (obs + 1.0) / 2.0 * self._scale

    def _state(self, ms: MazeState, reward: jax.Array) -> State:
        k = ms.targets.shape[0]
        target = ms.targets[jnp.minimum(ms.stage, k - 1)]
        done = ms.stage >= k
        metrics = {
            "success": done.astype(jnp.float32),
            "distance": jnp.linalg.norm(ms.pos - ms.targets[-1]),
            "stage": ms.stage.astype(jnp.float32),
        }
        info = {"goal_obs": self.observe(target), "target": target}
        return State(env_state=ms, obs=self.observe(ms.pos), reward=reward,
                     done=done, metrics=metrics, info=info)

    @staticmethod
    def _render_walls(walls: np.ndarray, size: int) -> np.ndarray:
        h, w = walls.shape
        rows = ((np.arange(size) + 0.5) / size * h).astype(int)
        cols = ((np.arange(size) + 0.5) / size * w).astype(int)
        return walls[rows][:, cols].astype(np.float32)

    def _render_agent(self, pos: jax.Array) -> jax.Array:
        size = self.config.image_size
        h, w = self.walls.shape
        u = (jnp.arange(size) + 0.5) / size
        rr, cc = u[:, None] * h, u[None, :] * w
        sigma = 0.5 * max(h, w) / size + 0.35
        blob = jnp.exp(-((rr - pos[0]) ** 2 + (cc - pos[1]) ** 2) / (2 * sigma**2))
        return jnp.stack([self._wall_image, blob], axis=-1)
