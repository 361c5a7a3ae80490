"""What the physics mazes share: walls as merged boxes, a provably safe broadphase limit,
a brax pipeline, and the layout's coordinates.

World frame: cell (r, c) covers x in [c, c+1) * cell_size and y in (-(r+1), -r] *
cell_size (the ASCII picture seen from above), so goal space, `metrics["xy"]`, stays the
continuous (row, col) of the pure-JAX maze: `GoalWrapper`, the oracle (BFS, geodesics,
SPL) and the coverage maps work unchanged.

Contacts are what costs in MJX (a slot per wall x body-part pair), so the walls are few
boxes (runs of wall cells merged into rectangles of at most `max_len` x `max_len` cells)
and MJX's broadphase limit `max_geom_pairs` keeps only the k pairs whose bounding spheres
are nearest. k is computed here so that no touching pair can be dropped: a pair in
contact has `|c_box - p| - rbound_box - r <= 0`, so only pairs with that value <= 0 can
rank before it; k is the most such pairs any body position in the free space can have,
counted on a fine grid (with the grid's spacing added to the radius) and multiplied by
the number of colliding body parts. MJX reads `max_geom_pairs` by its index in
`numeric_data`, so it must be the FIRST `<numeric>` in `<custom>` (after a longer numeric
it reads the wrong value, 0 for brax's ant, and every wall contact silently vanishes).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from hplan.core import ConfigError, State
from hplan.envs.pointmaze.layout import Layout

BACKENDS = {"mjx": "brax.mjx.pipeline", "spring": "brax.spring.pipeline",
            "generalized": "brax.generalized.pipeline", "positional": "brax.positional.pipeline"}


def check_backend(backend: str, allowed: tuple[str, ...]) -> str:
    if backend not in allowed:
        raise ConfigError("backend", f"unknown backend {backend!r}",
                          f"use {' or '.join(map(repr, allowed))}")
    return backend


def merge_walls(walls: np.ndarray, max_len: int) -> np.ndarray:
    """Wall cells as rectangles [n, 4] of (r0, c0, r1, c1) (cells r0 <= r < r1, c0 <= c <
    c1), each at most `max_len` cells a side: greedy, a run along the row first, then as
    many rows below as the run fits."""
    h, w = walls.shape
    used = np.zeros_like(walls, dtype=bool)
    out = []
    for r in range(h):
        for c in range(w):
            if not walls[r, c] or used[r, c]:
                continue
            c1 = c + 1
            while c1 < w and c1 - c < max_len and walls[r, c1] and not used[r, c1]:
                c1 += 1
            r1 = r + 1
            while (r1 < h and r1 - r < max_len and walls[r1, c:c1].all()
                   and not used[r1, c:c1].any()):
                r1 += 1
            used[r:r1, c:c1] = True
            out.append((r, c, r1, c1))
    return np.asarray(out, np.int64).reshape(-1, 4)


def padded_walls(layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """The wall grid with a ring of wall cells added on each side that has a free cell
    on its edge (outside the layout is solid, as in the pure-JAX maze), and the (row,
    col) offset of the layout inside it."""
    walls = layout.walls
    pad = [int(not walls[0].all()), int(not walls[-1].all()),
           int(not walls[:, 0].all()), int(not walls[:, -1].all())]
    grid = np.pad(walls, ((pad[0], pad[1]), (pad[2], pad[3])), constant_values=True)
    return grid, np.array([pad[0], pad[2]])


def pairs_needed(layout: Layout, boxes: np.ndarray, reach: float, half_height: float,
                 parts: int, res: int = 8) -> int:
    """The broadphase k that never drops a touching (body part, wall box) pair (see the
    module docstring). `boxes` in layout cells; `reach` (largest part radius) and
    `half_height` (boxes' z half size) in cells."""
    if len(boxes) == 0:
        return 0
    h, w = layout.shape
    counts = np.zeros((h * res, w * res), np.int32)  # boxes near each sample point
    u = (np.arange(counts.shape[0]) + 0.5) / res, (np.arange(counts.shape[1]) + 0.5) / res
    for r0, c0, r1, c1 in boxes:
        cen = np.array([r0 + r1, c0 + c1]) / 2.0
        radius = np.sqrt(((r1 - r0) / 2) ** 2 + ((c1 - c0) / 2) ** 2 + half_height**2) \
            + reach + 0.71 / res
        lo = np.clip(np.floor((cen - radius) * res).astype(int), 0, None)
        hi = np.clip(np.ceil((cen + radius) * res).astype(int) + 1, None, counts.shape)
        rr, cc = u[0][lo[0]:hi[0], None], u[1][None, lo[1]:hi[1]]
        counts[lo[0]:hi[0], lo[1]:hi[1]] += (rr - cen[0]) ** 2 + (cc - cen[1]) ** 2 <= radius**2
    free = np.kron(~layout.walls, np.ones((res, res), bool))
    most = int(counts[free].max())
    return parts * most


@dataclasses.dataclass(frozen=True)
class Walls:
    """Merged wall boxes (layout cells) and the broadphase k they need."""

    boxes: np.ndarray  # [n, 4] (r0, c0, r1, c1), layout cells (may reach -1 or h, w)
    max_pairs: int  # -1: no limit needed (k >= every pair)

    def geoms_xml(self, cell: float, z: float, half_height: float, attrs: str) -> str:
        out = []
        for i, (r0, c0, r1, c1) in enumerate(self.boxes):
            out.append(f'<geom name="wall{i}" type="box" pos="{(c0 + c1) / 2 * cell:.6g} '
                       f'{-(r0 + r1) / 2 * cell:.6g} {z:.6g}" size="{(c1 - c0) / 2 * cell:.6g}'
                       f' {(r1 - r0) / 2 * cell:.6g} {half_height:.6g}" {attrs}/>')
        return "\n".join(out)

    def numeric_xml(self) -> str:
        """The broadphase limit, to be the FIRST numeric of <custom> (empty: none)."""
        if self.max_pairs < 0:
            return ""
        return f'<numeric name="max_geom_pairs" data="{self.max_pairs}"/>'


# Measured on the MJX point mass (maze32, batch 256, 2-core CPU): a broadphase pair (a
# collision test and a constraint row) costs about as much as 50 boxes' distance checks.
PAIR_COST_IN_BOXES = 50


def build_walls(layout: Layout, reach: float, half_height: float, parts: int) -> Walls:
    """Merged boxes with the largest side (1, 2, 3, 4 or 8 cells) that costs least:
    fewer, larger boxes mean fewer distance checks but more broadphase pairs. `reach`,
    `half_height` in cells."""
    grid, off = padded_walls(layout)
    best = None
    for max_len in (1, 2, 3, 4, 8):
        boxes = merge_walls(grid, max_len) - np.concatenate([off, off])
        k = pairs_needed(layout, boxes, reach, half_height, parts)
        cost = PAIR_COST_IN_BOXES * k + len(boxes)
        if best is None or cost < best[0]:
            best = (cost, k, boxes)
    _, k, boxes = best
    return Walls(boxes=boxes, max_pairs=k if k < parts * len(boxes) else -1)


class Pipeline:
    """A brax physics pipeline (`backend`) over a system, `n_frames` physics steps per
    control step."""

    def __init__(self, sys, backend: str, n_frames: int):
        import importlib

        self.sys, self.backend, self.n_frames = sys, backend, n_frames
        self._mod = importlib.import_module(BACKENDS[backend])

    @property
    def dt(self) -> float:
        return float(self.sys.opt.timestep) * self.n_frames

    def init(self, q: jax.Array, qd: jax.Array):
        return self._mod.init(self.sys, q, qd)

    def step(self, ps, action: jax.Array):
        def f(s, _):
            return self._mod.step(self.sys, s, action), None

        return jax.lax.scan(f, ps, (), self.n_frames)[0]


class MazeFrame:
    """Layout coordinates <-> world metres, and the hooks every physics maze shares."""

    def __init__(self, layout: Layout, cell_size: float):
        self.layout = layout
        self.cell_size = float(cell_size)
        self._free = jnp.asarray(layout.free_cells, jnp.float32)
        h, w = layout.shape
        self._scale = jnp.array([h, w], jnp.float32)

    def to_world(self, xy: jax.Array) -> jax.Array:
        """(row, col) cells -> world (x, y) metres."""
        xy = jnp.asarray(xy, jnp.float32)
        return jnp.stack([xy[..., 1], -xy[..., 0]], -1) * self.cell_size

    def to_cells(self, world: jax.Array) -> jax.Array:
        """World (x, y) metres -> (row, col) cells."""
        return jnp.stack([-world[..., 1], world[..., 0]], -1) / self.cell_size

    def scaled(self, xy: jax.Array) -> jax.Array:
        """(row, col) scaled to [-1, 1] over the layout, as the pure-JAX maze observes."""
        return xy / self._scale * 2.0 - 1.0

    def random_free(self, key: jax.Array, jitter: float) -> jax.Array:
        """A uniformly random free cell, jittered by up to `jitter` cells from its centre."""
        k_cell, k_jit = jax.random.split(key)
        cell = self._free[jax.random.randint(k_cell, (), 0, self._free.shape[0])]
        return cell + 0.5 + jax.random.uniform(k_jit, (2,), minval=-jitter, maxval=jitter)

    @functools.cached_property
    def oracle(self):
        from hplan.envs.pointmaze.oracle import MazeOracle

        return MazeOracle(self)

    def reset(self, key: jax.Array) -> State:
        return self.explore_reset(key)

    def step(self, state: State, action: jax.Array) -> State:
        """One control step of the subclass's `pipeline`; `state_of` reads the State."""
        ps = self.pipeline.step(state.env_state, sanitize(action))
        new = self.state_of(ps)
        return new.replace(info={**state.info, **new.info},
                           metrics={**state.metrics, **new.metrics})

    def observe(self, xy: jax.Array) -> jax.Array:
        """What the agent observes standing still at `xy` (the oracle's critic check)."""
        return self.goal_obs(xy)


def sanitize(action: jax.Array) -> jax.Array:
    action = jnp.asarray(action, jnp.float32)
    return jnp.clip(jnp.where(jnp.isfinite(action), action, 0.0), -1.0, 1.0)
