"""Goal-conditioned cost-to-go `V(z, g)` learned from reward-free data.

Two methods. "graph" (default): shortest paths over the dataset's own transitions
(search on the replay buffer), distilled into the network by regression; it converges in
a few thousand updates. "td": expectile temporal-difference learning, described below.

Costs are 1 per transition of the critic's stride. Goals are the current state (cost 0),
a later state of the same trajectory, or a random dataset state; the last kind, with
bootstrapping, stitches short exploration trajectories into long-range distances. A
low expectile of the TD target approximates the minimum over the data's actions, so `V`
tracks the shortest path rather than the random walk. An EMA target stabilises it.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from hplan.sharding import shard_batch
from hplan.wm.jepa import scanned
from hplan.wm.models import Critic, WMConfig


@dataclasses.dataclass(frozen=True)
class CriticConfig:
    method: str = "graph"  # "graph": distil dataset-graph distances; "td": expectile TD
    nodes: int = 4096  # graph method: dataset states used as graph nodes
    steps: int = 20000
    batch: int = 512
    lr: float = 1e-3
    expectile: float = 0.1  # weight on targets above V; < 0.5 tracks the minimum
    discount: float = 1.0  # undiscounted: V counts strides to the goal
    p_self: float = 0.1
    p_future: float = 0.5  # the rest are random dataset states
    future_mean: float = 24.0  # mean gap (base steps) of same-trajectory goals
    ema: float = 0.995
    nstep: int = 8  # TD targets along the data's own path, 1..nstep strides ahead
    chunk: int = 500
    seed: int = 0


def make_chunk(graphdef, opt, z: jax.Array, stride: int, cc: CriticConfig, mesh=None):
    """`z` [N, T+1, d] frozen latents. Returns (chunk, data), run as `chunk(state, data)
    -> (state, metrics)` (the data an argument, not a constant of the compiled chunk)."""
    n, t1, _ = z.shape
    t = t1 - 1
    if t < stride:
        raise ValueError(f"episodes of {t} steps are shorter than the critic stride {stride}")
    base = jax.random.key(cc.seed + 1)

    def value(params, a, g):
        return nnx.merge(graphdef, params)(a, g)

    def sample(key, z):
        ks = jax.random.split(key, 7)
        b = cc.batch
        i = jax.random.randint(ks[0], (b,), 0, n)
        ti = jax.random.randint(ks[1], (b,), 0, t - stride + 1)
        # n-step: any path the data took is an upper bound on the shortest one, and the
        # low expectile keeps the smallest; longer jumps propagate distances faster.
        k = jax.random.randint(ks[6], (b,), 1, cc.nstep + 1)
        k = jnp.minimum(k, (t - ti) // stride)
        tn = ti + k * stride
        kind = jax.random.uniform(ks[2], (b,))
        gap = 1 + jax.random.geometric(ks[3], 1.0 / cc.future_mean, (b,)).astype(jnp.int32)
        tf = jnp.minimum(ti + gap, t)
        ir = jax.random.randint(ks[4], (b,), 0, n)
        tr = jax.random.randint(ks[5], (b,), 0, t1)
        is_self = kind < cc.p_self
        is_future = (~is_self) & (kind < cc.p_self + cc.p_future)
        gi = jnp.where(is_self, i, jnp.where(is_future, i, ir))
        gt = jnp.where(is_self, ti, jnp.where(is_future, tf, tr))
        same = gi == i
        reached_now = same & (gt == ti)
        # Goal passed on the way: its cost is the number of strides to reach it.
        reached_next = same & (gt > ti) & (gt <= tn)
        steps_to_goal = jnp.where(reached_next, -(-(gt - ti) // stride), k)
        return z[i, ti], z[i, tn], z[gi, gt], reached_now, reached_next, steps_to_goal

    def update(state, z):
        zs, zn, g, now, nxt, k = jax.tree.map(
            lambda x: shard_batch(x, mesh), sample(jax.random.fold_in(base, state["step"]), z))
        v_next = value(state["target"], zn, g)
        run_cost = (k.astype(jnp.float32) if cc.discount == 1.0
                    else (1 - cc.discount**k) / (1 - cc.discount))
        y = jnp.where(now, 0.0, jnp.where(nxt, run_cost, run_cost + cc.discount**k * v_next))
        y = jax.lax.stop_gradient(y)

        def loss_fn(params):
            v = value(params, zs, g)
            diff = y - v
            w = jnp.where(diff > 0, cc.expectile, 1.0 - cc.expectile)
            return jnp.mean(w * diff**2), jnp.mean(v)

        (loss, vmean), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        upd, opt_state = opt.update(grads, state["opt"], state["params"])
        params = optax.apply_updates(state["params"], upd)
        target = optax.incremental_update(params, state["target"], 1 - cc.ema)
        return ({"params": params, "target": target, "opt": opt_state,
                 "step": state["step"] + 1}, {"critic_loss": loss, "v_mean": vmean})

    return scanned(update, cc.chunk), z


def graph_distances(z: np.ndarray, n_nodes: int, seed: int = 0):
    """Shortest-path step counts over the dataset's own transitions (search on the data).

    Every state is snapped to its nearest of `n_nodes` sampled dataset states; each
    observed transition is an edge of cost 1, so walls (never crossed by data) are
    respected and separate trajectories are stitched where they pass the same node.
    Returns (node id per state [N, T+1], distances [n_nodes, n_nodes] in steps).
    """
    n, t1, _ = z.shape
    rng = np.random.default_rng(seed)
    ids, dist = transition_graph(z, rng.choice(n * t1, min(n_nodes, n * t1), replace=False))
    finite = np.isfinite(dist)
    dist[~finite] = dist[finite].max() + 1
    return ids, dist


def group_graph_distances(z: np.ndarray, groups: np.ndarray, n_nodes: int, seed: int = 0,
                          radius: float = 0.4):
    """`graph_distances` for data on many maps: one graph per group (map) of episodes,
    with `n_nodes` spread over the groups, so every map gets its share of nodes at a
    spacing that resolves its walls (one graph of 4096 nodes over 104 two-room maps
    spaced them 2 cells apart, and the critic put cells either side of a wall 0.05x their
    true distance apart). Returns (node id within its group's graph per state [N, T+1],
    distances [G, m, m] padded with the unreachable value, group index per episode [N],
    each node's state as (episode, step) [G, m, 2])."""
    from scipy.sparse.csgraph import shortest_path

    n, t1, _ = z.shape
    names, gid = np.unique(np.asarray(groups), return_inverse=True)
    per = max(2, n_nodes // len(names))
    rng = np.random.default_rng(seed)
    ids = np.zeros((n, t1), np.int64)
    blocks, where = [], []
    for g in range(len(names)):
        eps = np.flatnonzero(gid == g)
        m = min(per, len(eps) * t1)
        local = rng.choice(len(eps) * t1, m, replace=False)
        ids[eps], links = path_links(z[eps], local, radius)
        blocks.append(shortest_path(links, method="D").astype(np.float32))
        where.append(np.stack([eps[local // t1], local % t1], 1))  # each node's state
    m = max(len(b) for b in blocks)
    dist = np.full((len(blocks), m, m), np.inf, np.float32)
    node_at = np.zeros((len(blocks), m, 2), np.int64)
    for g, b in enumerate(blocks):
        dist[g, : len(b), : len(b)] = b
        node_at[g, : len(b)] = where[g]
        node_at[g, len(b):] = where[g][0]
    finite = np.isfinite(dist)
    dist[~finite] = dist[finite].max() + 1
    return ids, dist, gid.astype(np.int32), node_at


def latent_neighbours(z: np.ndarray, node_at: np.ndarray, k: int = 8) -> np.ndarray:
    """[G, m, k]: each node's `k` nearest nodes of its map in latent space (itself
    excluded). Goals among them are the pairs a critic gets wrong: near in the latent,
    far round a wall."""
    zn = z[node_at[..., 0], node_at[..., 1]]  # [G, m, d]
    out = []
    for zg in zn:  # a map at a time: [m, m, d], not [G, m, m, d]
        d2 = ((zg[:, None] - zg[None]) ** 2).sum(-1)
        d2[np.arange(len(zg)), np.arange(len(zg))] = np.inf
        out.append(np.argsort(d2, axis=-1)[:, :k])
    return np.stack(out)


def transition_graph(z: np.ndarray, node_idx: np.ndarray, directed: bool = True):
    """`graph_distances` over given nodes (flat indices into `z` [N, T+1, d]); pairs the
    data never joins are `inf`."""
    from scipy.sparse.csgraph import shortest_path

    ids, g = transition_links(z, node_idx)
    return ids, shortest_path(g, method="D", directed=directed).astype(np.float32)


def hops(z: np.ndarray) -> np.ndarray:
    """[N, T] the length of each step of trajectories `z` [N, T+1, d]."""
    return np.linalg.norm(np.diff(z, axis=1), axis=-1)


def step_unit(hop: np.ndarray) -> float:
    """A full-speed step: the 95th percentile of the data's own step lengths (`hops`)."""
    return float(max(np.percentile(hop, 95), 1e-8))


def transition_links(z: np.ndarray, node_idx: np.ndarray, groups: np.ndarray | None = None,
                     step: float | None = None):
    """(node id per state [N, T+1], sparse directed link matrix): every state snaps to its
    nearest node and each observed transition between two nodes links them, its length
    the distance between the nodes in full-speed steps (`step`: that step's length, when
    the caller has it; default `step_unit(hops(z))`). With `groups` [N] (the map of
    each episode), a state snaps only to nodes of its own group: on two-rooms-random,
    13 % of states snapped to another map's node and 31 % of links joined two maps, each a
    door where that map has a wall."""
    from scipy.sparse import coo_matrix

    z = np.asarray(z)
    n, t1, d = z.shape
    flat = z.reshape(-1, d)
    node_idx = np.asarray(node_idx)
    nodes = flat[node_idx]
    nj = jnp.asarray(nodes)
    sq = jnp.sum(nj**2, -1)
    g_state = np.repeat(np.zeros(n, np.int32) if groups is None
                        else np.asarray(groups, np.int32), t1)
    g_node = jnp.asarray(g_state[node_idx])

    @jax.jit
    def nearest(x, gx):
        d2 = sq[None] - 2 * x @ nj.T
        return jnp.argmin(jnp.where(gx[:, None] == g_node[None], d2, jnp.inf), axis=1)

    ids = np.concatenate([np.asarray(nearest(jnp.asarray(flat[i: i + 16384]),
                                             jnp.asarray(g_state[i: i + 16384])))
                          for i in range(0, len(flat), 16384)]).reshape(n, t1)
    src, dst = ids[:, :-1].ravel(), ids[:, 1:].ravel()
    # A node that duplicates another state (an agent pinned at a wall) snaps to that one:
    # link the two, or it would sit alone.
    self_id = ids.reshape(-1)[np.asarray(node_idx)]
    src = np.concatenate([src, np.arange(len(self_id))])
    dst = np.concatenate([dst, self_id])
    keep = src != dst
    src, dst = src[keep], dst[keep]
    # Edge length: distance between the two nodes, in units of a full-speed step. Hop
    # counts would make every edge cost the same, however far apart its nodes are.
    step = step_unit(hops(z)) if step is None else step
    g = coo_matrix((np.ones(len(src)), (src, dst)), shape=(len(nodes),) * 2).tocsr()
    g.sum_duplicates()  # one edge per observed node pair; its length is set below
    g.data = np.maximum(np.linalg.norm(
        nodes[np.repeat(np.arange(len(nodes)), np.diff(g.indptr))] - nodes[g.indices],
        axis=-1) / step, 1e-3)
    return ids, g


def path_links(z: np.ndarray, node_idx: np.ndarray, radius: float = 1.0):
    """(node id per state [N, T+1], sparse link matrix) for a graph that never cuts
    through a wall: a state joins a node only within `radius` full-speed steps of it (in
    latent distance; a wall one cell thick is two steps), and two nodes are linked by the
    stretch of trajectory between consecutive joined states, as long as the latent path
    it actually travelled. Nearest-node snapping put states either side of a thin wall on
    one node: on two-rooms-random, 35 % of node pairs either side of the wall were
    linked at under half their true distance. A state joined to no node takes the node of
    the nearest joined state of its own trajectory (few steps away, the same side)."""
    from scipy.sparse import coo_matrix

    n, t1, d = z.shape
    flat = z.reshape(-1, d)
    nodes = flat[np.asarray(node_idx)]
    hop = hops(z)
    step = step_unit(hop)
    d2 = (flat**2).sum(1)[:, None] - 2 * flat @ nodes.T + (nodes**2).sum(1)[None]
    near = d2.argmin(1)
    dn = np.sqrt(np.maximum(d2[np.arange(len(flat)), near], 0)).reshape(n, t1) / step
    near = near.reshape(n, t1)
    ok = dn <= radius
    ok.reshape(-1)[np.asarray(node_idx)] = True
    along = np.concatenate([np.zeros((n, 1)), np.cumsum(hop, 1) / step], 1)  # path so far
    t = np.broadcast_to(np.arange(t1), (n, t1))
    prev = np.maximum.accumulate(np.where(ok, t, -1), axis=1)  # last joined state <= t
    nxt = np.flip(np.minimum.accumulate(np.flip(np.where(ok, t, t1), 1), axis=1), 1)
    # Links: consecutive joined states of a trajectory.
    before = np.concatenate([np.full((n, 1), -1), prev[:, :-1]], 1)
    e, tt = np.nonzero(ok & (before >= 0))
    tp = before[e, tt]
    src, dst = near[e, tp], near[e, tt]
    w = along[e, tt] - along[e, tp] + dn[e, tp] + dn[e, tt]
    keep = src != dst
    src, dst, w = src[keep], dst[keep], np.maximum(w[keep], 1e-3)
    order = np.lexsort((w, dst, src))  # the shortest stretch per node pair
    src, dst, w = src[order], dst[order], w[order]
    first = np.ones(len(src), bool)
    first[1:] = (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])
    g = coo_matrix((w[first], (src[first], dst[first])), shape=(len(nodes),) * 2).tocsr()
    # Each state's node: its own if joined, else that of the nearer joined neighbour in time.
    use_prev = (prev >= 0) & ((nxt >= t1) | (t - prev <= nxt - t))
    src_t = np.where(use_prev, prev, np.where(nxt < t1, nxt, t))
    ids = np.where(ok, near, near[np.arange(n)[:, None], src_t])
    return ids, g


def make_graph_chunk(graphdef, opt, z: jax.Array, ids: np.ndarray, dist: np.ndarray,
                     stride: int, cc: CriticConfig, mesh=None):
    """Regress V(z_x, z_y) onto the graph distance between the nodes of x and y.
    Returns (chunk, data) as `make_chunk`."""
    n, t1, _ = z.shape
    base = jax.random.key(cc.seed + 2)

    def update(state, data):
        z, ids, dist = data
        ks = jax.random.split(jax.random.fold_in(base, state["step"]), 5)
        b = cc.batch
        i, ti = jax.random.randint(ks[0], (b,), 0, n), jax.random.randint(ks[1], (b,), 0, t1)
        # Half the goals come from the same trajectory, so short ranges are well covered.
        gi = jnp.where(jax.random.uniform(ks[4]) < 0.5, i, jax.random.randint(ks[2], (b,), 0, n))
        gt = jax.random.randint(ks[3], (b,), 0, t1)
        i, ti, gi, gt = (shard_batch(x, mesh) for x in (i, ti, gi, gt))
        y = dist[ids[i, ti], ids[gi, gt]]
        return _regress(graphdef, opt, state, z[i, ti], z[gi, gt],
                        lambda v: jnp.mean((v - y) ** 2 / (1.0 + y)))

    return scanned(update, cc.chunk), (z, jnp.asarray(ids), jnp.asarray(dist) / stride)


def _regress(graphdef, opt, state, za: jax.Array, zg: jax.Array, loss_of):
    """One critic update: `loss_of(V(za, zg))`, the new state and its metrics."""

    def loss_fn(params):
        v = nnx.merge(graphdef, params)(za, zg)
        return loss_of(v), jnp.mean(v)

    (loss, vmean), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    upd, opt_state = opt.update(grads, state["opt"], state["params"])
    params = optax.apply_updates(state["params"], upd)
    return ({"params": params, "target": params, "opt": opt_state,
             "step": state["step"] + 1}, {"critic_loss": loss, "v_mean": vmean})


def make_group_graph_chunk(graphdef, opt, z: jax.Array, ids: np.ndarray, dist: np.ndarray,
                           gid: np.ndarray, node_at: np.ndarray, near: np.ndarray,
                           stride: int, cc: CriticConfig, mesh=None):
    """`make_graph_chunk` over `group_graph_distances`: goals are states of the same map,
    a third each from the same trajectory, anywhere on the map, and among the state's
    nearest nodes in latent space (`near`, from `latent_neighbours`: hard pairs, near in
    the latent, far round a wall); a goal on another map is never asked for."""
    n, t1, _ = z.shape
    near, node_at = jnp.asarray(near), jnp.asarray(node_at)
    ids, dist, gid = jnp.asarray(ids), jnp.asarray(dist) / stride, jnp.asarray(gid)
    data = (z, ids, dist, near, node_at)
    order = np.argsort(np.asarray(gid), kind="stable")
    counts = np.bincount(np.asarray(gid))
    starts = jnp.asarray(np.concatenate([[0], np.cumsum(counts)[:-1]]))
    order, counts = jnp.asarray(order), jnp.asarray(counts)
    # Pairs the data never joined are not "as far as anything gets": a map whose data
    # never crossed its door would teach that for the same door another map's data went
    # through. They only teach a floor (half the longest known distances), the one thing
    # they do say: no short way between them was ever seen.
    far = dist.max()
    floor = 0.5 * np.percentile(np.asarray(dist)[np.asarray(dist) < far], 95)
    base = jax.random.key(cc.seed + 2)

    def update(state, data):
        z, ids, dist, near, node_at = data
        ks = jax.random.split(jax.random.fold_in(base, state["step"]), 6)
        b = cc.batch
        i, ti = jax.random.randint(ks[0], (b,), 0, n), jax.random.randint(ks[1], (b,), 0, t1)
        g = gid[i]
        other = order[starts[g] + jax.random.randint(ks[2], (b,), 0, counts[g])]
        kind = jax.random.randint(ks[4], (b,), 0, 3)
        gi = jnp.where(kind == 0, i, other)
        gt = jax.random.randint(ks[3], (b,), 0, t1)
        nb = near[g, ids[i, ti], jax.random.randint(ks[5], (b,), 0, near.shape[-1])]
        gi = jnp.where(kind == 2, node_at[g, nb, 0], gi)
        gt = jnp.where(kind == 2, node_at[g, nb, 1], gt)
        i, ti, gi, gt, g = (shard_batch(x, mesh) for x in (i, ti, gi, gt, g))
        y = dist[g, ids[i, ti], ids[gi, gt]]
        known = (y < far).astype(jnp.float32)

        def loss_of(v):
            err = known * (v - y) ** 2 / (1.0 + y)
            return jnp.mean(err + (1.0 - known) * jax.nn.relu(floor - v) ** 2 / (1.0 + floor))

        return _regress(graphdef, opt, state, z[i, ti], z[gi, gt], loss_of)

    return scanned(update, cc.chunk), data


def init_state(wm: WMConfig, cc: CriticConfig, seed: int = 0):
    critic = Critic(wm, nnx.Rngs(seed + 100))
    graphdef, params = nnx.split(critic)
    # Decaying the rate sharpens the fit: descent needs neighbour-level precision.
    opt = optax.adam(optax.cosine_decay_schedule(cc.lr, cc.steps, alpha=0.05))
    return graphdef, opt, {"params": params, "target": params, "opt": opt.init(params),
                           "step": jnp.int32(0)}
