"""What levels and actuators are built from: the task, the trained stack, the offline
data, the latent step scale, and banks of encoded dataset states with their graphs.

Latent distances are divided by `scale`, the mean latent displacement of one full-speed
base step, so every cost term and reach is in base steps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hplan.agents import graph as G
from hplan.core import ConfigError
from hplan.wm.jepa import step_rms


def step_scale(stack, data, n_states: int = 512, seed: int = 0) -> float:
    """Mean latent displacement of one full-speed level-0 step: the level-0 model applied
    from dataset states with full-speed actions along each axis (+-e_i) and as many
    random corners of the action box (for 2-D actions: the 8 compass directions)."""
    rng = np.random.default_rng(seed)
    flat = data.obs.reshape(-1, *data.obs.shape[2:])
    obs = flat[rng.choice(len(flat), min(n_states, len(flat)), replace=False)]
    model = stack.model()
    z = jax.jit(model.encode)(jnp.asarray(obs))
    a = data.actions.shape[-1]
    axes = np.concatenate([np.eye(a), -np.eye(a)])
    corners = np.concatenate([axes, _corners(a, 2 * a, rng)]).astype(np.float32)
    dz = jax.jit(jax.vmap(jax.vmap(lambda z_, u: model.step(0, z_, u) - z_, (None, 0)),
                          (0, None)))(z, jnp.asarray(corners))
    return float(jnp.mean(jnp.linalg.norm(dz, axis=-1))) + 1e-6


def recorded_steps(stack, data, n: int = 4096, seed: int = 0):
    """(z_t, z_t+1) of `n` random recorded level-0 transitions."""
    rng = np.random.default_rng(seed)
    e = rng.integers(0, data.obs.shape[0], n)
    t = rng.integers(0, data.actions.shape[1], n)
    return stack.encode(data.obs[e, t]), stack.encode(data.obs[e, t + 1])


def _corners(a: int, n: int, rng) -> np.ndarray:
    if 2**a <= n:  # all of them (2-D: the four diagonals)
        return np.array(np.meshgrid(*[[-1.0, 1.0]] * a)).reshape(a, -1).T
    return rng.choice([-1.0, 1.0], size=(n, a))


def pinned_states(data) -> np.ndarray:
    """Flat indices of the dataset states held more than once exactly (an agent pinned
    against an obstacle), the most repeated first."""
    flat = data.obs.reshape(data.obs.shape[0] * data.obs.shape[1], -1)
    rows = np.ascontiguousarray(flat).view(np.dtype((np.void, flat.dtype.itemsize
                                                     * flat.shape[1]))).ravel()
    _, first, counts = np.unique(rows, return_index=True, return_counts=True)
    many = counts > 1
    return first[many][np.argsort(-counts[many], kind="stable")]


def bank_index(data, size: int, seed: int = 0, pinned: np.ndarray | None = None
               ) -> np.ndarray:
    """Which dataset states (flat indices) make the bank: first every state the data
    holds more than once exactly (an agent pinned against an obstacle, most often where
    two walls meet), then a uniform draw of the rest. `pinned`: `pinned_states(data)`,
    when the caller already has it.

    Pinned states matter for the links: where two free cells touch only at a corner, the
    states pinned on either side are a hair apart, and a dataset state snaps across the
    corner to the other side's pinned state unless its own side's is a bank state too."""
    n = data.obs.shape[0] * data.obs.shape[1]
    size = min(size, n)
    pinned = (pinned_states(data) if pinned is None else pinned)[:size]
    rest = np.setdiff1d(np.arange(n), pinned)
    rng = np.random.default_rng(seed)
    return np.concatenate([pinned, rng.choice(rest, size - len(pinned), replace=False)])


@jax.jit
def _farthest(points: jax.Array, start: jax.Array, k: jax.Array) -> jax.Array:
    """`k` indices into `points` [n, q] picked farthest-first from the squared distances
    `start` [n] (-inf: never picked: padding), at most `points.shape[0]`."""
    n = points.shape[0]

    def body(i, c):
        d, out = c
        j = jnp.argmax(d)
        d = jnp.minimum(d, jnp.sum((points - points[j]) ** 2, -1)).at[j].set(-jnp.inf)
        return d, out.at[i].set(j)

    _, out = jax.lax.fori_loop(0, k, body, (start, jnp.full(n, -1, jnp.int32)))
    return out


def spread_index(points: np.ndarray, groups: np.ndarray | None, size: int,
                 pinned: np.ndarray, seed: int = 0) -> np.ndarray:
    """Like `bank_index` (the pinned states first), then farthest-point picks instead of a
    uniform draw: each map (`groups` [N], episodes) gets its share of the bank by its
    share of the data, spread over its states by `points` [N, T, q] (the space links are
    measured in). A uniform draw follows the data's density: on two-rooms-random it left
    a free cell's centre (where goals are) a median 0.64 cells from the nearest bank
    state, 1.43 at the 90th percentile; spread: 0.57 / 0.99."""
    from scipy.spatial import cKDTree

    n_ep, t1 = points.shape[:2]
    flat = np.asarray(points, np.float32).reshape(n_ep * t1, -1)
    n = flat.shape[0]
    size = min(size, n)
    pinned = np.asarray(pinned)[:size]
    owner = np.repeat(np.zeros(n_ep, int) if groups is None else np.asarray(groups), t1)
    free = np.ones(n, bool)
    free[pinned] = False
    maps, counts = np.unique(owner, return_counts=True)
    want = (size - len(pinned)) * counts / n
    share = np.floor(want).astype(int)
    share[np.argsort(share - want)[: size - len(pinned) - share.sum()]] += 1
    rng = np.random.default_rng(seed)
    out = [pinned]
    for g, k in zip(maps, share, strict=True):
        ids = np.flatnonzero((owner == g) & free)
        k = min(int(k), len(ids))
        if k == 0:
            continue
        pad = -(-len(ids) // 1024) * 1024  # one compile per size class, not per map
        pts = np.zeros((pad, flat.shape[1]), np.float32)
        pts[: len(ids)] = flat[ids]
        mine = flat[pinned[owner[pinned] == g]]
        if len(mine):  # (a tree, not all pairs: one map may hold every dataset state)
            start = cKDTree(mine).query(pts)[0].astype(np.float32) ** 2
        else:  # no pinned state on the map: start from a random one
            start = np.full(pad, np.inf, np.float32)
            start[rng.integers(len(ids))] = np.float32(1e30)
        start[len(ids):] = -np.inf
        out.append(ids[np.asarray(_farthest(jnp.asarray(pts), jnp.asarray(start), k))[:k]])
    return np.concatenate(out)


def nearest_states(bank: jax.Array, k: int) -> jax.Array:
    """[M, k] each bank state's `k` latent-nearest bank states, itself first."""
    sq = jnp.sum(bank ** 2, -1)
    return jax.lax.top_k(-(sq[:, None] + sq[None] - 2 * bank @ bank.T), k)[1]


def critic_apart(c0, a: jax.Array, b: jax.Array) -> jax.Array:
    """critic0's distance between `a` and `b` the larger of both ways: it is asymmetric
    and errs short one way across thin walls."""
    return jnp.maximum(c0(a, b), c0(b, a))


def critic_edges(stack, bank: jax.Array, edge: float = 1.25, neighbours: int = 64,
                 max_edge: float = 4.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Links (src, dst, base steps) between bank states by short critic0 hops.

    A hop joins each bank state to those of its `neighbours` latent-nearest that the
    level-0 critic (the larger of both ways) puts at most `edge` steps away. The critic is
    accurate for short hops but under-estimates pairs on the two sides of a thin wall or
    a corner; `verified` drops the hops the data contradicts. A bank too sparse to be one
    component at `edge` gets wider hops (up to `max_edge`)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    bank = jnp.asarray(bank, jnp.float32)
    m = bank.shape[0]
    k = min(neighbours, m - 1)

    @jax.jit
    def hops(bank):
        nb = nearest_states(bank, k + 1)
        src = jnp.repeat(jnp.arange(m), k)
        dst = nb[:, 1:].reshape(-1)
        c0 = stack.critic(0)
        a, b = bank[src], bank[dst]
        return src, dst, critic_apart(c0, a, b)

    src, dst, w = (np.asarray(x) for x in hops(bank))
    while True:  # widen the hops until the bank is one component (a sparse bank)
        keep = (w <= edge) & (src != dst)
        g = csr_matrix((w[keep] + 1e-3, (src[keep], dst[keep])), shape=(m, m))
        if connected_components(g, directed=False)[0] == 1 or edge >= max_edge:
            break
        edge += 0.25
    return src[keep], dst[keep], w[keep] + 1e-3


def snap_space(data) -> str:
    """Where dataset states are matched to bank states: "obs" (the observation, a small
    vector), "xy" (goal space, when the observation holds more than it, as velocities:
    near in position, a state may move either way) or "latent" (images)."""
    if data.obs.ndim != 3:
        return "latent"
    if data.xy is not None and data.xy.shape[-1] < data.obs.shape[-1]:
        return "xy"
    return "obs"


def snap_data(data, kind: str) -> np.ndarray:
    """The dataset's states in a vector `snap_space` ("xy" or "obs") [N, T, k]."""
    return data.xy if kind == "xy" else data.obs


def snap_states(stack, data) -> tuple[np.ndarray, float]:
    """(the dataset's states in `snap_space` [N, T, k], the length of a full-speed step
    there): what the graph links are measured in."""
    from hplan.wm.critic import hops, step_unit

    kind = snap_space(data)
    x = np.asarray(stack.encode(data.obs) if kind == "latent" else snap_data(data, kind),
                   np.float32)
    return x, step_unit(hops(x))


def data_edges(stack, data, index: np.ndarray, snap: tuple | None = None):
    """(links (src, dst, base steps), bank points [M, k], snapped [N, T+1]) from the
    dataset's own transitions: every dataset state snaps to its nearest bank state (in
    `snap_space`; `snapped` holds which), and each observed transition between two bank
    states links them. The data never crossed a wall, so neither does a link, but for
    snapping errors where two sides nearly touch (see `bank_index`). The points are the
    bank states in that space, in the links' unit (base steps): a link's length is the
    distance between its points."""
    from hplan.wm.critic import transition_links

    x, step = snap or snap_states(stack, data)
    ids, g = transition_links(x, index, data.groups, step)
    g = g.tocoo()
    return (g.row, g.col, g.data.astype(np.float32)), _rows(x, index) / step, ids


def data_successors(snapped: np.ndarray, index: np.ndarray, ahead: int) -> np.ndarray:
    """[M] the bank state each bank state's own dataset state snaps to `ahead` steps on
    in its episode (the last state of the episode where it ends first): which way the
    data was moving there. `snapped`: `data_edges`'s third part."""
    t1 = snapped.shape[1]
    ep, t = np.divmod(np.asarray(index), t1)
    return snapped[ep, np.minimum(t + ahead, t1 - 1)]


def per_map(data, index: np.ndarray, t1: int):
    """For each map (`Dataset.groups`) holding two bank states or more: (map, its
    episodes, the bank states on it (positions in `index`), their flat indices into its
    episodes' [len(episodes) * t1] states)."""
    index = np.asarray(index)
    n = data.obs.shape[0]
    groups = np.zeros(n, np.int64) if data.groups is None else np.asarray(data.groups)
    episode = index // t1
    for g in np.unique(groups):
        eps = np.flatnonzero(groups == g)
        sel = np.flatnonzero(np.isin(episode, eps))
        if len(sel) >= 2:
            yield g, eps, sel, np.searchsorted(eps, episode[sel]) * t1 + index[sel] % t1


def path_edges(stack, data, index: np.ndarray, radius: float = 0.4,
               snap: tuple | None = None):
    """`data_edges` without snapping: a dataset state joins a bank state only within
    `radius` steps of it, and two bank states are linked by the stretch of trajectory
    between consecutive joined states, as long as the path it travelled
    (`hplan.wm.critic.path_links`), one map (`Dataset.groups`) at a time. Snapping every
    state to its nearest of a sparse bank (pixels on 104 maps: about 40 bank states a
    map) joined states either side of a thin wall."""
    from hplan.wm.critic import hops, path_links, step_unit

    x, step = snap or snap_states(stack, data)
    links = []
    for _, eps, sel, local in per_map(data, index, x.shape[1]):
        c = path_links(x[eps], local, radius)[1].tocoo()
        # path_links measures in its map's own full-speed step: back to the common one
        unit = step_unit(hops(x[eps])) / step
        links.append((sel[c.row], sel[c.col], c.data.astype(np.float32) * unit))
    src, dst, w = (np.concatenate(v) for v in zip(*links, strict=True))
    return (src, dst, w), _rows(x, index) / step


STATE_GRAPH_MAX = 20000  # dataset states of one map a state graph holds


def state_edges(stack, data, index: np.ndarray, radius: float = 0.3, span: float = 4.0,
                join: bool = False, snap: tuple | None = None):
    """(links (src, dst, base steps), bank points [M, k]) through every dataset state, one
    map (`Dataset.groups`) at a time: consecutive states of a trajectory are linked by
    their step, and any two states within `radius` steps of each other (where two
    trajectories met); two bank states are linked by their shortest path through that
    graph when it is at most `span` steps. `path_edges` let trajectories meet only at
    bank states: with 157 of them a map, a trajectory that kept to a corner met none the
    others passed, and its bank states were an island (two-rooms-random: the agent or the
    goal stood on one in 5 of 20 tuning episodes). At 0.2 / 0.4 steps no / 87 of 2.9M
    such meetings joined the two sides of a wall on it.

    With `join`, pieces of a map's bank graph that the data itself joins (by a path
    longer than `span`) are linked by that path's length (`join_pieces`): a walk the data
    made, where a straight bridge may cross a wall. On two-rooms-random (patch 2) 70-80
    of 104 maps fell into pieces at span 4, 7-11 once the data's own joins are kept."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra
    from scipy.spatial import cKDTree

    x, step = snap or snap_states(stack, data)
    t1 = x.shape[1]
    links = []
    for g, eps, bank, local in per_map(data, index, t1):
        if len(eps) * t1 > STATE_GRAPH_MAX:
            raise ValueError(f"map {g} holds {len(eps) * t1} dataset states, over the "
                             f"{STATE_GRAPH_MAX} a state graph holds. Fix: use "
                             "edges = 'path' for data this large on one map")
        z = x[eps].reshape(-1, x.shape[-1]) / step
        ids = np.arange(len(z)).reshape(len(eps), t1)
        s0, s1 = ids[:, :-1].ravel(), ids[:, 1:].ravel()
        w0 = np.linalg.norm(z[s1] - z[s0], axis=-1)
        near = cKDTree(z).query_pairs(radius, output_type="ndarray")
        w1 = np.linalg.norm(z[near[:, 0]] - z[near[:, 1]], axis=-1)
        graph = coo_matrix((np.maximum(np.r_[w0, w1], 1e-3),
                            (np.r_[s0, near[:, 0]], np.r_[s1, near[:, 1]])),
                           shape=(len(z),) * 2).tocsr()
        d = dijkstra(graph, directed=False, indices=local, limit=span)[:, local]
        i, j = np.nonzero(np.isfinite(d) & (d > 0))
        keep = i < j
        i, j = i[keep], j[keep]
        w = d[i, j]
        if join:
            ji, jj, jw = join_pieces(i, j, len(local), lambda g=graph, ix=local: dijkstra(
                g, directed=False, indices=ix)[:, ix])
            i, j, w = np.r_[i, ji], np.r_[j, jj], np.r_[w, jw]
        links.append((bank[i], bank[j], w.astype(np.float32)))
    src, dst, w = (np.concatenate(v) for v in zip(*links, strict=True))
    return (src, dst, w), _rows(x, index) / step


def join_pieces(i: np.ndarray, j: np.ndarray, n: int, far: Callable[[], np.ndarray],
                cap: float = np.inf, each: int = 1,
                ruled_out: Callable[[], np.ndarray] | None = None):
    """Links (i, j, length) that join the pieces of the graph of `n` states linked by
    (i, j): each piece's `each` shortest links out by the lengths `far()` ([n, n], inf
    where no way), to as many states and at most `cap` long, until one piece is left or
    none has a link out (with `each = 1` Boruvka's minimum spanning forest over the
    pieces). `ruled_out()` ([n, n] bool) bars pairs for every piece that keeps another
    link out within `cap`. `far` and `ruled_out` are called only if there are pieces."""
    a, b = np.asarray(i), np.asarray(j)
    lab = _pieces(a, b, n)
    out_i, out_j, out_w = [], [], []
    d = barred = None
    while lab.max() > 0:
        if d is None:  # only graphs in pieces pay
            d = far()
            barred = ruled_out() if ruled_out is not None else None
        gap = np.where(lab[:, None] == lab[None], np.inf, d)
        new = []
        for c in range(int(lab.max()) + 1):  # each piece's links out, to distinct states
            rows = np.flatnonzero(lab == c)
            cand = gap[rows]
            if barred is not None:  # checked links where the piece has one within cap
                ok = np.where(barred[rows], np.inf, cand)
                cand = ok if ok.min(initial=np.inf) <= cap else cand
            best = cand.min(0)
            new += [(rows[np.argmin(cand[:, s])], s, best[s])
                    for s in np.argsort(best)[:each] if np.isfinite(best[s]) and best[s] <= cap]
        if not new:
            break
        ni, nj, nw = (np.array(v) for v in zip(*new, strict=True))
        out_i.append(ni)
        out_j.append(nj)
        out_w.append(nw)
        a, b = np.r_[a, ni], np.r_[b, nj]
        lab = _pieces(a, b, n)
    if not out_i:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    return (np.concatenate(out_i).astype(int), np.concatenate(out_j).astype(int),
            np.concatenate(out_w))


def map_pieces(src: np.ndarray, dst: np.ndarray, sel: np.ndarray):
    """(the links among bank states `sel` of one map, in its own ids (a, b), and the
    piece label of each of its states) of the links `src` -> `dst`."""
    mine = np.isin(src, sel) & np.isin(dst, sel)
    a, b = np.searchsorted(sel, src[mine]), np.searchsorted(sel, dst[mine])
    return a, b, _pieces(a, b, len(sel))


def _pieces(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    return connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)),
                                directed=False)[1]


def bridged(points: np.ndarray, links, groups: np.ndarray, cap: float, each: int = 1,
            too_far: Callable[[np.ndarray], np.ndarray] | None = None):
    """`links` (src, dst, w) plus, on each map (`groups` [M]), the shortest straight
    links (by `points` [M, k], in steps) that join its islands, at most `cap` long: each
    piece's `each` shortest links out, to as many states, until the map is one piece
    (with `each = 1` a minimum spanning forest, Boruvka). Trajectory stretches leave
    islands where a few episodes kept to a corner: on two-rooms-random from pixels the
    agent or the goal sat on one in 5 of 20 tuning episodes, with no route at all. The
    nearest state may lie across a thin wall: with a single link out, cutting it where
    the agent stalls leaves no route, the cut is dropped and the agent stays; more links
    out leave a way round once it is cut. `too_far(ids)` ([n] bank ids of one map ->
    [n, n] bool) rules pairs out as bridges (`critic_too_far`) for every piece that has
    another way out within `cap`; a piece with none keeps its unchecked links (a map
    whose data never crossed its door: critic0 puts the door as far as the wall)."""
    src, dst, w = (np.asarray(a) for a in links)
    add = []
    for g in np.unique(groups):
        sel = np.flatnonzero(groups == g)
        a, b, _ = map_pieces(src, dst, sel)

        def apart(p=points[sel]):
            sq = (p**2).sum(1)
            return np.sqrt(np.maximum(sq[:, None] - 2 * p @ p.T + sq[None], 0.0))

        check = None if too_far is None else (lambda ids=sel: too_far(ids))
        ni, nj, nw = join_pieces(a, b, len(sel), apart, cap, each, check)
        add += [(sel[i], sel[j], x) for i, j, x in zip(ni, nj, nw, strict=True)]
    if not add:
        return links
    # (an island's link may be found twice, from either side: a duplicate link is harmless)
    ai, aj, aw = (np.array(v) for v in zip(*add, strict=True))
    return (np.r_[src, ai.astype(src.dtype)], np.r_[dst, aj.astype(dst.dtype)],
            np.r_[w, aw.astype(w.dtype)])


def critic_too_far(stack, bank: jax.Array, limit: float) -> Callable[[np.ndarray], np.ndarray]:
    """`bridged`'s check: a pair is no bridge where critic0 (the larger of both ways) puts
    it over `limit` steps apart. Latent-near states may lie across a wall (wall ends and
    corners look alike in pixels); critic0, trained on the map's data, still sees them far.
    two-rooms-random-patch2 stack 1, 150 bridges of cap 2 over state edges: the 73 across
    a wall at 3.8-43 critic steps (all but 3 over 6), the rest at 1.4-4.6 (99th percentile)."""
    bank = jnp.asarray(bank, jnp.float32)

    @jax.jit
    def apart(z):
        n = z.shape[0]
        return critic_apart(stack.critic(0), jnp.repeat(z, n, 0),
                            jnp.tile(z, (n, 1))).reshape(n, n)

    def too_far(ids: np.ndarray) -> np.ndarray:
        # padded to a multiple of 64 states: one compile per size class, not per map
        n = len(ids)
        pad = np.resize(np.asarray(ids), -(-n // 64) * 64)
        return np.asarray(apart(bank[pad]))[:n, :n] > limit

    return too_far


def _view(obs, batched: bool = False):
    """Observations as flat float32 vectors (images in [0, 1]): [k], or [n, k] batched."""
    scale = 1.0 / 255 if obs.dtype == jnp.uint8 else 1.0
    flat = obs.reshape(obs.shape[0], -1) if batched else obs.reshape(-1)
    return flat.astype(jnp.float32) * scale


def _rows(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Dataset states `idx` (flat indices over episodes and steps) of `x` [N, T, ...]."""
    return x.reshape(-1, *x.shape[2:])[idx]


def verified(links, data_links, m: int, factor: float = 1.5, slack: float = 0.5):
    """The `links` (src, dst, w) the data's own transitions confirm: at most
    `factor * w + slack` apart over `data_links`. critic0 sees a hair's breadth across a
    corner where the way round is long; the data never went through. (On the 31x31 maze
    factor 2, slack 1 left 3197 of 125k hops more than twice too short; 1.5 and 0.5 left
    154, `bench/wormholes.py`.)"""
    src, dst, w = links
    # Only distances up to the longest link's bound matter: Dijkstra stops there.
    bound = factor * w + slack
    d = G.shortest_paths(m, *data_links, limit=float(bound.max(initial=0.0)))
    keep = d[src, dst] <= bound
    return src[keep], dst[keep], w[keep]


@dataclasses.dataclass(eq=False)
class Context:
    """Everything a level or actuator factory may use, built once per (task, stack, data)."""

    task: object
    stack: object
    data: object | None = None
    scale: float | None = None
    policy: str | None = None  # a distilled System 1 policy's directory (hplan distill)
    _graphs: dict = dataclasses.field(default_factory=dict)
    _links: dict = dataclasses.field(default_factory=dict)
    _indices: dict = dataclasses.field(default_factory=dict)
    _pinned: np.ndarray | None = None
    _inverse_unit: float | None = None
    _snap: tuple | None = None
    _frame_steps: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.scale is None:
            if self.data is None:
                raise ValueError("the latent step scale comes from dataset states. Fix: "
                                 "pass the task's offline data (hplan collect)")
            self.scale = step_scale(self.stack, self.data)

    def inverse_scale(self) -> float:
        """The inverse head's step unit (`jepa.step_rms`) on recorded steps, once."""
        if self._inverse_unit is None:
            if self.data is None:
                raise ValueError("the inverse head's step unit comes from dataset "
                                 "transitions. Fix: pass the task's offline data")
            z0, z1 = recorded_steps(self.stack, self.data)
            self._inverse_unit = float(step_rms(jnp.asarray(z1 - z0)))
        return self._inverse_unit

    def frame_step(self, updates: int, seed: int = 0, kind: str = "agent", horizon: int = 1,
                   sharp: float = 0.0, locate: str = "attention"):
        """A predictor that also reads the frame, fitted to the data's recorded
        transitions (every frame encoded once: `snap` for pixels), once per (kind,
        updates, seed). `kind`: "agent", `hplan.wm.frame_step` (the walls round the
        agent in the frame it is given); "map", `hplan.wm.map_step` (the walls where the
        latent says the agent is, in any frame of the map; fitted on `horizon`-step
        rollouts, with its teacher's attention sharpened by `sharp`, or the agent located
        by frame differences: `locate`)."""
        from hplan.wm import frame_step as F
        from hplan.wm import map_step as M
        from hplan.wm.fitted import load_or_fit

        key = (kind, updates, seed, horizon, sharp, locate)
        if key not in self._frame_steps:
            if self.data is None:
                raise ValueError("the frame step is fitted to dataset transitions. Fix: "
                                 "pass the task's offline data")
            obs = np.asarray(self.data.obs)
            if obs.ndim != 5:
                raise ConfigError("frame_step", f"a frame step ({kind}, {updates} updates) "
                                  f"on observations of shape {obs.shape[2:]}", "use it on "
                                  "a pixel task (images [H, W, C]), or turn it off")
            acts = np.asarray(self.data.actions, np.float32)
            t, d, size = acts.shape[1], self.stack.wm_cfg.latent_dim, acts.shape[-1]

            def fit():
                z = np.asarray(self.snap()[0], np.float32)  # images: the encoded frames
                if kind == "map":
                    return M.fit(obs[:, :t + 1], z[:, :t + 1], acts, updates, seed,
                                 horizon=horizon, sharp=sharp, locate=locate,
                                 progress=True)[0]
                return F.fit(obs[:, :t].reshape(-1, *obs.shape[2:]),
                             z[:, :t].reshape(-1, d), z[:, 1:t + 1].reshape(-1, d),
                             acts.reshape(-1, size), updates, seed, progress=True)[0]

            def skeleton():
                if kind == "map":
                    return M.MapStep(obs.shape[2:], d, size, nnx.Rngs(seed))
                return F.FrameStep(obs.shape[-1], d, size, nnx.Rngs(seed))

            home = self.stack.home
            name = f"{kind}-{updates}" + (f"-h{horizon}" if horizon > 1 else "") + (
                f"-x{sharp:g}" if sharp > 0 else "") + ("-d" if locate == "difference" else "")
            path = None if home is None else Path(home) / "fitted" / f"{name}-s{seed}"
            wrap = M.MapStepModel if kind == "map" else F.FrameStepModel
            self._frame_steps[key] = load_or_fit(path, skeleton, fit, wrap)
        return self._frame_steps[key]

    def snap(self) -> tuple[np.ndarray, float]:
        """`snap_states(stack, data)`, computed once: with pixels it encodes every dataset
        frame (a spread bank and its state graph both read it)."""
        if self._snap is None:
            self._snap = snap_states(self.stack, self.data)
        return self._snap

    def pinned(self) -> np.ndarray:
        """`pinned_states(data)`, computed once."""
        if self._pinned is None:
            self._pinned = pinned_states(self.data)
        return self._pinned

    def bank_indices(self, size: int, seed: int | str = 0) -> np.ndarray:
        """`bank_index` of a bank, computed once: every view of a bank reads the same
        dataset states. `seed`: an int seeds the uniform draw; "spread" picks the states
        farthest-first instead (`spread_index`, `GraphLevelConfig.spread`)."""
        if self.data is None:
            raise ValueError("this agent selects subgoals from a bank of dataset states. "
                             "Fix: pass the task's offline data (hplan collect)")
        if (size, seed) not in self._indices:
            if seed == "spread":
                x, step = self.snap()
                self._indices[(size, seed)] = spread_index(x / step, self.data.groups, size,
                                                           self.pinned())
            else:
                self._indices[(size, seed)] = bank_index(self.data, size, seed, self.pinned())
        return self._indices[(size, seed)]

    def bank(self, size: int, seed: int | str = 0) -> tuple[np.ndarray, jax.Array]:
        """(dataset indices, encoded latents [size, d]) of a bank."""
        idx = self.bank_indices(size, seed)
        return idx, jnp.asarray(self.stack.encode(_rows(self.data.obs, idx)))

    def bank_groups(self, size: int, seed: int | str = 0) -> np.ndarray | None:
        """[size] the map (`Dataset.groups`) of each bank state; None for one map."""
        if self.data is None or self.data.groups is None:
            return None
        idx = self.bank_indices(size, seed)
        return np.asarray(self.data.groups)[idx // self.data.obs.shape[1]]

    def bank_views(self, size: int, seed: int | str = 0) -> tuple[jax.Array, Callable]:
        """(the bank states' observations, flattened [size, k], `view(state)`: the agent's
        and the goal's observation alike [2, k]): what a family's map is told by when the
        latent does not keep it (`GraphLevelConfig.family_by`)."""
        idx = self.bank_indices(size, seed)
        views = jnp.asarray(_view(_rows(self.data.obs, idx), batched=True))
        return views, lambda state: jnp.stack([_view(state.obs), _view(state.info["goal_obs"])])

    def lane_speed(self, size: int, seed: int | str = 0, ahead: int = 2,
                   neighbours: int = 16) -> np.ndarray:
        """[M] how fast the data moved on from each bank state (latent displacement over
        `ahead` recorded steps, in base steps per step), averaged over its `neighbours`
        latent-nearest bank states. Slow where the data kept running into something: an
        ant's feet on a wall, where level 0 cannot follow a straight push. On
        antmaze-medium-gait its Spearman with the torso's wall distance is 0.54 (one
        state, no averaging: 0.34)."""
        idx, bank = self.bank(size, seed)
        steps = self.data.obs.shape[1]
        ep, t = np.divmod(idx, steps)
        t1 = np.minimum(t + ahead, steps - 1) - ahead  # a window inside the episode
        z = self.stack.encode(np.stack([_rows(self.data.obs, ep * steps + t1),
                                        _rows(self.data.obs, ep * steps + t1 + ahead)]))
        speed = np.linalg.norm(z[1] - z[0], axis=-1) / ahead / self.scale
        return speed[np.asarray(nearest_states(bank, neighbours))].mean(1)

    def graph(self, size: int, edges: str = "data", seed: int | str = 0,
              bridge: float = 0.0, bridges: int = 1, bridge_critic: float = 0.0,
              join: bool = False) -> G.BankGraph:
        """The bank graph (cached: agents that share a bank share its graph); with
        `bridge` > 0, its islands on each map joined by straight links up to that many
        steps long, `bridges` out of each (`bridged`), none that critic0 puts over
        `bridge_critic` steps apart (0: unchecked)."""
        key = (size, edges, seed, bridge, bridges, bridge_critic, join)
        if key not in self._graphs:
            idx, bank = self.bank(size, seed)
            if edges == "path":
                links, points = path_edges(self.stack, self.data, idx, snap=self.snap())
            elif edges == "states":
                links, points = state_edges(self.stack, self.data, idx, join=join,
                                             snap=self.snap())
            else:
                links, points, _ = self._data_edges(size, seed)
            if edges == "critic":
                links = verified(critic_edges(self.stack, bank), links, len(idx))
            elif edges not in ("data", "path", "states"):
                raise ValueError(f"edges={edges!r}. Fix: use 'data', 'path', 'states' or "
                                 "'critic'")
            if bridge > 0:
                groups = self.bank_groups(size, seed)
                check = (critic_too_far(self.stack, bank, bridge_critic)
                         if bridge_critic > 0 else None)
                links = bridged(np.asarray(points), links,
                                np.zeros(len(idx), int) if groups is None else groups, bridge,
                                bridges, check)
            self._graphs[key] = G.build(bank, *links, pinned=np.isin(idx, self.pinned()),
                                        points=points)
        return self._graphs[key]

    def _data_edges(self, size: int, seed: int | str = 0):
        """`data_edges` of a bank, once: shared by the data and critic graphs and
        `successors`."""
        if (size, seed) not in self._links:
            idx = self.bank_indices(size, seed)
            self._links[(size, seed)] = data_edges(self.stack, self.data, idx,
                                                      snap=self.snap())
        return self._links[(size, seed)]

    def successors(self, size: int, ahead: int, seed: int | str = 0) -> np.ndarray:
        """`data_successors` of a bank."""
        idx = self.bank_indices(size, seed)
        return data_successors(self._data_edges(size, seed)[2], idx, ahead)

    def snapped(self, size: int, seed: int | str = 0):
        """(bank states in `snap_space` [size, k], `locate(state)`: the agent's state in
        that space), or None where it is the latent space (images)."""
        kind = snap_space(self.data)
        if kind == "latent":
            return None
        idx = self.bank_indices(size, seed)
        bank = jnp.asarray(_rows(snap_data(self.data, kind), idx), jnp.float32)
        if kind == "xy":
            return bank, lambda state: state.metrics["xy"]
        return bank, lambda state: state.obs

    def bank_xy(self, size: int, seed: int | str = 0) -> np.ndarray | None:
        """Goal-space positions of the bank states (diagnostics and plots only)."""
        if self.data is None or self.data.xy is None:
            return None
        return _rows(self.data.xy, self.bank_indices(size, seed))
