"""What only the point maze knows: optimal paths, geodesic distances, walls, a picture.

Benchmarks and diagnostics read these through `env.oracle`; where an env has no oracle
they print n/a. None of it is available to an agent.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import spearmanr

from hplan.envs.pointmaze.layout import Geodesic


class MazeOracle:
    def __init__(self, maze):
        self.maze = maze
        self.layout = maze.layout  # a family's first map: what pictures are drawn on
        self.layouts = list(getattr(maze, "layouts", [maze.layout]))
        self.max_step = getattr(maze, "max_step", None) or maze.config.max_step
        # A body's centre keeps this far (cells) from walls (0: the pure-JAX point).
        self.body_radius = float(getattr(maze, "body_radius", 0.0))
        self._geos = {}

    def geo_of(self, context: int = 0) -> Geodesic:
        if context not in self._geos:
            self._geos[context] = Geodesic(self.layouts[context])
        return self._geos[context]

    @property
    def geo(self) -> Geodesic:
        return self.geo_of(0)

    # -- paths ------------------------------------------------------------------------------
    def geodesic(self, a: np.ndarray, b: np.ndarray, context=None) -> np.ndarray:
        """Optimal steps between goal-space points a[i] and b[i] ([N, 2] each), on map
        `context[i]` of a family (default: the first)."""
        a, b = np.asarray(a), np.asarray(b)
        ctx = np.zeros(len(a), int) if context is None else np.asarray(context)
        out = np.empty(len(a))
        for c in np.unique(ctx):
            sel = ctx == c
            out[sel] = self.geo_of(int(c)).cells(a[sel], b[sel])
        return out / self.max_step

    def _legs(self, first) -> tuple[np.ndarray, np.ndarray]:
        """Each episode's points (start, every target) [N, K + 1, 2] and map [N]."""
        pts = np.concatenate([np.asarray(first.metrics["xy"])[:, None],
                              np.asarray(first.info["targets"])], axis=1)
        ctx = np.asarray(first.info.get("context", np.zeros(len(pts), int)))
        return pts, ctx

    def optimal_steps(self, first) -> np.ndarray:
        """Optimal steps of each episode from its start through every target (`first`:
        the batched first states, with the `GoalWrapper`'s targets and maps)."""
        pts, ctx = self._legs(first)
        k = pts.shape[1] - 1
        legs = self.geodesic(pts[:, :-1].reshape(-1, 2), pts[:, 1:].reshape(-1, 2),
                             np.repeat(ctx, k))
        return legs.reshape(len(pts), -1).sum(1)

    def bfs_steps(self, first) -> np.ndarray:
        """The older optimum: 4-connected cell BFS through every target / max_step (no
        diagonal moves, so longer than `optimal_steps`)."""
        pts, ctx = self._legs(first)
        cells = np.floor(pts).astype(int)
        out = np.zeros(len(pts))
        for c in np.unique(ctx):
            lay = self.layouts[int(c)]
            idx, dist = lay.cell_index(), lay.distances()
            sel = ctx == c
            ids = idx[cells[sel, :, 0], cells[sel, :, 1]]
            out[sel] = dist[ids[:, :-1], ids[:, 1:]].sum(1)
        return out / self.max_step

    # -- places -----------------------------------------------------------------------------
    def region(self, xy: np.ndarray) -> np.ndarray:
        """The cell of each point [..., 2] (for "where did the agent spend its time")."""
        return np.floor(np.asarray(xy)).astype(int)

    def near_obstacle(self, xy: np.ndarray, margin: float = 0.2) -> np.ndarray:
        """True where a point is within `margin` cells (plus the body's radius) of a wall
        cell (8-neighbourhood)."""
        margin = margin + self.body_radius
        pos = np.asarray(xy)
        cells = np.floor(pos).astype(int)
        frac = pos - cells
        walls = np.pad(self.layout.walls, 1, constant_values=True)
        out = np.zeros(pos.shape[:-1], bool)
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                if dr == dc == 0:
                    continue
                w = walls[cells[..., 0] + 1 + dr, cells[..., 1] + 1 + dc]
                dist_r = np.where(dr < 0, frac[..., 0], np.where(dr > 0, 1 - frac[..., 0], 0))
                dist_c = np.where(dc < 0, frac[..., 1], np.where(dc > 0, 1 - frac[..., 1], 0))
                out |= w & (np.hypot(dist_r, dist_c) < margin)
        return out

    def draw(self, ax) -> None:
        from hplan.envs.pointmaze.render import draw_layout

        draw_layout(ax, self.layout)

    @staticmethod
    def plot_xy(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Plot coordinates (x right, y down) of goal-space (row, col) points."""
        xy = np.asarray(xy)
        return xy[..., 1], xy[..., 0]

    def visits(self, xy: np.ndarray) -> np.ndarray:
        """Visit counts per cell [H, W] of goal-space points [..., 2]."""
        cells = np.floor(np.asarray(xy).reshape(-1, 2)).astype(int)
        h, w = self.layout.shape
        cells = cells[(cells[:, 0] >= 0) & (cells[:, 0] < h) & (cells[:, 1] >= 0)
                      & (cells[:, 1] < w)]
        counts = np.zeros(self.layout.shape, np.int64)
        np.add.at(counts, (cells[:, 0], cells[:, 1]), 1)
        return counts

    def coverage_fraction(self, xy: np.ndarray) -> float:
        """The fraction of free cells that points [..., 2] visit (what `coverage` prints)."""
        return float(np.mean(self.visits(xy)[~self.layout.walls] > 0))

    def coverage(self, ax, xy: np.ndarray) -> str:
        """Visit counts per cell drawn on `ax`; returns a one-line summary."""
        from hplan.envs.pointmaze.render import draw_counts

        counts = self.visits(xy)
        im = draw_counts(ax, self.layout, counts)
        ax.figure.colorbar(im, ax=ax, label="log10(visits + 1)", shrink=0.8)
        free = ~self.layout.walls
        return (f"{np.mean(counts[free] > 0):.0%} of free cells visited, min "
                f"{counts[free].min()} visits")

    # -- critics ----------------------------------------------------------------------------
    def critic_quality(self, value_fn, encode, n_pairs: int = 20000, seed: int = 0,
                       maps: int = 8) -> dict:
        """Spearman rank correlation of `value_fn(z, g)` with BFS distance between free-cell
        centres, and descent consistency: the share of (cell, goal) pairs where the
        neighbouring cell with the lowest cost-to-go is one step closer along BFS.
        `encode(obs [n, ...]) -> z [n, d]`. A family: the mean over `maps` of its maps
        (start and goal on the same map), with each map's figures."""
        if len(self.layouts) == 1:
            return self._critic_quality(value_fn, encode, n_pairs, seed, 0)
        ctxs = np.unique(np.linspace(0, len(self.layouts) - 1, maps).astype(int))
        per = [self._critic_quality(value_fn, encode, n_pairs // len(ctxs), seed, int(c))
               for c in ctxs]
        out = {k: float(np.mean([p[k] for p in per])) for k in ("spearman",
                                                               "descent_consistency")}
        return {**out, "pairs": int(sum(p["pairs"] for p in per)),
                "per_map": {int(c): p for c, p in zip(ctxs, per, strict=True)}}

    def _critic_quality(self, value_fn, encode, n_pairs: int, seed: int, ctx: int) -> dict:
        layout = self.layouts[ctx]
        cells = layout.free_cells
        obs = jax.vmap(lambda p: self.maze.observe(p, None, ctx) if len(self.layouts) > 1
                       else self.maze.observe(p))(jnp.asarray(cells + 0.5, jnp.float32))
        z_cells = np.asarray(encode(obs))
        dist = layout.distances()
        n = len(z_cells)
        rng = np.random.default_rng(seed)
        a, b = rng.integers(0, n, n_pairs), rng.integers(0, n, n_pairs)
        keep = (a != b) & (dist[a, b] > 0)
        a, b = a[keep], b[keep]
        vf = jax.jit(jax.vmap(value_fn))
        v = np.asarray(vf(jnp.asarray(z_cells[a]), jnp.asarray(z_cells[b])))
        rho = float(spearmanr(v, dist[a, b]).statistic)
        idx = np.pad(layout.cell_index(), 1, constant_values=-1)
        nb = np.stack([idx[cells[:, 0] + 1 + dr, cells[:, 1] + 1 + dc]
                       for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1))], 1)
        cand = nb[a]
        valid = cand >= 0
        safe = np.where(valid, cand, 0)
        vn = np.asarray(vf(jnp.asarray(z_cells[safe.reshape(-1)]),
                           jnp.asarray(np.repeat(z_cells[b], 4, axis=0)))).reshape(-1, 4)
        vn = np.where(valid, vn, np.inf)
        best = safe[np.arange(len(a)), vn.argmin(1)]
        descent = float(np.mean(dist[best, b] < dist[a, b]))
        return {"spearman": rho, "descent_consistency": descent, "pairs": int(len(a))}
