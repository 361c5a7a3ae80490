"""A `Level` that routes over a graph of imagined states: for maps the data never saw.

A graph of encoded dataset states (`graph_level`) has no node on an unseen map. This
level builds its own at an episode's first step: it rolls the level-0 model out from the
agent's latent and from the target's under `rollouts` random piecewise-constant
full-speed action sequences, keeps `nodes` of the predicted latents, spread out
(farthest-point), and links two nodes within `link` base steps of latent distance. The
target joins the nodes its level critic puts within `join` steps.

The model knows little of an unseen map's walls, so the graph is optimistic: it routes
through them. Where the world disagrees (a stall: no step of progress in `patience`
control steps; or a surprise, `hplan.agents.surprise`) the level cuts a ball of
`cut_radius` (or, with `cut_wide`, an ellipsoid that wide across the heading) round the
point `ahead` steps towards the subgoal: nodes there die, no
subgoal is handed down through it, and the route is recomputed. The agent learns the
walls by touching them, as a robot planning under a free-space assumption does
(D* Lite). Nodes cut off from the target keep its critic plus `far` steps, so with no
route left the level falls back on the critic alone.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from hplan.agents.graph import BIG
from hplan.agents.level import Level, level_info, once
from hplan.core import ConfigError
from hplan.wm.map_step import check_config as check_map_config


@dataclasses.dataclass(frozen=True)
class Config:
    """Distances in base steps (latent distance over the stack's step scale)."""

    rollouts: int = 128  # imagined action sequences, half from the agent, half the target
    horizon: int = 48  # model steps each
    segments: int = 3  # constant-action stretches per sequence
    nodes: int = 384  # imagined latents kept as the graph
    link: float = 1.5  # nodes this near are linked
    join: float = 3.0  # the target joins nodes its critic puts this near
    far: float = 50.0  # extra cost of a node with no route to a join (critic only)
    reach: float = 3.0  # latent distance to a chosen subgoal
    progress: float = 0.5  # extra weight on the subgoal's distance to the target
    # control steps without a step of progress: a stall, and a cut. Tuned on unseen maps
    # of their own (bench/layouts/diverse-tune, diverse-mazes-split stack 0, 20 medium
    # episodes), solved of 20: patience 3 / 4 / 6: 16 / 15 / 13; at patience 6, reach 2:
    # 10, cut_radius 0.6: 7, max_cuts 24: 13; at patience 4, reach 4: 15, cut_radius 1.2:
    # 14, nodes 512: 12
    patience: int = 4
    cut_radius: float = 0.9
    # A cut's half-width across the heading it was made on (<= cut_radius: a ball). A
    # wall runs across the heading that met it: a ball kills the imagined states inside
    # the wall at one place, and the route slips past it a ball's width away; traced on
    # the tuning maps, the agent then crept along a wall about one cell every 15 steps.
    # Tuning maps, 40 medium episodes, split stacks 0 / 1, solved of 40: ball 21 / 10,
    # cut_wide 1.5: - / 10, 2: 26 / 16, 3: 20 / -, 2 with patience 3: 23 / -.
    cut_wide: float = 0.0
    ahead: float = 1.0  # where a cut is centred, towards the subgoal
    max_cuts: int = 96  # cut balls kept per episode (the oldest are dropped)
    # A cut also blocks a cone of headings from where it was made: within `cone_near`
    # steps of that place, no subgoal whose direction from the agent has cosine above
    # `cone` with the blocked heading (0: off). The ball alone does not stop an agent
    # pressed against a wall from aiming across it again: once it stands inside the
    # ball, the ball cannot be ahead of it, and nodes just past the ball survive. In the
    # toy test it halves the cuts; on the tuning maps (20 medium episodes) cone 0.5 / 0.7
    # solved 14 / 13 on stack 0 (15 off) and 6 / 6 on stack 1 (6 off): off.
    cone: float = 0.0
    cone_near: float = 1.0
    critic_level: int = -1  # whose critic scores the target's joins (-1: the top)
    # Imagine with `hplan.wm.map_step` (fitted this many updates when the agent is built)
    # instead of the level-0 model: it reads the walls of the map in the frame where the
    # imagined latent says the agent is, so the graph stays out of walls it can see. 0:
    # the level-0 model. Pixel tasks only.
    map_step: int = 0
    map_sharp: float = 0.0  # the map step's teacher attention sharpened by this (0: off)
    map_locate: str = "attention"  # the map step's teacher: "attention" or "difference"
    map_rollout: int = 1  # the map step is fitted on its own rollouts this long

    def __post_init__(self):
        check_map_config(self.map_sharp, self.map_rollout, self.map_locate)
        if not (isinstance(self.map_step, int) and self.map_step >= 0):
            raise ConfigError("map_step", f"map_step={self.map_step!r}",
                              "use a number of updates >= 0 (0: off), e.g. 3000")
        for key in ("rollouts", "horizon", "segments", "nodes", "max_cuts", "patience"):
            v = getattr(self, key)
            if not (isinstance(v, int) and v >= 1):
                raise ConfigError(key, f"{key}={v!r}", "use a positive integer")
        for key in ("link", "join", "reach", "cut_radius", "ahead"):
            if not getattr(self, key) > 0:
                raise ConfigError(key, f"{key}={getattr(self, key)!r}",
                                  "use a positive number")
        if not self.cut_wide >= 0:
            raise ConfigError("cut_wide", f"cut_wide={self.cut_wide!r}",
                              "use a number of steps >= 0 (<= cut_radius: a ball)")
        if not 0 <= self.cone < 1:
            raise ConfigError("cone", f"cone={self.cone!r}",
                              "use a cosine in [0, 1), e.g. 0.7 (0: off)")
        if not self.cone_near > 0:
            raise ConfigError("cone_near", f"cone_near={self.cone_near!r}",
                              "use a positive number of steps")
        if self.rollouts < 2:
            raise ConfigError("rollouts", f"rollouts={self.rollouts}",
                              "use >= 2 (half start from the agent, half from the target)")
        if self.horizon < self.segments:
            raise ConfigError("horizon", f"horizon={self.horizon} < segments="
                              f"{self.segments}", "use horizon >= segments")
        if self.nodes > self.rollouts * self.horizon:
            raise ConfigError("nodes", f"nodes={self.nodes} > rollouts x horizon = "
                              f"{self.rollouts * self.horizon}",
                              "keep fewer nodes or imagine more")


class ImagineState(NamedTuple):
    nodes: jax.Array  # [M, d] imagined latents
    base: jax.Array  # [M] the target's critic from each node, `far` added beyond `join`
    togo: jax.Array  # [M] distance to the target over live nodes (BIG: dead)
    target: jax.Array  # [d] what the graph was built for
    built: jax.Array
    stale: jax.Array  # the cuts changed: recompute `togo`
    cuts: jax.Array  # [C, d] cut centres
    origins: jax.Array  # [C, d] where the agent stood at each cut
    n_cuts: jax.Array
    best: jax.Array  # least distance to go since the last cut
    stuck: jax.Array
    shock: jax.Array  # surprised since the last step: cut now
    sub: jax.Array  # [d] the last subgoal


def make(cfg: Config, ctx) -> Level:
    stack, scale = ctx.stack, ctx.scale
    levels = stack.wm_cfg.levels
    level = levels - 1 if cfg.critic_level < 0 else cfg.critic_level
    if not 0 <= level < levels:
        raise ConfigError("critic_level", f"critic_level={cfg.critic_level} but the stack "
                          f"has levels 0..{levels - 1}", "name one of them, or -1 (top)")
    stride = stack.wm_cfg.strides[level]
    action_size = ctx.task.env.action_size

    def critic(a, b):
        return stride * stack.critic(level)(a, b)

    seer = None if cfg.map_step == 0 else ctx.frame_step(
        cfg.map_step, kind="map", horizon=cfg.map_rollout, sharp=cfg.map_sharp,
        locate=cfg.map_locate)
    return imagine_level(cfg, stack.model, critic, scale, action_size, seer)


def imagine_level(cfg: Config, model_fn, critic, scale: float, action_size: int,
                  seer=None) -> Level:
    """`model_fn()` -> a model with `rollout(0, z, actions)`; `critic(a, b)` in base steps;
    `seer`: a model with `context(obs)` and `step(ctx, z, a)` (`hplan.wm.map_step`) that
    imagines instead, from the frame the level is shown (its `locate`). With a seer the
    graph's route is trusted over the critic's straight reading: the critic knows no
    unseen map's walls, the seer's graph does, so the target is handed down directly only
    within `reach` (or with no route)."""
    m, c = cfg.nodes, cfg.max_cuts
    half = cfg.rollouts // 2
    seg = -(-cfg.horizon // cfg.segments)
    n_model = cfg.rollouts * cfg.horizon

    def steps(a, b):
        return jnp.sqrt(jnp.maximum(jnp.sum((a - b) ** 2, -1), 0.0)) / scale

    wide = max(cfg.cut_wide, cfg.cut_radius)
    # Each cut is an ellipsoid: `cut_radius` along its heading, `wide` across it;
    # q(x) = x'Mx <= 1 with M = I / wide^2 + g u u' (g = 0: a ball). A cut made with no
    # heading (u = 0) is a ball of `cut_radius`.
    g = 1.0 / cfg.cut_radius**2 - 1.0 / wide**2

    def headings(s: ImagineState):
        h = s.cuts - s.origins
        n = jnp.linalg.norm(h, axis=-1, keepdims=True)
        u = jnp.where(n > 1e-6 * scale, h / jnp.maximum(n, 1e-12), 0.0)
        return u, 1.0 - jnp.sum(u**2, -1)  # [C, d], [C]: 1 where there is no heading

    def quad(xy, xu, yu, off):
        """x'My from x.y, x.u, y.u and off = 1 - |u|^2 (all in base steps)."""
        return xy / wide**2 + g * (xu * yu + off * xy)

    def in_cut(s: ImagineState, p):
        """Points `p` [..., d] inside a live cut."""
        live = jnp.arange(c) < s.n_cuts
        u, off = headings(s)
        x = (p[..., None, :] - s.cuts) / scale  # [..., C, d]
        xu = jnp.sum(x * u, -1)
        q = quad(jnp.sum(x * x, -1), xu, xu, off)
        return jnp.any(live & (q <= 1.0), axis=-1)

    def rollout(z0, acts, frame_ctx):
        if seer is None:
            return model_fn().rollout(0, z0, acts)

        def f(zz, a):
            zz = seer.step(frame_ctx, zz, a)
            return zz, zz

        return jax.lax.scan(f, z0, acts)[1]

    def imagine(key, z, zg, frame=None):
        """[M, d] spread-out latents the model predicts from `z` and `zg`."""
        k_dir, _ = jax.random.split(key)
        if action_size == 2:
            ang = jax.random.uniform(k_dir, (2 * half, cfg.segments), maxval=2 * jnp.pi)
            acts = jnp.stack([jnp.cos(ang), jnp.sin(ang)], -1)
        else:
            acts = jax.random.uniform(k_dir, (2 * half, cfg.segments, action_size),
                                      minval=-1.0, maxval=1.0)
        acts = jnp.repeat(acts, seg, axis=1)[:, : cfg.horizon]
        starts = jnp.concatenate([jnp.broadcast_to(z, (half,) + z.shape),
                                  jnp.broadcast_to(zg, (half,) + z.shape)])
        c = None if frame is None else seer.context(frame)
        zs = jax.vmap(lambda z0, a: rollout(z0, a, c))(starts, acts)
        pts = jnp.concatenate([z[None], zg[None], zs.reshape(-1, z.shape[-1])])

        def pick(i, carry):
            idx, near = carry
            j = jnp.argmax(near)
            return idx.at[i].set(j), jnp.minimum(near, jnp.sum((pts - pts[j]) ** 2, -1))

        idx0 = jnp.zeros(m, jnp.int32)
        idx, _ = jax.lax.fori_loop(1, m, pick, (idx0, jnp.sum((pts - z) ** 2, -1)))
        return pts[idx]

    def build(s: ImagineState, key, z, target, frame=None) -> ImagineState:
        nodes = imagine(key, z, target, frame)
        v = critic(nodes, jnp.broadcast_to(target, nodes.shape))
        base = jnp.where(v <= cfg.join, v, v + cfg.far)
        return s._replace(nodes=nodes, base=base, target=target, built=jnp.bool_(True),
                          stale=jnp.bool_(True), n_cuts=jnp.int32(0),
                          best=jnp.float32(jnp.inf), stuck=jnp.int32(0))

    def recompute(s: ImagineState) -> ImagineState:
        dead = in_cut(s, s.nodes)
        w = steps(s.nodes[:, None], s.nodes[None])
        w = jnp.where((w <= cfg.link) & ~dead[None] & ~dead[:, None], w, jnp.inf)
        t0 = jnp.where(dead, jnp.inf, s.base)

        def body(carry):
            t, _, i = carry
            new = jnp.minimum(t, jnp.min(w + t[None], axis=1))
            return new, jnp.any(new < t - 1e-4), i + 1

        t, _, _ = jax.lax.while_loop(lambda q: q[1] & (q[2] < m), body,
                                     (t0, jnp.bool_(True), jnp.int32(0)))
        return s._replace(togo=jnp.minimum(t, BIG), stale=jnp.bool_(False))

    def init(key, z_goal):
        d = z_goal.shape[-1]
        return ImagineState(nodes=jnp.zeros((m, d)), base=jnp.zeros(m),
                            togo=jnp.full(m, BIG), target=z_goal, built=jnp.bool_(False),
                            stale=jnp.bool_(False), cuts=jnp.zeros((c, d)),
                            origins=jnp.zeros((c, d)),
                            n_cuts=jnp.int32(0), best=jnp.float32(jnp.inf),
                            stuck=jnp.int32(0), shock=jnp.bool_(False), sub=z_goal)

    def clear(s: ImagineState, z, x):
        """Whether the straight line from `z` to each of `x` [K, d] misses every cut ball
        (but one the agent stands in: it cannot be ahead of it) and, with `cone`, heads
        into no cut cone the agent stands at."""
        made = jnp.arange(c) < s.n_cuts
        u, off = headings(s)
        zc = (z - s.cuts) / scale  # [C, d]
        zcu = jnp.sum(zc * u, -1)
        c0 = quad(jnp.sum(zc * zc, -1), zcu, zcu, off)
        live = made & (c0 > 1.0)  # [C]
        zx = x - z  # [K, d]
        v = zx / scale
        vu = jnp.einsum("kd,cd->kc", v, u)
        aa = quad(jnp.sum(v * v, -1)[:, None], vu, vu, off)
        bb = quad(jnp.einsum("kd,cd->kc", v, zc), vu, zcu, off)
        t = jnp.clip(-bb / jnp.maximum(aa, 1e-12), 0.0, 1.0)  # [K, C]
        near = aa * t**2 + 2 * bb * t + c0  # q at the segment's closest point
        hit = jnp.any(live & (near <= 1.0), axis=-1)
        if cfg.cone > 0:
            here = made & (steps(z, s.origins) <= cfg.cone_near)  # [C]
            cos = vu / jnp.maximum(jnp.linalg.norm(v, axis=-1), 1e-12)[:, None]
            hit = hit | jnp.any(here & (cos > cfg.cone), axis=-1)
        return ~hit

    def step(s: ImagineState, key, z, target, *where):
        fresh = ~s.built | jnp.any(jnp.abs(target - s.target) > 1e-6)
        s = once(fresh, lambda s, z, *f: build(s, key, z, target, *f), s, z, *where)
        s = once(s.stale, recompute, s)
        dz = steps(z, s.nodes)
        ok = (dz <= cfg.reach) & (s.togo < BIG) & clear(s, z, s.nodes)
        score = jnp.where(ok, dz + (1.0 + cfg.progress) * s.togo, jnp.inf)
        i = jnp.argmin(score)
        d_goal = critic(z, target)
        goal_ok = clear(s, z, target[None])[0]
        here = jnp.minimum(jnp.min(jnp.where(ok, dz + s.togo, jnp.inf)),
                           jnp.where(goal_ok, d_goal, jnp.inf))
        shorter = (d_goal <= dz[i] + s.togo[i]) if seer is None else jnp.bool_(False)
        at_goal = goal_ok & ((d_goal <= cfg.reach) | ~jnp.any(ok) | shorter)
        sub = jnp.where(at_goal, target, s.nodes[i])
        gained = (here < s.best - 1.0) | (here <= 1.0)  # at the target: no stall
        best = jnp.where(gained, here, s.best)
        stuck = jnp.where(gained, 0, s.stuck + 1)
        cut = (stuck >= cfg.patience) | s.shock
        # Cut a ball `ahead` steps towards where the agent was heading (the last
        # subgoal: the one it failed to reach).
        toward = s.sub - z
        dist = steps(s.sub, z)
        centre = z + toward * jnp.minimum(1.0, cfg.ahead / jnp.maximum(dist, 1e-6))
        cuts = jnp.where(cut, jnp.roll(s.cuts, 1, axis=0).at[0].set(centre), s.cuts)
        origins = jnp.where(cut, jnp.roll(s.origins, 1, axis=0).at[0].set(z), s.origins)
        s = s._replace(cuts=cuts, origins=origins, n_cuts=jnp.minimum(s.n_cuts + cut, c),
                       stale=cut, best=jnp.where(cut, jnp.inf, best),
                       stuck=jnp.where(cut, 0, stuck), shock=jnp.bool_(False), sub=sub)
        info = level_info(jnp.where(at_goal, -1, -2), jnp.where(fresh, n_model, 0),
                          jnp.where(fresh, m + 1, 1))
        return s, sub, {**info, "cut": cut, "togo": here}

    def surprised(s: ImagineState) -> ImagineState:
        return s._replace(shock=jnp.bool_(True))

    return Level(init, step, surprised, None if seer is None else (lambda st: st.obs))
