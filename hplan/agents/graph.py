"""A graph over encoded dataset states, and routes over it that can cut wormholes.

Search on the replay buffer (SoRB, SGM) plans over a bank of encoded dataset states joined
by short links. One wrong link (a *wormhole*: two states that look near but are far, such
as the two sides of a corner where two walls meet) lets every shortest path through a
wall; no metric test can tell those sides apart at the corner point itself. So the route
here is cut-aware: an agent that makes no progress cuts the graph around the place it is
stuck, and the distance-to-goal field is recomputed on the device without it.

- `BankGraph`: bank latents, their link list, all-pairs distances `dist` (base steps) and a
  sparse landmark graph (farthest-point sampled bank states, each joined to its nearest
  landmarks by `dist`) on which the field is recomputed cheaply.
- `field(graph, cuts, goal_node, goal_cost)`: the distance from every bank state to the
  goal avoiding the cut neighbourhoods (Bellman-Ford over the landmarks, then one link
  from each bank state to its nearest landmarks). A link or landmark edge counts as cut
  when its shortest path passes by a cut centre within `radius`:
  `dist[a, c] + dist[c, b] <= dist[a, b] + radius`. (A wormhole's path runs through
  the cut centre itself, the state the agent got stuck on; a corridor's paths beside
  it survive.)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

BIG = 1e4  # distance of pairs the graph does not join (base steps)


class BankGraph(NamedTuple):
    latents: jax.Array  # [M, d]
    dist: jax.Array  # [M, M] all-pairs shortest paths (base steps), BIG if unjoined
    landmarks: jax.Array  # [L] bank indices
    lm_nbr: jax.Array  # [L, K] landmark indices of each landmark's neighbours
    lm_w: jax.Array  # [L, K] their distances (inf: padding)
    links: jax.Array  # [M, J] each bank state's nearest landmarks (landmark indices)
    edges: tuple[np.ndarray, np.ndarray, np.ndarray]  # (src, dst, weight): the direct links
    pinned: jax.Array  # [M] states the data holds more than once (pushed into an obstacle)
    # [M, k] the states in the space the links were measured in (a link's length is the
    # distance between its points); `build` puts the latents where none is given
    points: jax.Array


def shortest_paths(m: int, src: np.ndarray, dst: np.ndarray, w: np.ndarray,
                   limit: float = np.inf) -> np.ndarray:
    """All-pairs shortest paths of an undirected weighted graph, BIG where unjoined (or,
    with a finite `limit`, farther than it: Dijkstra then stops early)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    g = coo_matrix((np.maximum(w, 1e-3), (src, dst)), shape=(m, m)).tocsr()
    d = dijkstra(g, directed=False, limit=limit)
    return np.minimum(d, BIG).astype(np.float32)


def farthest_points(dist: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """`n` indices spread out by `dist` (greedy farthest-point sampling)."""
    m = dist.shape[0]
    n = min(n, m)
    first = int(np.random.default_rng(seed).integers(m))
    chosen = [first]
    near = dist[first].copy()
    for _ in range(n - 1):
        nxt = int(np.argmax(near))
        chosen.append(nxt)
        near = np.minimum(near, dist[nxt])
    return np.asarray(chosen)


def build(latents, src: np.ndarray, dst: np.ndarray, w: np.ndarray,
          n_landmarks: int = 512, k: int = 8, n_links: int = 8,
          pinned: np.ndarray | None = None, points: np.ndarray | None = None) -> BankGraph:
    """A `BankGraph` over `latents` [M, d] from undirected links (src, dst, w), measured
    between `points` [M, k] (default: the latents)."""
    latents = np.asarray(latents, np.float32)
    m = latents.shape[0]
    dist = shortest_paths(m, src, dst, w)
    lm = farthest_points(dist, n_landmarks)
    dl = dist[np.ix_(lm, lm)].copy()
    np.fill_diagonal(dl, np.inf)
    kk = min(k, len(lm) - 1)
    nbr = np.argsort(dl, axis=1)[:, :kk]
    # Symmetrise: a kNN relation is not; the route must be able to go both ways.
    adj = np.zeros_like(dl, bool)
    adj[np.repeat(np.arange(len(lm)), kk), nbr.ravel()] = True
    adj |= adj.T
    adj &= dl < BIG
    deg = max(int(adj.sum(1).max()), 1)
    lm_nbr = np.zeros((len(lm), deg), np.int32)
    lm_w = np.full((len(lm), deg), np.inf, np.float32)
    for i in range(len(lm)):
        js = np.nonzero(adj[i])[0]
        lm_nbr[i, : len(js)] = js
        lm_w[i, : len(js)] = dl[i, js]
    links = np.argsort(dist[:, lm], axis=1)[:, : min(n_links, len(lm))].astype(np.int32)
    return BankGraph(latents=jnp.asarray(latents), dist=jnp.asarray(dist),
                     landmarks=jnp.asarray(lm, jnp.int32), lm_nbr=jnp.asarray(lm_nbr),
                     lm_w=jnp.asarray(lm_w), links=jnp.asarray(links),
                     edges=(np.asarray(src), np.asarray(dst), np.asarray(w, np.float32)),
                     pinned=jnp.asarray(np.zeros(m, bool) if pinned is None else pinned),
                     points=jnp.asarray(latents if points is None else points, jnp.float32))


# -- cut-aware distances (pure, jit-able) ----------------------------------------------------
def passes(graph: BankGraph, cuts: jax.Array, a: jax.Array, b: jax.Array,
           radius: float) -> jax.Array:
    """True where the shortest path from bank state `a` to `b` (any equal shapes) passes
    within `radius` (one, or [C]: one per cut) of a cut centre (`cuts` [C] bank indices,
    -1: none)."""
    d = graph.dist
    c = jnp.maximum(cuts, 0)
    via = d[a[..., None], c] + d[c, b[..., None]]  # [..., C]
    hit = (cuts >= 0) & (via <= d[a, b][..., None] + radius)
    return jnp.any(hit, axis=-1)


def cut_mask(graph: BankGraph, cuts: jax.Array, radius: float) -> jax.Array:
    """[M] bank states within `radius` (one, or one per cut) of a cut centre."""
    r = jnp.asarray(radius)
    near = graph.dist[jnp.maximum(cuts, 0)] <= (r[:, None] if r.ndim else r)  # [C, M]
    return jnp.any(near & (cuts >= 0)[:, None], axis=0)


def field(graph: BankGraph, cuts: jax.Array, goal_node: jax.Array, goal_cost: jax.Array,
          radius: float, reach: float) -> jax.Array:
    """[M] distance from every bank state to the goal (which joins the graph at
    `goal_node` at `goal_cost`), avoiding the cut neighbourhoods; BIG where cut off.

    Landmarks within `reach` of the goal node start the Bellman-Ford sweep; every bank
    state then takes its best link to a landmark (or to the goal node within `reach`)."""
    lm, nbr = graph.landmarks, graph.lm_nbr
    dead = cut_mask(graph, cuts, radius)
    g = jnp.broadcast_to(goal_node, lm.shape)
    start = graph.dist[lm, goal_node] + goal_cost
    ok = (start <= reach + goal_cost) & ~dead[lm] & ~passes(graph, cuts, lm, g, radius)
    t0 = jnp.where(ok, start, jnp.inf)
    a = jnp.broadcast_to(lm[:, None], nbr.shape)
    blocked = (dead[lm][:, None] | dead[lm[nbr]]
               | passes(graph, cuts, a, lm[nbr], radius))
    w = jnp.where(blocked, jnp.inf, graph.lm_w)

    def body(carry):
        t, _, i = carry
        new = jnp.minimum(t, jnp.min(w + t[nbr], axis=1))
        return new, jnp.any(new < t - 1e-4), i + 1

    t, _, _ = jax.lax.while_loop(lambda c: c[1] & (c[2] < lm.shape[0]), body,
                                 (t0, jnp.bool_(True), jnp.int32(0)))
    m = graph.dist.shape[0]
    s = jnp.arange(m)
    to_lm = graph.dist[s[:, None], lm[graph.links]]  # [M, J]
    via_lm = jnp.where(passes(graph, cuts, jnp.broadcast_to(s[:, None], graph.links.shape),
                              lm[graph.links], radius), jnp.inf, to_lm + t[graph.links])
    direct = graph.dist[:, goal_node] + goal_cost
    direct = jnp.where((graph.dist[:, goal_node] <= reach)
                       & ~passes(graph, cuts, s, jnp.broadcast_to(goal_node, s.shape), radius),
                       direct, jnp.inf)
    out = jnp.minimum(jnp.min(via_lm, axis=1), direct)
    return jnp.where(dead | ~jnp.isfinite(out), BIG, jnp.minimum(out, BIG))
