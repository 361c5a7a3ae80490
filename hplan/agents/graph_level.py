"""A `Level` that picks subgoals from a `BankGraph` and cuts the graph where it is stuck.

Among bank states within `reach` of the current latent (graph distance, the reach
stretched to the nearest state that makes progress when none within it does), pick the
one minimising `D(z, s) + (1 + progress) togo(s) [+ commit D(prev, s)]`; the target
itself once it is within reach. `togo` is the graph distance to the target avoiding the
cuts (`hplan.agents.graph.field`), recomputed only when the target or the cuts change.

A stall (the distance to the target has not dropped by a step in `patience` control
steps) has two causes, answered in turn:
- the level-0 model is wrong where the agent is (a wall corner it cannot turn): the
  subgoal's graph neighbourhood is banned for `ban_steps`, so the reach stretches past
  it and level 0 gets a target round the corner;
- the way ahead does not exist (a *wormhole*: two states that look near but are far, as
  two cells touching at a corner): a second stall at the same place (within
  `same_place` base steps of the first), or a stall with the target itself as the
  subgoal, cuts the graph within `cut_radius` of the bank state the agent stands on and of
  the state one step ahead on its route, and drops every route through there; the field
  is recomputed and the next route goes round. A passage wider than the cut (a corridor)
  survives it. The target joins the graph at its nearest state the cuts leave alive,
  so a cut of a join across a wall (the goal's latent-nearest state on the wrong side)
  moves the join. If the cuts leave the agent no route at all, they are dropped newest
  first until one exists.

A surprise (`hplan.agents.surprise`: the world did not move as the model predicted) cuts
the same way at once, without waiting for a stall, and wider (`surprise_radius`): the
route the agent was on is gone, a whole door of it, not a hair-thin wormhole.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hplan.agents import graph as G
from hplan.agents.level import Level, level_info, once
from hplan.core import ConfigError


@dataclasses.dataclass(frozen=True)
class GraphLevelConfig:
    """Distances in base steps."""

    bank: int = 4096  # encoded dataset states the level chooses among
    # Bank states picked farthest-first over each map's data (`context.spread_index`)
    # instead of drawn uniformly, which follows the data's density: sparse at free cells'
    # centres, where goals are, and in a door the data crossed a few times.
    spread: bool = False
    # links between them: "data" (the dataset's own transitions, each state snapped to
    # its nearest bank state), "path" (trajectory stretches between the bank states a
    # trajectory passes within 0.4 steps of: no snapping across a thin wall where the
    # bank is sparse), "states" (shortest paths through every dataset state of the map,
    # trajectories joined wherever they met: `Context.state_edges`) or "critic" (short
    # critic0 hops, kept where the data confirms them)
    edges: str = "data"
    # Straight links up to `bridge` steps (in the space the links were measured) join the
    # islands that trajectory stretches leave on each map (`Context.graph`); 0: off.
    bridge: float = 0.0
    bridges: int = 1  # links out of each island (to as many states): a way round a cut one
    # No bridge between states critic0 puts over this many steps apart (across a wall
    # though near in the latent); 0: unchecked.
    bridge_critic: float = 0.0
    # edges = "states": pieces of a map's graph that the data joins only by a walk longer
    # than a link's span are linked by that walk (`hplan.agents.context.join_pieces`)
    # before any straight bridge: a straight bridge may cross a wall, the walk did not.
    join: bool = False
    reach: float = 2.0  # graph distance to a chosen subgoal
    progress: float = 0.5  # extra weight on the subgoal's distance to the target
    commit: float = 0.5  # hysteresis: + commit * D(previous subgoal, candidate)
    direct: float = 1.25  # the target is within reach if this near in latent distance
    patience: int = 8  # control steps without a step of progress: a stall; 0: off
    ban_steps: int = 16  # a first stall bans the subgoal's neighbourhood this long
    ban_radius: float = 1.5  # graph distance of that neighbourhood
    same_place: float = 1.0  # a second stall this near the first (latent, steps) cuts
    cut_radius: float = 0.5  # graph distance of the cut around where the agent is stuck
    surprise_radius: float = 2.0  # the same, for a cut on a surprise (a door is 2 steps)
    # pinned bank states (the data pushed into an obstacle there: wall edges and corners)
    # route but are no subgoals: level 0 is least accurate exactly there
    avoid_pinned: bool = True
    # The slowest `lanes` share of bank states by the data's local speed
    # (`Context.lane_speed`) route but are no subgoals: where the data kept running into
    # walls, level 0 cannot follow a straight push either. 0: off. On antmaze-medium-gait
    # stack 0 (hier-2-data-inertia, tuning keys 7 and 11, 34 episodes) 0.3 and 0.5 won
    # 26 of 34 against 25; key 11 alone: 0.75 / 0.71 / 0.67 at 0.3 / 0.5 / 0.7 against
    # 0.79. Subgoals within 0.25 cells of a wall 0.47 -> 0.41 at 0.5: no gain, left off.
    lanes: float = 0.0
    max_cuts: int = 8  # cut centres kept per episode, two per cut (the oldest are dropped)
    # Localise by continuity: the agent's bank state is sought within `track` steps (plus
    # how far its latent moved) of the last one, by graph distance; the latent-nearest
    # state anywhere wins only if nearer by `relocalise` steps. At a corner where two
    # cells touch, states on both sides are equally near in latent space; the graph
    # knows which side the agent came from. 0 (the default): off; on maze32 1.5 did not
    # help (stack 0: 0.85 vs 0.90 success, stack 1: 0.60 vs 0.75, 20 episodes each).
    track: float = 0.0
    relocalise: float = 1.0
    # Where the agent is on the bank: "latent" (its latent-nearest state) or "observation"
    # (nearest in the space the data links were snapped in: the observation, or goal
    # space when the observation holds more; images fall back to the latent). Latent
    # nearness misplaces the agent by a median 0.27 cells on the 31x31 maze, often across
    # a wall, and the subgoals chosen from there lead the wrong way.
    localise: str = "latent"
    # Line of sight: the route to a subgoal may stray at most `sight` base steps from the
    # straight line to it; a state round a corner is no subgoal, nor is the target, since
    # level 0 heads straight for its subgoal, and into the wall corner. 0: off. Measured in
    # the space the links were (`BankGraph.points`).
    sight: float = 0.0
    # Where the reach is measured from: "agent" (the agent's latent, its join to the bank
    # included) or "bank" (the bank state it is localised at). Off the bank (near walls
    # the latent join is 1-2 steps on maze32) the join eats the reach, and the best
    # subgoal left is the join state itself, beside or behind the agent: it dithers.
    reach_from: str = "agent"
    # Sweeps of relaxation over each bank state's 8 nearest states after the landmark
    # field: near a wide cut (a closed door) every landmark link of a state may pass the
    # cut, and without it such a state has no route, so the cuts are dropped. 0: off.
    relax: int = 0
    # Bank states whose own data motion, `heading` steps on, does not lower their route
    # distance to the target route but are no subgoals: a subgoal is a latent with a
    # velocity, and one moving across or against the route makes a body with inertia
    # brake and turn there. 0: off. pointmaze-mjx-maze32, tuning keys 3000-3002: 4 steps
    # 0.60 / 0.60 / 0.30 -> 0.75 / 0.75 / 0.60 (agents/hier-2-data-inertia-long.toml);
    # two-rooms-random from pixels: 16 -> 14 of 20.
    heading: int = 0
    # Tasks whose data spans a family of maps (`Dataset.groups`): the graph never joins
    # two maps, so the agent and the target must be placed on the same one. With `family`
    # the level picks the map nearest to both (the agent's latents so far, averaged, plus
    # the target's) and localises, joins the target and picks subgoals on it alone.
    # Without it, on two-rooms-random (104 maps) the latent-nearest bank state lay on
    # another map for 0.20 of held-out states (0.07 with 16384 bank states;
    # bench/family_localise.py), and the target often joined yet another.
    family: bool = False
    # What the map is chosen by: "latent" (the agent's latents so far and the target's)
    # or "observation" (its first `family_steps` observations and the goal observation,
    # against the bank states' observations). A latent trained to predict the agent's
    # step precisely (`step_pred_weight`) can drop the map, which the pixels keep.
    family_by: str = "latent"
    family_steps: int = 4

    def __post_init__(self):
        for key in ("reach", "direct", "cut_radius", "ban_radius", "same_place",
                    "surprise_radius"):
            if not getattr(self, key) > 0:
                raise ConfigError(key, f"{key}={getattr(self, key)!r}",
                                  "use a positive number")
        for key in ("progress", "commit", "track", "relocalise", "sight", "bridge",
                    "bridge_critic"):
            if not getattr(self, key) >= 0:
                raise ConfigError(key, f"{key}={getattr(self, key)!r}", "use a number >= 0")
        if not (isinstance(self.patience, int) and self.patience >= 0):
            raise ConfigError("patience", f"patience={self.patience!r}",
                              "use an integer >= 0 (0 turns cutting off)")
        if not 0 <= self.lanes < 1:
            raise ConfigError("lanes", f"lanes={self.lanes!r}",
                              "use a share of bank states in [0, 1), e.g. 0.3 (0: off)")
        if not (isinstance(self.relax, int) and self.relax >= 0):
            raise ConfigError("relax", f"relax={self.relax!r}", "use an integer >= 0")
        if not (isinstance(self.heading, int) and self.heading >= 0):
            raise ConfigError("heading", f"heading={self.heading!r}",
                              "use an integer >= 0 (data steps ahead; 0: off)")
        for key in ("max_cuts", "bank", "ban_steps", "family_steps", "bridges"):
            v = getattr(self, key)
            if not (isinstance(v, int) and v >= 1):
                raise ConfigError(key, f"{key}={v!r}", "use a positive integer")
        if self.join and self.edges != "states":
            raise ConfigError("join", f"join = true with edges={self.edges!r}",
                              'join works on the state graph: set edges = "states"')
        if self.family_by != "latent" and not self.family:
            raise ConfigError("family_by", f"family_by={self.family_by!r}",
                              "it chooses among a family's maps: set family = true too")
        for key, choices in (("localise", ("latent", "observation")),
                             ("reach_from", ("agent", "bank")),
                             ("family_by", ("latent", "observation")),
                             ("edges", ("data", "path", "states", "critic"))):
            v = getattr(self, key)
            if v not in choices:
                raise ConfigError(key, f"{key}={v!r}", "use " + " or ".join(map(repr, choices)))


Config = GraphLevelConfig


def bank_draw(cfg: GraphLevelConfig) -> int | str:
    """The `seed` of the level's bank in `Context` (`Context.bank_indices`)."""
    return "spread" if cfg.spread else 0


def make(cfg: GraphLevelConfig, ctx) -> Level:
    """The level an agent file's `[[levels]] kind = "graph"` table describes."""
    draw = bank_draw(cfg)
    snapped = ctx.snapped(cfg.bank, draw) if cfg.localise == "observation" else None
    slow = None
    if cfg.lanes > 0:
        speed = ctx.lane_speed(cfg.bank, draw)
        slow = jnp.asarray(speed < np.quantile(speed, cfg.lanes))
    groups, seen_by = None, None
    if cfg.family:
        groups = ctx.bank_groups(cfg.bank, draw)
        if groups is None:
            raise ConfigError("family", "family=true",
                              "the task's data holds one map: set family = false")
        if cfg.family_by == "observation":
            seen_by = ctx.bank_views(cfg.bank, draw)
    succ = (jnp.asarray(ctx.successors(cfg.bank, cfg.heading, draw)) if cfg.heading > 0
            else None)
    graph = ctx.graph(cfg.bank, cfg.edges, draw, bridge=cfg.bridge, bridges=cfg.bridges,
                      bridge_critic=cfg.bridge_critic, join=cfg.join)
    return graph_level(graph, ctx.scale, cfg, snapped, slow, groups, seen_by, succ)


SIGHTED = 32  # candidates checked for line of sight per step (`GraphLevelConfig.sight`)


class GraphLevelState(NamedTuple):
    cuts: jax.Array  # [C] bank indices of cut centres, -1: none
    radii: jax.Array  # [C] graph distance each cut reaches
    n_cuts: jax.Array  # cuts made so far; the next goes to slot n_cuts % C
    target: jax.Array  # [d] the target `togo` was computed for
    togo: jax.Array  # [M] graph distance to the target avoiding the cuts
    stale: jax.Array  # the cuts changed: recompute `togo`
    idx: jax.Array  # bank index of the current subgoal, -1: the target
    best: jax.Array  # least distance to the target since the last cut
    stuck: jax.Array  # control steps without cutting `best` by a step
    ban_idx: jax.Array  # bank state whose neighbourhood is no subgoal (-1: none)
    ban_left: jax.Array  # control steps the ban still holds
    stall_z: jax.Array  # [d] where the agent was at its last stall
    stalled: jax.Array  # whether there was a stall since the last cut
    node: jax.Array  # bank state the agent was localised on last (-1: none yet)
    node_z: jax.Array  # [d] the latent it was localised from
    shock: jax.Array  # surprised since the last step: cut where the agent is now
    seen: jax.Array  # [K] summed distance of the agent's latents to each map (`family`)
    n_seen: jax.Array  # steps summed in `seen`
    fam: jax.Array  # the map chosen (`family`; 0 without)


def graph_level(graph: G.BankGraph, scale: float,
                cfg: GraphLevelConfig = GraphLevelConfig(),
                snapped: tuple[jax.Array, Callable] | None = None,
                slow: jax.Array | None = None, groups: np.ndarray | None = None,
                seen_by: tuple[jax.Array, Callable] | None = None,
                succ: jax.Array | None = None) -> Level:
    """`scale`: latent displacement of one base step (joins are by latent distance).
    `snapped`: (bank states [M, k] in some other space, `locate(state)` into it): the
    agent is localised there instead of by latent nearness. `slow` [M]: bank states that
    route but are no subgoals (`GraphLevelConfig.lanes`). `groups` [M]: each bank state's
    map (`GraphLevelConfig.family`). `seen_by`: (bank observations [M, k],
    `view(state)` -> [2, k], the agent's and the goal's observation alike): the map is
    chosen by them (`family_by = "observation"`). `succ` [M]: each bank state's data
    successor (`GraphLevelConfig.heading`)."""
    bank, dist = graph.latents, graph.dist
    m = bank.shape[0]
    if groups is None:
        groups = np.zeros(m, np.int32)
    _, group = np.unique(np.asarray(groups), return_inverse=True)
    n_maps = int(group.max()) + 1
    # [K, P] each map's bank indices, padded with -1: the line-of-sight check reads the
    # episode's map only (a route never leaves its map), not all M states.
    members = np.full((n_maps, int(np.bincount(group).max())), -1, np.int32)
    for k in range(n_maps):
        ids = np.nonzero(group == k)[0]
        members[k, : len(ids)] = ids
    members = jnp.asarray(members)
    group = jnp.asarray(group, jnp.int32)

    def per_map(d2):
        """[K] the least of the squared distances `d2` [M] on each map, as a distance."""
        return jnp.sqrt(jnp.maximum(jax.ops.segment_min(d2, group, n_maps), 0.0))

    def map_distance(x):
        """[K] latent distance (base steps) of `x` to each map's nearest bank state."""
        return per_map(jnp.sum((bank - x) ** 2, -1)) / scale

    if seen_by is not None:  # the bank's squared norms once, not at every look
        views, views_sq = seen_by[0], jnp.sum(seen_by[0] ** 2, -1)

    def view_distance(v):
        """[K] observation distance of `v` to each map's nearest bank observation."""
        return per_map(views_sq - 2.0 * views @ v + jnp.sum(v**2))

    def alien(fam):
        """[M] bank states on other maps than `fam` (none, a scalar, for one map)."""
        return group != fam if n_maps > 1 else jnp.bool_(False)

    def retargeted(s: GraphLevelState, target) -> jax.Array:
        return jnp.any(jnp.abs(target - s.target) > 1e-6)

    big = jnp.float32(G.BIG)
    reach_field = float(jnp.max(jnp.min(dist[:, graph.landmarks], axis=1))) * 2.0 + 1.0

    def nearest(x, dead, points=bank):
        """(index, distance / scale) of the live point of `points` nearest `x`."""
        d2 = jnp.where(dead, jnp.inf, jnp.sum((points - x) ** 2, -1))
        j = jnp.argmin(d2)
        return j, jnp.sqrt(jnp.maximum(d2[j], 0.0)) / scale

    if cfg.relax > 0:  # each state's 8 nearest others, by graph distance
        near_w, near_i = jax.lax.top_k(-(dist + jnp.diag(jnp.full(m, big))), 8)
        near_w = -near_w

    def relaxed(t, cuts, radii, dead):
        hop = G.passes(graph, cuts, jnp.broadcast_to(jnp.arange(m)[:, None], near_i.shape),
                       near_i, radii)
        w = jnp.where(dead[near_i] | hop, jnp.inf, near_w)
        t = jax.lax.fori_loop(0, cfg.relax,
                              lambda _, t: jnp.minimum(t, jnp.min(w + t[near_i], 1)), t)
        return jnp.where(dead, big, jnp.minimum(t, big))

    def togo_of(cuts, radii, target, fam):
        dead = G.cut_mask(graph, cuts, radii) | alien(fam)
        # The target joins the graph at its nearest live state: a cut that kills the
        # state it joined by (a join across a wall, where the agent stalled) moves the
        # join instead of being dropped, so the next route goes round to the other side.
        # (`exact` is used only once no cut is left, when every state is alive.)
        jt, ct = nearest(target, dead)
        exact = dist[:, jt] + ct
        routed = G.field(graph, cuts, jt, ct, radii, reach_field)
        if cfg.relax > 0:
            routed = relaxed(routed, cuts, radii, dead)
        has_cuts = jnp.any(cuts >= 0)
        lost = jnp.all(routed >= big)  # the cuts leave no route: drop them
        return jnp.where(has_cuts & ~lost, routed, exact), has_cuts & lost

    def localise(s: GraphLevelState, z, dead, where):
        """(bank index, latent distance in steps) of where the agent is."""
        if where is not None:
            j, _ = nearest(where, dead, snapped[0])
            return j, jnp.sqrt(jnp.sum((bank[j] - z) ** 2)) / scale
        jz, cz = nearest(z, dead)
        if cfg.track <= 0:
            return jz, cz
        moved = jnp.sqrt(jnp.sum((z - s.node_z) ** 2)) / scale
        near = dist[jnp.maximum(s.node, 0)] <= cfg.track + 1.5 * moved
        jt, ct = nearest(z, dead | ~near)
        keep = (s.node >= 0) & (ct <= cz + cfg.relocalise)
        return jnp.where(keep, jt, jz), jnp.where(keep, ct, cz)

    def stray(j, cand, ids):
        """[K] how far (base steps) the route from bank state `j` to each of `cand` [K]
        strays from the straight line between them: the farthest of the states `ids` [P]
        (a row of `members`, -1: padding) on a shortest path between the two (within half
        a step)."""
        live, ids = ids >= 0, jnp.maximum(ids, 0)
        p = graph.points[ids]  # [P, q]
        a, b = graph.points[j], graph.points[cand]  # [q], [K, q]
        on_path = live[None] & (dist[j, ids][None] + dist[cand[:, None], ids[None]]
                                <= dist[j, cand][:, None] + 0.5)  # [K, P]
        ab = b - a
        t = jnp.clip(jnp.einsum("pq,kq->kp", p - a, ab)
                     / jnp.maximum(jnp.sum(ab**2, -1), 1e-9)[:, None], 0.0, 1.0)
        off = jnp.sqrt(jnp.sum((p[None] - a - t[..., None] * ab[:, None]) ** 2, -1))
        return jnp.max(jnp.where(on_path, off, 0.0), axis=1)

    def drop_newest(cuts, n):
        """Cuts without the newest pair (slots n-2, n-1); none left when n reaches 0."""
        c = cfg.max_cuts
        cuts = cuts.at[(n - 1) % c].set(-1).at[(n - 2) % c].set(-1)
        n = jnp.maximum(n - 2, 0)
        return jnp.where(n == 0, -1, cuts), n

    def init(key, z_goal):
        cuts = -jnp.ones((cfg.max_cuts,), jnp.int32)
        radii = jnp.full((cfg.max_cuts,), cfg.cut_radius, jnp.float32)
        fam = jnp.argmin(map_distance(z_goal)).astype(jnp.int32)
        togo, _ = togo_of(cuts, radii, z_goal, fam)
        return GraphLevelState(cuts=cuts, radii=radii, n_cuts=jnp.int32(0), target=z_goal,
                               togo=togo,
                               stale=jnp.bool_(False), idx=jnp.int32(-1),
                               best=jnp.float32(jnp.inf), stuck=jnp.int32(0),
                               ban_idx=jnp.int32(-1), ban_left=jnp.int32(0),
                               stall_z=jnp.zeros_like(z_goal), stalled=jnp.bool_(False),
                               node=jnp.int32(-1), node_z=jnp.zeros_like(z_goal),
                               shock=jnp.bool_(False), seen=jnp.zeros(n_maps),
                               n_seen=jnp.int32(0), fam=fam)

    def refresh(s: GraphLevelState, target):
        def recompute(s):
            # Cuts that leave no route are dropped newest first: on door-closes a false
            # alarm in the corridor round a closed door cut the detour too, and dropping
            # every cut sent the agent back to the door.
            def body(c):
                cuts, n, _, _ = c
                cuts, n = drop_newest(cuts, n)
                return (cuts, n) + togo_of(cuts, s.radii, target, s.fam)

            c = (s.cuts, s.n_cuts) + togo_of(s.cuts, s.radii, target, s.fam)
            cuts, n, togo, _ = jax.lax.while_loop(lambda c: c[3], body, c)
            return s._replace(togo=togo, cuts=cuts, n_cuts=n, target=target,
                              stale=jnp.bool_(False))

        return once(retargeted(s, target) | s.stale, recompute, s)

    def step(s: GraphLevelState, key, z, target, where=None):
        del key
        if not isinstance(where, dict):  # localisation alone (tests, older callers)
            where = {"snap": where}
        if n_maps > 1 and seen_by is not None:
            # The agent's first observations and the goal's, against the bank's; summed
            # once per episode (a new target starts afresh), not at every step.
            new = retargeted(s, target)
            n0 = jnp.where(new, 0, s.n_seen)

            def look(c, views):
                return c[0] + view_distance(views[0]) + view_distance(views[1]), c[1] + 1

            seen, n_seen = once(n0 < cfg.family_steps, look,
                                (jnp.where(new, 0.0, s.seen), n0), where["map"])
            fam = jnp.argmin(seen).astype(jnp.int32)
            s = s._replace(seen=seen, n_seen=n_seen, fam=fam,
                           stale=s.stale | (fam != s.fam))
        elif n_maps > 1:
            # A new target starts the evidence afresh (a new episode, or staged goals).
            new = retargeted(s, target)
            seen = jnp.where(new, 0.0, s.seen) + map_distance(z)
            n_seen = jnp.where(new, 0, s.n_seen) + 1
            fam = jnp.argmin(seen / n_seen + map_distance(target)).astype(jnp.int32)
            s = s._replace(seen=seen, n_seen=n_seen, fam=fam,
                           stale=s.stale | (fam != s.fam))
        s = refresh(s, target)
        dead = G.cut_mask(graph, s.cuts, s.radii) | alien(s.fam)
        jz, cz = localise(s, z, dead, where.get("snap"))
        every = jnp.arange(m)
        blocked = dead | G.passes(graph, s.cuts, jnp.broadcast_to(jz, (m,)), every,
                                  s.radii)
        from_z = jnp.where(blocked, big, cz + dist[jz])
        togo = s.togo
        jt, ct = nearest(target, dead)
        straight = jnp.sqrt(jnp.sum((z - target) ** 2)) / scale
        direct = jnp.where((straight <= cfg.direct) & ~jnp.any(s.cuts >= 0), straight, big)
        d_goal = jnp.minimum(from_z[jt] + ct, direct)
        here = jnp.minimum(jnp.min(from_z + togo), d_goal)
        # When no bank state within `reach` is nearer the target than the agent itself
        # (long links where the bank is sparse), stretch the reach to the nearest that is,
        # and then only such states: otherwise the agent is handed where it stands.
        gains = togo < here - 0.5
        banned = (s.ban_left > 0) & (dist[jnp.maximum(s.ban_idx, 0)] <= cfg.ban_radius)
        gains = gains & ~banned
        span = from_z - cz if cfg.reach_from == "bank" else from_z  # what the reach bounds
        ahead = jnp.min(jnp.where(gains, span, big))
        r = jnp.maximum(cfg.reach, jnp.minimum(ahead, 4.0 * cfg.reach))
        stall = jnp.any(gains & (span <= r)) & ~gains
        score = (from_z + (1.0 + cfg.progress) * togo + 1e3 * jax.nn.relu(span - r)
                 + jnp.where(stall, 1e3, 0.0))
        if cfg.avoid_pinned:
            score = score + jnp.where(graph.pinned, 1e3, 0.0)
        if slow is not None:
            score = score + jnp.where(slow, 1e3, 0.0)
        if succ is not None:
            # (a quarter step: a state standing still, or snapped back onto itself, has none)
            score = score + jnp.where(togo[succ] < togo - 0.25, 0.0, 1e3)
        if cfg.commit > 0:
            # No hysteresis once the previous subgoal is reached (within half a step).
            pi = jnp.maximum(s.idx, 0)
            held = (s.idx >= 0) & (from_z[pi] > 0.5)
            score = score + jnp.where(held, cfg.commit * dist[pi], 0.0)
        i = jnp.argmin(score)
        goal_bent = jnp.bool_(False)
        if cfg.sight > 0:
            # The best state of each of SIGHTED bands of distance within the reach (the
            # best few overall crowd at its rim, all round the same corner), then the
            # best of those in sight; none in sight: as without.
            # (over the episode's map only: every other state scores `big` or more)
            ids = members[s.fam]
            band = jnp.clip((span[ids] / r * SIGHTED).astype(jnp.int32), 0, SIGHTED - 1)
            per = jnp.where((band[None] == jnp.arange(SIGHTED)[:, None]) & (ids >= 0)[None],
                            score[ids][None], jnp.inf)
            cand, best_in = jnp.maximum(ids[jnp.argmin(per, 1)], 0), jnp.min(per, 1)
            dev = stray(jz, jnp.append(cand, jt), ids)
            # (a band's best is no candidate if penalised, +1e3, beside the plain best)
            ok = (dev[:-1] <= cfg.sight) & (best_in < score[i] + 500.0)
            i = jnp.where(jnp.any(ok), cand[jnp.argmin(jnp.where(ok, best_in, jnp.inf))], i)
            goal_bent = dev[-1] > cfg.sight
        # The target itself only within the plain reach, or when it is nearer than the
        # chosen state: handed down from a stretched reach it is a straight line into the
        # wall that the stretch was routing round. (With `sight`, not round a corner
        # either, unless the target is within `direct` in latent distance.)
        at_goal = (((d_goal <= cfg.reach) | (d_goal <= from_z[i]))
                   & (~goal_bent | (direct < big)))
        idx = jnp.where(at_goal, -1, i).astype(jnp.int32)
        sub = jnp.where(at_goal, target, bank[i])
        # Progress towards the target; a stall bans the subgoal, or, the second time at
        # the same place (or with the target itself as subgoal), cuts where the agent is.
        gained = here < s.best - 1.0
        best = jnp.where(gained, here, s.best)
        stuck = jnp.where(gained, 0, s.stuck + 1)
        stall_now = (cfg.patience > 0) & (stuck >= cfg.patience)
        again = s.stalled & (jnp.sqrt(jnp.sum((z - s.stall_z) ** 2)) / scale
                             <= cfg.same_place)
        # Cuts that leave the agent itself no route are dropped, newest first, one pair
        # per step (no new cut that step).
        cut_off = (here >= big) & jnp.any(s.cuts >= 0)
        wants_cut = (stall_now & (again | (s.idx < 0))) | s.shock
        cut = wants_cut & ~cut_off
        ban = stall_now & ~wants_cut
        # Cut where the agent stands and one step ahead on its route (the states whose
        # distance through here equals the best): the wrong link is between the two.
        on_route = jnp.abs(from_z + togo - here) < 0.25
        ahead_node = jnp.argmin(jnp.where(on_route, jnp.abs(from_z - 1.0), jnp.inf))
        slot = s.n_cuts % cfg.max_cuts
        fresh = s.cuts.at[slot].set(jz.astype(jnp.int32))
        fresh = fresh.at[(slot + 1) % cfg.max_cuts].set(ahead_node.astype(jnp.int32))
        cuts = jnp.where(cut, fresh, s.cuts)
        r = jnp.where(s.shock, cfg.surprise_radius, cfg.cut_radius)
        radii = jnp.where(cut, s.radii.at[slot].set(r).at[(slot + 1) % cfg.max_cuts].set(r),
                          s.radii)
        dropped, n_dropped = drop_newest(s.cuts, s.n_cuts)
        cuts = jnp.where(cut_off, dropped, cuts)
        n_cuts = jnp.where(cut_off, n_dropped, s.n_cuts + 2 * cut.astype(jnp.int32))
        s = s._replace(cuts=cuts, radii=radii, n_cuts=n_cuts,
                       stale=cut | cut_off, idx=idx,
                       best=jnp.where(stall_now | cut | cut_off, jnp.inf, best),
                       stuck=jnp.where(stall_now | cut, 0, stuck),
                       ban_idx=jnp.where(ban, s.idx, jnp.where(s.ban_left > 0, s.ban_idx, -1)),
                       ban_left=jnp.where(ban, cfg.ban_steps, jnp.maximum(s.ban_left - 1, 0)),
                       stall_z=jnp.where(stall_now, z, s.stall_z),
                       stalled=(s.stalled | stall_now) & ~cut,
                       node=jz.astype(jnp.int32), node_z=z, shock=jnp.bool_(False))
        return s, sub, {**level_info(), "idx": idx, "cut": cut, "togo": here,
                        "node": jz.astype(jnp.int32)}

    def surprised(s: GraphLevelState) -> GraphLevelState:
        return s._replace(shock=jnp.bool_(True))

    locators = {k: f for k, f in (("snap", snapped and snapped[1]),
                                  ("map", seen_by and seen_by[1])) if f is not None}
    locate = (lambda state: {k: f(state) for k, f in locators.items()}) if locators else None
    return Level(init, step, surprised, locate)
