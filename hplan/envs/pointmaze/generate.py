"""Random small mazes whose hard pairs are near in the plane but far through the corridors.

Graph search over replay-buffer states fails on such pairs when an edge or a join says
"near" across a wall (a wormhole). `near_far_pairs` finds them in any layout:
- `corner`: two free cells that touch only at a corner (both cells they share are walls),
- `behind`: cells at most `near` cells apart in a straight line with a wall between,
  the way round at least `ratio` times longer (goals behind a wall, U-turns round a stub).
`family(seed, n)` draws layouts that hold both kinds, reproducibly from the seed.
`corridor_maze(rng, rooms)` draws a connected corridor maze with dead ends (multi-map data).
`two_rooms_family(size, door)`: every map of a two-room arena whose wall and door move
(the eb_jepa / PLDM Two Rooms protocol). `FAMILIES`: the families a task may name.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hplan.envs.pointmaze.layout import FREE, WALL, Layout, parse_layout

KINDS = ("corner", "behind")


@dataclasses.dataclass(frozen=True)
class Pair:
    start: tuple[int, int]
    goal: tuple[int, int]
    kind: str  # "corner" or "behind"
    straight: float  # centre-to-centre distance, cells
    bfs: int  # 4-connected geodesic distance, cells


def near_far_pairs(layout: Layout, near: float = 3.0, ratio: float = 3.0,
                   min_bfs: int = 4) -> list[Pair]:
    """Every ordered pair of free cells that is close in a straight line and far round."""
    free = layout.free_cells
    dist = layout.distances()
    walls = layout.walls
    out = []
    for i, a in enumerate(free):
        for j, b in enumerate(free):
            d = dist[i, j]
            if i == j or d < 0:
                continue
            straight = float(np.hypot(*(b - a)))
            if straight > near or d < max(min_bfs, ratio * straight):
                continue
            dr, dc = b - a
            corner = (abs(dr) == 1 and abs(dc) == 1 and walls[a[0] + dr, a[1]]
                      and walls[a[0], a[1] + dc])
            out.append(Pair((int(a[0]), int(a[1])), (int(b[0]), int(b[1])),
                            "corner" if corner else "behind", straight, int(d)))
    return out


def _largest_region(walls: np.ndarray) -> Layout:
    """Keep the largest 4-connected free region, trimmed to it plus a wall border."""
    from scipy.ndimage import label

    lab, n = label(~walls)
    sizes = np.bincount(lab.ravel())[1:]
    free = lab == (1 + int(np.argmax(sizes)))
    rows, cols = np.nonzero(free)
    free = np.pad(free[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1], 1)
    return _from_walls(~free, "<generated>")


def _from_walls(walls: np.ndarray, source: str) -> Layout:
    """A layout from a wall grid (through the parser, so it passes the same checks)."""
    return parse_layout("\n".join("".join(WALL if w else FREE for w in row) for row in walls),
                        source=source)


def _dfs_maze(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Walls [rows, cols] of a depth-first (perfect) maze over the rooms at odd cells."""
    walls = np.ones((rows, cols), bool)
    rooms = [(r, c) for r in range(1, rows - 1, 2) for c in range(1, cols - 1, 2)]
    seen = {rooms[int(rng.integers(len(rooms)))]}
    stack = list(seen)
    while stack:
        r, c = stack[-1]
        walls[r, c] = False
        nbrs = [(r + dr, c + dc) for dr, dc in ((2, 0), (-2, 0), (0, 2), (0, -2))
                if 0 < r + dr < rows - 1 and 0 < c + dc < cols - 1
                and (r + dr, c + dc) not in seen]
        if not nbrs:
            stack.pop()
            continue
        nr, nc = nbrs[int(rng.integers(len(nbrs)))]
        walls[(r + nr) // 2, (c + nc) // 2] = False
        seen.add((nr, nc))
        stack.append((nr, nc))
    return walls


def dead_ends(layout: Layout) -> int:
    """Free cells with exactly one free 4-neighbour."""
    free = ~np.asarray(layout.walls, bool)
    pad = np.pad(free, 1)
    nbrs = pad[:-2, 1:-1].astype(int) + pad[2:, 1:-1] + pad[1:-1, :-2] + pad[1:-1, 2:]
    return int(np.sum(free & (nbrs == 1)))


def corridor_maze(rng: np.random.Generator, rooms: tuple[int, int], loops: float = 0.1,
                  min_dead_ends: int = 2) -> Layout:
    """A connected maze of corridors, dead ends and (with `loops` > 0) a few loops, the
    kind of map the diverse-maze benchmarks train and test on: `rooms` = (r, c) corridor
    junctions, so the layout is (2r + 1) x (2c + 1) cells with a wall border. A
    depth-first maze, then each wall between two neighbouring rooms is opened with
    probability `loops`; redrawn until it has `min_dead_ends` dead ends."""
    r, c = rooms
    if r < 1 or c < 1 or r * c < 2:
        raise ValueError(f"rooms={rooms}: a maze needs at least 2 rooms (r, c >= 1). Fix: "
                         "use e.g. rooms=(4, 4)")
    if not 0 <= loops <= 1:
        raise ValueError(f"loops={loops}: a probability. Fix: use a number in [0, 1]")
    rows, cols = 2 * r + 1, 2 * c + 1
    rr, cc = np.indices((rows, cols))
    # The interior cells with one odd coordinate: each lies between two rooms (never a
    # pillar, whose coordinates are both even), so opening it joins them.
    between = (rr > 0) & (rr < rows - 1) & (cc > 0) & (cc < cols - 1) & ((rr + cc) % 2 == 1)
    for _ in range(1000):
        walls = _dfs_maze(rng, rows, cols)
        walls &= ~(between & (rng.random(walls.shape) < loops))
        lay = _from_walls(walls, "<corridor_maze>")
        if dead_ends(lay) >= min_dead_ends:
            return lay
    raise ValueError(f"no {rows}x{cols} maze with {min_dead_ends} dead ends in 1000 draws. "
                     "Fix: lower min_dead_ends or loops")


def random_layout(rng: np.random.Generator, rows: int, cols: int) -> Layout:
    """A random small maze of one of two styles, chosen at random:
    - corridors: a depth-first maze over rooms at odd cells, with a few wall cells opened
      (opened cells between diagonal rooms make corner-touching pairs and loops);
    - blobs: independent random walls (density 0.38), open pockets and short corridors.
    The largest 4-connected free region is kept."""
    if rng.random() < 0.5:
        walls = rng.random((rows, cols)) < 0.38
    else:
        walls = _dfs_maze(rng, rows, cols) & (rng.random((rows, cols)) >= 0.15)
    walls[0, :] = walls[-1, :] = walls[:, 0] = walls[:, -1] = True
    if walls.all():
        return random_layout(rng, rows, cols)
    return _largest_region(walls)


def pillar_room(rng: np.random.Generator, n: int, density: float) -> Layout:
    """An n x n room with single wall cells (pillars) at random, `density` of the inside:
    open floor, one-cell gaps, corners and short corridors side by side (where the ant's
    gait learns to walk beside walls). The largest 4-connected free region is kept."""
    walls = rng.random((n + 2, n + 2)) < density
    walls[0, :] = walls[-1, :] = walls[:, 0] = walls[:, -1] = True
    return _largest_region(walls)


def family(seed: int, n: int, rows: tuple[int, int] = (7, 9), cols: tuple[int, int] = (7, 10),
           min_free: int = 18, per_kind: int = 2) -> list[tuple[Layout, list[Pair]]]:
    """`n` layouts, each with at least `per_kind` pairs of every kind, and those pairs."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        lay = random_layout(rng, int(rng.integers(rows[0], rows[1] + 1)),
                            int(rng.integers(cols[0], cols[1] + 1)))
        if len(lay.free_cells) < min_free:
            continue
        pairs = near_far_pairs(lay)
        if all(sum(p.kind == k for p in pairs) >= per_kind for k in KINDS):
            out.append((lay, pairs))
    return out


def pick_pairs(pairs: list[Pair], k: int, rng: np.random.Generator) -> list[Pair]:
    """`k` pairs, the kinds taking turns (corner, behind, ...), each drawn at random."""
    by_kind = {kind: [p for p in pairs if p.kind == kind] for kind in KINDS}
    chosen = []
    for i in range(k):
        pool = by_kind[KINDS[i % len(KINDS)]] or pairs
        chosen.append(pool[int(rng.integers(len(pool)))])
    return chosen


def two_rooms_family(size: int = 16, door: int = 2, margin: int = 4) -> list[Layout]:
    """Every map of a `size` x `size` arena (wall border included) split by one vertical
    wall with a `door`-cell gap: the wall at any column at least `margin` cells from the
    border, the door at any height. The eb_jepa Two Rooms task draws one per episode."""
    if size < 2 * margin + 1 or margin < 2:
        raise ValueError(f"size={size}, margin={margin}: each room needs a free column. "
                         "Fix: use margin >= 2 and size >= 2 * margin + 1")
    if not 1 <= door <= size - 2:
        raise ValueError(f"door={door}: the gap must fit the wall. Fix: use 1 <= door <= "
                         f"{size - 2}")
    out = []
    for col in range(margin, size - margin):
        for top in range(1, size - door):
            walls = np.zeros((size, size), bool)
            walls[[0, -1], :] = walls[:, [0, -1]] = True
            walls[:, col] = True
            walls[top: top + door, col] = False
            out.append(_from_walls(walls, f"<two-rooms wall {col} door {top}>"))
    return out


def corridor_mazes(n: int, rooms: tuple[int, int] = (4, 4), seed: int = 0,
                   loops: float = 0.1, min_dead_ends: int = 2) -> list[Layout]:
    """`n` corridor mazes drawn reproducibly from `seed` (a multi-map training set)."""
    rng = np.random.default_rng(seed)
    return [corridor_maze(rng, tuple(rooms), loops, min_dead_ends) for _ in range(n)]


FAMILIES = {"two-rooms": two_rooms_family, "corridor-mazes": corridor_mazes}
