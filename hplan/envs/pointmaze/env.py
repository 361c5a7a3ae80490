"""Point-mass maze in pure JAX: solid walls, sliding contact, optional slip and pixels.

One maze or a family of same-sized maps (`PointMaze([layout, ...])`): each episode then
lives on one of them, its index in `MazeState.context` (drawn by `explore_reset`, given to
`reset_at` and `goal_obs`), and the agent can only tell them apart by what it observes,
so a family needs pixel observations to be solvable.

Coordinates are continuous (row, col) in cell units: cell (r, c) covers
[r, r+1) x [c, c+1). The action is a 2-D velocity in [-1, 1]^2 scaled by `max_step`
(< 1 cell), applied one axis at a time so that the agent slides along walls and can
never enter or tunnel through one. Goal space is that (row, col) position
(`metrics["xy"]`); `hplan.envs.wrappers.GoalWrapper` adds starts, goals and stages.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from hplan.core import ConfigError, State
from hplan.envs.pointmaze.layout import Layout

_EPS = 1e-3  # keeps a blocked agent strictly inside its free cell


# The clock of an exploration episode: scheduled events never reach it, so exploration
# data shows the world before any change (what a model meets a changed world with).
NO_EVENTS = -(2**30)


@struct.dataclass
class MazeState:
    pos: jax.Array  # [2] (row, col)
    key: jax.Array
    t: jax.Array  # steps since reset; NO_EVENTS in exploration
    context: jax.Array  # which map of the family ([] int32; 0 for a single map)


@dataclasses.dataclass(frozen=True)
class WallEvent:
    """At step `step` of an episode the `cells` become walls (`wall`) or free."""

    step: int
    cells: tuple[tuple[int, int], ...]
    wall: bool = True


@dataclasses.dataclass(frozen=True, eq=False)
class MazeConfig:
    max_step: float = 0.5
    slip_prob: float = 0.0  # chance an action is replaced by a random one
    obs_type: str = "state"  # "state" or "pixels"
    image_size: int = 32
    events: tuple[WallEvent, ...] = ()  # a world that changes during an episode

    def __post_init__(self):
        if not 0 < self.max_step < 1:
            raise ConfigError("max_step", f"max_step={self.max_step} must be in (0, 1) "
                              "cells", "use e.g. 0.5; larger steps could jump across a wall")
        if self.obs_type not in ("state", "pixels"):
            raise ConfigError("obs", f"obs={self.obs_type!r}", "use 'state' or 'pixels'")
        if not 0 <= self.slip_prob <= 1:
            raise ConfigError("slip_prob", f"slip_prob={self.slip_prob} must be in [0, 1]",
                              "use a probability")
        if not 8 <= self.image_size <= 256:
            raise ConfigError("image_size", f"image_size={self.image_size}",
                              "use a size between 8 and 256 pixels")


class PointMaze:
    """The maze world: `reset`/`explore_reset` at a random free position, `reset_at` a
    given one; goal-space hooks for `GoalWrapper`; an `oracle` for benchmarks."""

    def __init__(self, layout: Layout | list[Layout], config: MazeConfig = MazeConfig()):
        layouts = list(layout) if isinstance(layout, list | tuple) else [layout]
        if not layouts:
            raise ConfigError("layouts", "an empty family of maps", "give at least one layout")
        h, w = layouts[0].shape
        for lay in layouts:
            if lay.shape != (h, w):
                raise ConfigError("layouts", f"{lay.source} is {lay.shape[0]}x{lay.shape[1]}"
                                  f" where {layouts[0].source} is {h}x{w}",
                                  "give every map of a family the same size")
        if len(layouts) > 1 and config.events:
            raise ConfigError("events", "events on a family of maps",
                              "schedule events on a single layout")
        self.layouts = layouts
        self.layout = layouts[0]
        self.config = config
        self.walls = jnp.asarray(self.layout.walls)
        # Free cells per map, padded by repeating the first: [V, F, 2] and counts [V].
        free = [lay.free_cells for lay in layouts]
        n = max(len(f) for f in free)
        self._free = jnp.asarray(np.stack([np.concatenate([f, np.repeat(f[:1], n - len(f), 0)])
                                           for f in free]), jnp.float32)
        self._n_free = jnp.asarray([len(f) for f in free], jnp.int32)
        self._scale = jnp.array([h, w], jnp.float32)
        # Walls per map after 0, 1, ... events (in step order): [V, E + 1, H, W], and frames.
        events = sorted(config.events, key=lambda e: e.step)
        grids = []
        for lay in layouts:
            seq = [np.asarray(lay.walls, bool)]
            for e in events:
                g = seq[-1].copy()
                for r, c in e.cells:
                    if not (0 <= r < h and 0 <= c < w):
                        raise ConfigError("events", f"event cell {(r, c)} is outside the "
                                          f"{h}x{w} layout", "give cells inside the layout")
                    g[r, c] = e.wall
                seq.append(g)
            grids.append(seq)
        self._event_steps = jnp.asarray([e.step for e in events], jnp.int32)
        self._wall_grids = jnp.asarray(np.array(grids))
        self._wall_images = jnp.asarray(np.array(
            [[self._render_walls(g, config.image_size) for g in seq] for seq in grids]))

    @property
    def n_contexts(self) -> int:
        """How many maps an episode may be on."""
        return len(self.layouts)

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
    def action_scale(self) -> float:
        """Goal-space (cells) displacement of a unit action along one axis."""
        return self.config.max_step

    @functools.cached_property
    def oracle(self):
        from hplan.envs.pointmaze.oracle import MazeOracle

        return MazeOracle(self)

    def reset(self, key: jax.Array) -> State:
        return self.explore_reset(key)

    def explore_reset(self, key: jax.Array) -> State:
        """A uniformly random map and free cell, jittered within it: exploration data then
        covers every map, not just the task's starts."""
        k_cell, k_jit, k_next = jax.random.split(key, 3)
        # One map draws as it always did (same data for a single-map task's seed).
        ctx = (jax.random.randint(jax.random.fold_in(k_cell, 1), (), 0, self.n_contexts)
               if self.n_contexts > 1 else jnp.int32(0))
        cell = self._free[ctx, jax.random.randint(k_cell, (), 0, self._n_free[ctx])]
        pos = cell + 0.5 + jax.random.uniform(k_jit, (2,), minval=-0.45, maxval=0.45)
        return self.reset_at(k_next, pos, NO_EVENTS, ctx)

    def reset_at(self, key: jax.Array, pos: jax.Array, t: int = 0, context=0) -> State:
        """The agent placed at `pos` (continuous cell coordinates) on map `context`, the
        clock at `t`."""
        ms = MazeState(pos=jnp.asarray(pos, jnp.float32), key=key, t=jnp.int32(t),
                       context=jnp.asarray(context, jnp.int32))
        return self._state(ms, reward=jnp.float32(0))

    def step(self, state: State, action: jax.Array) -> State:
        ms: MazeState = state.env_state
        action = _sanitize(action)
        key, k_slip, k_rand = jax.random.split(ms.key, 3)
        if self.config.slip_prob > 0:
            slip = jax.random.uniform(k_slip) < self.config.slip_prob
            action = jnp.where(slip, jax.random.uniform(k_rand, (2,), minval=-1, maxval=1),
                               action)
        pos = self.move(ms.pos, action, self.walls_at(ms.t, ms.context))
        new = self._state(ms.replace(pos=pos, key=key, t=ms.t + 1), jnp.float32(0))
        return new.replace(info={**state.info, **new.info},
                           metrics={**state.metrics, **new.metrics})

    def goal_obs(self, pos: jax.Array, context=0) -> jax.Array:
        """What the agent observes at `pos` on map `context`: encodes goals."""
        return self.observe(pos, None, context)

    # -- dynamics -------------------------------------------------------------------------
    def _phase(self, t: jax.Array) -> jax.Array:
        """How many events have happened by step `t`."""
        return jnp.sum(t >= self._event_steps)

    def walls_at(self, t: jax.Array, context=0) -> jax.Array:
        """The wall grid of map `context` at step `t` of an episode (the layout's, unless
        events changed it)."""
        if not self.config.events and self.n_contexts == 1:
            return self.walls
        return self._wall_grids[context, self._phase(t)]

    def move(self, pos: jax.Array, action: jax.Array, walls: jax.Array | None = None
             ) -> jax.Array:
        """True dynamics: pos' = pos + max_step * clip(action), blocked by walls per axis."""
        walls = self.walls if walls is None else walls
        delta = self.config.max_step * _sanitize(action)
        pos = self._move_axis(pos, delta[0], 0, walls)
        return self._move_axis(pos, delta[1], 1, walls)

    def _move_axis(self, pos: jax.Array, d: jax.Array, axis: int, walls: jax.Array
                   ) -> jax.Array:
        cell = jnp.floor(pos).astype(jnp.int32)
        new = pos[axis] + d
        tgt = cell.at[axis].set(jnp.floor(new).astype(jnp.int32))
        blocked = _is_wall(walls, tgt)
        edge = jnp.where(d > 0, cell[axis] + 1 - _EPS, cell[axis] + _EPS)
        new = jnp.where(blocked, edge, new)
        return pos.at[axis].set(new)

    # -- observations ---------------------------------------------------------------------
    def observe(self, pos: jax.Array, t: jax.Array | None = None, context=0) -> jax.Array:
        """State: the position scaled to [-1, 1]; pixels: a uint8 top-down frame (walls
        of map `context` at step `t`, agent), stored as observed."""
        if self.config.obs_type == "pixels":
            return self._render_agent(pos, t, context)
        return pos / self._scale * 2.0 - 1.0

    def _state(self, ms: MazeState, reward: jax.Array) -> State:
        return State(env_state=ms, obs=self.observe(ms.pos, ms.t, ms.context), reward=reward,
                     done=jnp.bool_(False), metrics={"xy": ms.pos},
                     info={"context": ms.context})

    @staticmethod
    def _render_walls(walls: np.ndarray, size: int) -> np.ndarray:
        h, w = walls.shape
        rows = ((np.arange(size) + 0.5) / size * h).astype(int)
        cols = ((np.arange(size) + 0.5) / size * w).astype(int)
        return walls[rows][:, cols].astype(np.float32)

    def _render_agent(self, pos: jax.Array, t: jax.Array | None = None, context=0
                      ) -> jax.Array:
        size = self.config.image_size
        h, w = self.walls.shape
        u = (jnp.arange(size) + 0.5) / size
        rr, cc = u[:, None] * h, u[None, :] * w
        sigma = 0.5 * max(h, w) / size + 0.35
        blob = jnp.exp(-((rr - pos[0]) ** 2 + (cc - pos[1]) ** 2) / (2 * sigma**2))
        phase = 0 if t is None or not self.config.events else self._phase(t)
        walls = self._wall_images[context, phase]
        img = jnp.stack([walls, blob], axis=-1)
        return jnp.round(255 * img).astype(jnp.uint8)


def _is_wall(walls: jax.Array, cell: jax.Array) -> jax.Array:
    h, w = walls.shape
    inside = (cell[0] >= 0) & (cell[0] < h) & (cell[1] >= 0) & (cell[1] < w)
    safe = jnp.clip(cell, 0, jnp.array([h - 1, w - 1]))
    return ~inside | walls[safe[0], safe[1]]


def _sanitize(action: jax.Array) -> jax.Array:
    action = jnp.asarray(action, jnp.float32)
    return jnp.clip(jnp.where(jnp.isfinite(action), action, 0.0), -1.0, 1.0)
