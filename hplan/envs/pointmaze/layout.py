"""ASCII maze layouts: parsing with precise errors, and geodesic (BFS) distances.

Format: one row per line, `#` wall, `.` free, `S` start (free), `G` goal (free).
Blank lines at the start and end are ignored; every row must have the same width.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from pathlib import Path

import numpy as np

WALL, FREE = "#", "."
KNOWN = {WALL, FREE, "S", "G"}
MAX_SIDE = 64
UNREACHABLE = -1


@dataclasses.dataclass(frozen=True, eq=False)
class Layout:
    """A parsed layout. `walls[r, c]` is True for wall cells."""

    walls: np.ndarray
    start: tuple[int, int] | None
    goal: tuple[int, int] | None
    source: str = "<string>"
    text: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        return self.walls.shape

    @property
    def free_cells(self) -> np.ndarray:
        """[n, 2] int array of (row, col) for free cells, in row-major order."""
        return np.argwhere(~self.walls)

    def is_free(self, cell) -> bool:
        r, c = cell
        h, w = self.shape
        return 0 <= r < h and 0 <= c < w and not self.walls[r, c]

    def distances(self) -> np.ndarray:
        """All-pairs geodesic cell distances, [n_free, n_free], -1 if unreachable.

        4-connected BFS. Indexed like `free_cells`. Cached per layout.
        """
        cached = getattr(self, "_dist", None)
        if cached is None:
            cached = all_pairs_bfs(self.walls)
            object.__setattr__(self, "_dist", cached)
        return cached

    def cell_index(self) -> np.ndarray:
        """[H, W] map from cell to its index in `free_cells`, -1 on walls."""
        idx = -np.ones(self.shape, dtype=np.int32)
        fc = self.free_cells
        idx[fc[:, 0], fc[:, 1]] = np.arange(len(fc))
        return idx

    def distance(self, a, b) -> int:
        """Geodesic cell distance between two free cells (-1 if unreachable)."""
        idx = self.cell_index()
        return int(self.distances()[idx[tuple(a)], idx[tuple(b)]])


def bfs(walls: np.ndarray, source: tuple[int, int]) -> np.ndarray:
    """Single-source 4-connected BFS distances over free cells; -1 where unreachable."""
    h, w = walls.shape
    dist = np.full((h, w), UNREACHABLE, dtype=np.int32)
    dist[source] = 0
    queue = deque([source])
    while queue:
        r, c = queue.popleft()
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nr, nc = r + dr, c + dc
            if 0 <= nr < h and 0 <= nc < w and not walls[nr, nc] and dist[nr, nc] < 0:
                dist[nr, nc] = dist[r, c] + 1
                queue.append((nr, nc))
    return dist


def all_pairs_bfs(walls: np.ndarray) -> np.ndarray:
    """All-pairs BFS as repeated frontier expansion with boolean matrix algebra.

    Vectorised over sources so a 64x64 layout (4k cells) stays fast in numpy.
    """
    free = np.argwhere(~walls)
    n = len(free)
    idx = -np.ones(walls.shape, dtype=np.int64)
    idx[free[:, 0], free[:, 1]] = np.arange(n)
    # Neighbour lists, padded with n (a dummy "never visited" column).
    nbrs = np.full((n, 4), n, dtype=np.int64)
    h, w = walls.shape
    for k, (dr, dc) in enumerate(((1, 0), (-1, 0), (0, 1), (0, -1))):
        r, c = free[:, 0] + dr, free[:, 1] + dc
        ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        ok[ok] &= ~walls[r[ok], c[ok]]
        nbrs[ok, k] = idx[r[ok], c[ok]]
    dist = np.full((n, n + 1), UNREACHABLE, dtype=np.int32)
    frontier = np.zeros((n, n + 1), dtype=bool)
    frontier[np.arange(n), np.arange(n)] = True
    dist[np.arange(n), np.arange(n)] = 0
    d = 0
    while frontier.any():
        d += 1
        # A cell joins the next frontier if any neighbour is on this frontier.
        nxt = frontier[:, nbrs].any(axis=2)  # [n_src, n]
        nxt = np.concatenate([nxt, np.zeros((n, 1), bool)], axis=1)
        nxt &= dist < 0
        dist[nxt] = d
        frontier = nxt
    return dist[:, :n]


def _err(source: str, line: int, col: int, msg: str, fix: str) -> ValueError:
    return ValueError(f"{source}:{line}:{col}: {msg}. Fix: {fix}")


def parse_layout(text: str, source: str = "<string>", line_offset: int = 0) -> Layout:
    """Parse an ASCII layout; raise ValueError naming source:line:col and the fix.

    `line_offset` shifts reported line numbers (for layouts embedded in task files).
    """
    lines = text.split("\n")
    # Trim leading/trailing blank lines but remember where the grid starts.
    first = 0
    while first < len(lines) and not lines[first].strip():
        first += 1
    last = len(lines)
    while last > first and not lines[last - 1].strip():
        last -= 1
    rows = [ln.rstrip("\r").strip() for ln in lines[first:last]]
    # Report positions relative to the original text, including indentation.
    indents = [len(ln) - len(ln.lstrip()) for ln in lines[first:last]]

    def lineno(i: int) -> int:
        return line_offset + first + i + 1

    if not rows:
        raise _err(source, line_offset + 1, 1, "layout is empty",
                   "write at least one row of '#', '.', 'S', 'G'")
    width = len(rows[0])
    for i, row in enumerate(rows):
        if not row:
            raise _err(source, lineno(i), 1, "blank line inside the layout",
                       "remove it; every row must be part of the grid")
        if len(row) != width:
            raise _err(source, lineno(i), indents[i] + min(len(row), width) + 1,
                       f"ragged row: {len(row)} characters where row 1 has {width}",
                       f"make every row exactly {width} characters wide")
        for j, ch in enumerate(row):
            if ch not in KNOWN:
                raise _err(source, lineno(i), indents[i] + j + 1,
                           f"unknown character {ch!r}",
                           "use only '#' (wall), '.' (free), 'S' (start), 'G' (goal)")
    if len(rows) > MAX_SIDE or width > MAX_SIDE:
        raise _err(source, lineno(0), 1,
                   f"layout is {len(rows)}x{width}, larger than {MAX_SIDE}x{MAX_SIDE}",
                   f"keep both sides at most {MAX_SIDE}")
    grid = np.array([list(r) for r in rows])
    walls = grid == WALL
    if walls.all():
        raise _err(source, lineno(0), 1, "no free cell: every cell is a wall",
                   "mark at least one cell '.'")

    def single(ch: str) -> tuple[int, int] | None:
        hits = np.argwhere(grid == ch)
        if len(hits) > 1:
            r, c = hits[1]
            raise _err(source, lineno(r), indents[r] + c + 1, f"more than one {ch!r} cell",
                       f"keep exactly one {ch!r}")
        return (int(hits[0][0]), int(hits[0][1])) if len(hits) else None

    start, goal = single("S"), single("G")
    layout = Layout(walls=walls, start=start, goal=goal, source=source, text="\n".join(rows))
    if start is not None and goal is not None:
        if bfs(walls, start)[goal] < 0:
            r, c = goal
            raise _err(source, lineno(r), indents[r] + c + 1,
                       f"goal G at cell (row {r}, col {c}) is unreachable from start S",
                       "open a path of '.' cells between S and G")
    return layout


def load_layout(path: str | Path) -> Layout:
    """Read and parse a layout file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: layout file not found. Fix: check the path")
    return parse_layout(path.read_text(), source=str(path))


class Geodesic:
    """Shortest travel between continuous points for an agent that moves up to one unit
    per step along each axis at once (an L-infinity step), round walls: the optimum that
    success weighted by path length (SPL) compares against.

    Distances come from BFS over a grid of `resolution` x `resolution` sub-cells per cell,
    8-connected, a diagonal move only where both cells beside it are free (the point mass
    moves one axis after the other, so it can never pass between two walls that meet at
    a corner). They are within about 1 / resolution cells of the continuous optimum.
    """

    def __init__(self, layout: Layout, resolution: int = 4):
        from scipy.sparse import coo_matrix

        self.f = resolution
        fine = np.kron(layout.walls, np.ones((resolution, resolution), bool))
        self.shape = fine.shape
        free = np.argwhere(~fine)
        idx = -np.ones(fine.shape, np.int64)
        idx[free[:, 0], free[:, 1]] = np.arange(len(free))
        self.idx = idx
        h, w = fine.shape

        def ok(r, c):
            inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
            res = np.zeros(r.shape, bool)
            res[inside] = ~fine[r[inside], c[inside]]
            return res

        src, dst = [], []
        for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
            r, c = free[:, 0] + dr, free[:, 1] + dc
            good = ok(r, c)
            if dr and dc:
                good &= ok(free[:, 0] + dr, free[:, 1]) & ok(free[:, 0], free[:, 1] + dc)
            src.append(idx[free[good, 0], free[good, 1]])
            dst.append(idx[r[good], c[good]])
        src, dst = np.concatenate(src), np.concatenate(dst)
        n = len(free)
        self.graph = coo_matrix((np.ones(len(src)), (src, dst)), shape=(n, n)).tocsr()

    def node(self, pos: np.ndarray) -> np.ndarray:
        """Sub-cell index of continuous (row, col) points [..., 2]."""
        sub = np.clip(np.floor(np.asarray(pos) * self.f).astype(int), 0,
                      np.array(self.shape) - 1)
        return self.idx[sub[..., 0], sub[..., 1]]

    def cells(self, a: np.ndarray, b: np.ndarray, batch: int = 256) -> np.ndarray:
        """Geodesic distance in cells between points `a[i]` and `b[i]` ([N, 2] each);
        `inf` where one is inside a wall or no path joins them."""
        from scipy.sparse.csgraph import shortest_path

        na, nb = self.node(a), self.node(b)
        out = np.full(len(na), np.inf)
        valid = (na >= 0) & (nb >= 0)
        srcs = np.unique(na[valid])
        for i in range(0, len(srcs), batch):
            part = srcs[i: i + batch]
            d = shortest_path(self.graph, directed=False, unweighted=True, indices=part)
            row = np.searchsorted(part, na)
            sel = valid & np.isin(na, part)
            out[sel] = d[row[sel], nb[sel]]
        return out / self.f
