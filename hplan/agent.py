"""Agents over a learned world-model stack, as pure `hplan.mpc.Policy(init, step)` pairs.

Every agent encodes the observation and the goal observation (`state.info['goal_obs']`)
and plans in latent space, so `hplan.mpc.make_evaluate(task, policy)` (or `evaluate`
here, which also reports compute) runs whole episodes under one jit.

- `flat_learned`: MPC over the level-0 predictor towards the goal latent; optional
  level-0 critic as terminal cost. The same machinery with one level, so comparisons with
  the hierarchical agent are like for like.
- `hierarchical`: a subgoal selector on top hands a latent subgoal to the same level-0
  MPC. `top="critic"` picks, from a bank of encoded dataset states, the subgoal that
  minimises `D(z, s) + (1 + progress) D(s, g)` subject to `D(z, s) <= reach`, where `D`
  is the shortest path over a graph of short critic0 hops between bank states (search on
  the replay buffer, `bank_graph`; or, with `edges = "data"`, over the transitions the
  dataset itself made between bank states, `data_graph`; `graph=False`: the critics
  directly, `V_top` for the score and `V_0(z, s) <= reach`);
  `top="macro"` plans the top level's macro-actions with CEM and takes the first
  predicted latent (HWM style). The subgoal is re-selected every `replan` steps, or once
  reached (within `reached` latent steps; `reached = 0` turns this trigger off, see
  `hierarchical`), or, over the bank graph, once judged unreachable: no step of progress
  towards the target in `patience` steps bans the subgoal's graph neighbourhood.

Compute is counted in the agent state per control step: `n_evals` (planner cost
evaluations; a value-and-grad counts one), `n_model` (predictor calls at any level, a
gradient counted as one forward), `n_critic` (critic calls); the two encoder calls per
step (observation and goal) are not counted. Latent distances are
divided by `step_scale`, the mean latent displacement of one full-speed base step, so
every cost term is in base steps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from hplan import costs, mpc
from hplan import planners as P
from hplan.agents import AgentConfig
from hplan.data import Dataset, observe
from hplan.env import State
from hplan.graph import BankGraph
from hplan.graph import build as build_graph
from hplan.graph_level import GraphLevelConfig, graph_level
from hplan.levels import Actuator, ChainState, Level, chain, hold
from hplan.mpc import Policy
from hplan.stack import Stack
from hplan.tasks import KeepOut, Task


class AgentState(NamedTuple):
    plan: jax.Array  # [H, A] level-0 warm start
    top_plan: jax.Array  # [K, M] level-1 macro plan (macro top), else [1, 1] unused
    key: jax.Array
    subgoal: jax.Array  # [d] current latent (sub)goal
    subgoal_idx: jax.Array  # bank index of the subgoal; -1: the goal; -2: a predicted latent
    since: jax.Array  # control steps since the subgoal was selected
    far: jax.Array  # [d] three layers: the far (critic) subgoal the middle layer aims at
    far_idx: jax.Array  # its bank index (-1: the goal)
    far_since: jax.Array  # control steps since the far subgoal was selected
    best: jax.Array  # graph selectors: least graph distance to the target since the last reset
    stuck: jax.Array  # control steps without cutting `best` by a step
    ban_idx: jax.Array  # bank state whose graph neighbourhood may not be a subgoal (-1: none)
    ban_left: jax.Array  # control steps the ban still holds
    t: jax.Array  # control steps taken
    cost: jax.Array  # low-level planned cost at the last control step
    n_evals: jax.Array  # planner cost evaluations at the last control step
    n_model: jax.Array  # predictor calls at the last control step
    n_critic: jax.Array  # critic calls at the last control step


# -- building blocks ---------------------------------------------------------------------
def make_planner(cfg: AgentConfig) -> P.Planner:
    """The level-0 planner an agent definition names."""
    grad = P.gradient(optax.adam(cfg.lr), restarts=cfg.restarts, init_noise=cfg.init_noise)
    if cfg.planner == "gradient":
        return grad
    if cfg.planner == "cem":
        return P.cem(cfg.samples, cfg.elites)
    if cfg.planner == "mppi":
        return P.mppi(cfg.samples, cfg.temperature)
    return P.hybrid(P.cem(cfg.samples, cfg.elites), grad, cfg.sample_iters)


def step_scale(task: Task, stack: Stack, n_dirs: int = 8) -> float:
    """Mean latent displacement of one full-speed level-0 step from free-cell centres."""
    model = stack.model()
    cells = task.layout.free_cells + 0.5
    z = jax.jit(model.encode)(jnp.asarray(observe(task, cells)))
    ang = jnp.linspace(0, 2 * jnp.pi, n_dirs, endpoint=False)
    acts = jnp.stack([jnp.cos(ang), jnp.sin(ang)], -1)
    acts = acts / jnp.max(jnp.abs(acts), -1, keepdims=True)  # corners of the action box
    dz = jax.jit(jax.vmap(jax.vmap(lambda z_, a: model.step(0, z_, a) - z_, (None, 0)),
                          (0, None)))(z, acts)
    return float(jnp.mean(jnp.linalg.norm(dz, axis=-1))) + 1e-6


def _bank_index(data: Dataset, size: int, seed: int) -> np.ndarray:
    """Which dataset states (flat indices) make the bank: first every state the data
    holds more than once exactly (an agent pinned against an obstacle, most often where
    two walls meet), then a uniform draw of the rest.

    Pinned states matter for the links: where two free cells touch only at a corner, the
    states pinned on either side are a hair apart, and a dataset state snaps across the
    corner to the other side's pinned state unless its own side's is a bank state too."""
    x = data.obs if data.obs.size else data.pos
    flat = x.reshape(x.shape[0] * x.shape[1], -1)
    n = len(flat)
    size = min(size, n)
    _, first, counts = np.unique(flat, axis=0, return_index=True, return_counts=True)
    rng = np.random.default_rng(seed)
    pinned = first[counts > 1]
    pinned = pinned[np.argsort(-counts[counts > 1], kind="stable")][:size]
    rest = np.setdiff1d(np.arange(n), pinned)
    return np.concatenate([pinned, rng.choice(rest, size - len(pinned), replace=False)])


def make_bank(task: Task, stack: Stack, data: Dataset, size: int = 2048, seed: int = 0
              ) -> tuple[jax.Array, np.ndarray]:
    """`size` dataset states, encoded: (latents [size, d], positions [size, 2])."""
    pos = data.pos.reshape(-1, 2)
    obs = data.obs.reshape(-1, *data.obs.shape[2:]) if data.obs.size else None
    idx = _bank_index(data, size, seed)
    o = obs[idx] if obs is not None else observe(task, pos[idx])
    z = jax.jit(stack.model().encode)(jnp.asarray(o))
    return z, pos[idx]


def _pos_fn(stack: Stack) -> Callable[[jax.Array], jax.Array]:
    w, b = (jnp.asarray(x, jnp.float32) for x in stack.probe)
    return lambda z: z @ w + b


def latent_cost(task: Task, stack: Stack, cfg: AgentConfig, scale: float
                ) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
    """`cost(z0, goal_z, actions [H, A])`: latent distance to the goal (in steps) along the
    level-0 rollout, terminal critic, keep-out penalty on probed positions; speed limits
    are enforced by projecting the actions (`mpc.action_filter`)."""
    filt = mpc.action_filter(task)
    keep_outs = [g for g in task.guardrails if isinstance(g, KeepOut)]
    guard = (costs.penalty(costs.guardrails(keep_outs, _pos_fn(stack)), cfg.guard_weight,
                           cfg.guard_margin) if keep_outs else None)

    def cost(z0, goal, actions):
        model = nnx.merge(stack.wm_graph, stack.wm_params)
        actions = filt(actions)
        zs = model.rollout(0, z0, actions)
        d = costs.safe_norm(zs - goal) / scale
        c = cfg.running * jnp.sum(d) + cfg.terminal * d[-1]
        if cfg.use_critic and cfg.critic_on == "path":
            c = c + cfg.critic_weight * jnp.mean(
                stack.critic(0)(zs, jnp.broadcast_to(goal, zs.shape)))
        elif cfg.use_critic:
            c = c + cfg.critic_weight * stack.critic(0)(zs[-1], goal)
        if guard is not None:
            c = c + guard(jnp.concatenate([z0[None], zs]), actions)
        return c

    return cost


def critic_calls(cfg: AgentConfig) -> int:
    """Critic calls per level-0 cost evaluation."""
    return 0 if not cfg.use_critic else cfg.horizon if cfg.critic_on == "path" else 1


def _low_level(task: Task, stack: Stack, cfg: AgentConfig, planner: P.Planner, scale: float):
    """One level-0 MPC step: (plan, key, z, goal) -> (action, shifted plan, cost, n_evals)."""
    cost = latent_cost(task, stack, cfg, scale)
    filt = mpc.action_filter(task)

    def act(plan, key, z, goal):
        plan, info = P.solve(planner, lambda a: cost(z, goal, a), plan, key, cfg.iters)
        return filt(plan[0]), P.shift(plan), info["cost"], info["n_evals"]

    return act


def _encode(stack: Stack, state: State) -> tuple[jax.Array, jax.Array]:
    model = nnx.merge(stack.wm_graph, stack.wm_params)
    return model.encode(state.obs), model.encode(state.info["goal_obs"])


def _initial(task: Task, stack: Stack, cfg: AgentConfig, key: jax.Array, state: State,
             top_shape=(1, 1)) -> AgentState:
    _, zg = _encode(stack, state)
    zero = jnp.int32(0)
    return AgentState(plan=jnp.zeros((cfg.horizon, task.env.action_size), jnp.float32),
                      top_plan=jnp.zeros(top_shape, jnp.float32), key=key, subgoal=zg,
                      subgoal_idx=jnp.int32(-1), since=zero, far=zg, far_idx=jnp.int32(-1),
                      far_since=zero, best=jnp.float32(jnp.inf), stuck=zero,
                      ban_idx=jnp.int32(-1), ban_left=zero, t=zero,
                      cost=jnp.float32(jnp.inf), n_evals=zero, n_model=zero, n_critic=zero)


HIER_DEFAULT = AgentConfig(name="hier-2", kind="hier", horizon=8, running=0.1, terminal=0.0,
                           use_critic=True, critic_on="path", reached=0.0, bank=4096,
                           reach=2.0, replan=1, commit=0.5, patience=8)


# -- agents ------------------------------------------------------------------------------
def flat_learned(task: Task, stack: Stack, planner: P.Planner | None = None,
                 horizon: int | None = None, iters: int | None = None,
                 use_critic: bool | None = None, config: AgentConfig = AgentConfig(),
                 scale: float | None = None) -> Policy:
    """Flat MPC over the learned level-0 model towards the encoded goal observation.

    Arguments left as None come from `config`; `planner` defaults to `make_planner(config)`.
    """
    over = {"horizon": horizon, "iters": iters, "use_critic": use_critic}
    cfg = dataclasses.replace(config, kind="flat",
                              **{k: v for k, v in over.items() if v is not None})
    planner = planner or make_planner(cfg)
    scale = scale or step_scale(task, stack)
    act = _low_level(task, stack, cfg, planner, scale)

    def init(key: jax.Array, state: State) -> AgentState:
        return _initial(task, stack, cfg, key, state)

    def step(agent: AgentState, state: State) -> tuple[AgentState, jax.Array]:
        key, k = jax.random.split(agent.key)
        z, zg = _encode(stack, state)
        action, plan, cost, n = act(agent.plan, k, z, zg)
        agent = agent._replace(plan=plan, key=key, subgoal=zg, t=agent.t + 1,
                               since=agent.since + 1, cost=cost, n_evals=n,
                               n_model=n * cfg.horizon,
                               n_critic=n * critic_calls(cfg))
        return agent, action

    return Policy(init=init, step=step)


def critic_selector(stack: Stack, bank: jax.Array, reach: float, progress: float,
                    candidates: int = 0):
    """`select(z, zg) -> (subgoal, index, n_critic, togo)` over `bank` plus the goal.

    Score `V_top(z, s) + (1 + progress) V_top(s, g)`, a hinge keeping `V_0(z, s) <= reach`
    (the closest-to-reach candidate wins if none is within reach). Index -1 is the goal.
    `candidates > 0` scores only that many bank states nearest to `z` in latent space
    (reach is short, so the feasible set is local), which divides the critic calls by
    `len(bank) / candidates`.
    """
    bank = jnp.asarray(bank, jnp.float32)
    m = bank.shape[0]
    k = min(candidates, m) if candidates > 0 else m

    def select(z, zg, prev=None, ban=None):  # noqa: ARG001 (the graph selector's signature)
        c0, ct = stack.critic(0), stack.critic(1)
        if k < m:
            _, near = jax.lax.top_k(-jnp.sum((bank - z) ** 2, -1), k)
        else:
            near = jnp.arange(m)
        cand = jnp.concatenate([bank[near], zg[None]])
        zz = jnp.broadcast_to(z, cand.shape)
        gg = jnp.broadcast_to(zg, cand.shape)
        from_z = ct(zz, cand)  # its last entry, to the goal itself, is `togo`
        score = from_z + (1.0 + progress) * ct(cand, gg)
        score = score + 1e3 * jax.nn.relu(c0(zz, cand) - reach)
        i = jnp.argmin(score)
        idx = jnp.where(i == k, -1, near[jnp.minimum(i, k - 1)]).astype(jnp.int32)
        return cand[i], idx, jnp.int32(3 * (k + 1)), from_z[-1]

    return select


# Graph selector: hops of at most GRAPH_EDGE base steps by critic0 (on the large maze no hop
# of a 4096-state bank then crosses a wall, and the bank is one component); the state and
# the goal join the graph through their GRAPH_ENDS latent-nearest bank states.
GRAPH_EDGE = 1.25
GRAPH_ENDS = 32


def critic_edges(stack: Stack, bank: jax.Array, edge: float = GRAPH_EDGE,
                 neighbours: int = 64, max_edge: float = 4.0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Links (src, dst, base steps) between bank states: search on the replay buffer.

    A hop joins each bank state to those of its `neighbours` latent-nearest that the
    level-0 critic (the larger of both ways) puts at most `edge` steps away, at that cost.
    Long-range costs then come from the search, not from the critic: the critic is
    accurate for short hops but under-estimates pairs on the two sides of a thin wall
    (Euclidean-like, 2 steps for states 14 steps apart by the corridors), which made the
    plain selector pick subgoals behind walls that the level-0 MPC then pushed against.
    A bank too sparse to be one component at `edge` gets wider hops (up to `max_edge`)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    bank = jnp.asarray(bank, jnp.float32)
    m = bank.shape[0]
    k = min(neighbours, m - 1)
    sq = jnp.sum(bank ** 2, -1)

    @jax.jit
    def hops(bank):
        d2 = sq[:, None] + sq[None] - 2 * bank @ bank.T
        _, nb = jax.lax.top_k(-d2, k + 1)
        src = jnp.repeat(jnp.arange(m), k)
        dst = nb[:, 1:].reshape(-1)
        c0 = stack.critic(0)
        a, b = bank[src], bank[dst]
        return src, dst, jnp.maximum(c0(a, b), c0(b, a))

    src, dst, w = (np.asarray(x) for x in hops(bank))
    while True:  # widen the hops until the bank is one component (a sparse bank)
        keep = (w <= edge) & (src != dst)
        g = csr_matrix((w[keep] + 1e-3, (src[keep], dst[keep])), shape=(m, m))
        if connected_components(g, directed=False)[0] == 1 or edge >= max_edge:
            break
        edge += 0.25
    return src[keep], dst[keep], w[keep] + 1e-3


def bank_graph(stack: Stack, bank: jax.Array, edge: float = GRAPH_EDGE,
               neighbours: int = 64, max_edge: float = 4.0) -> np.ndarray:
    """All-pairs shortest paths (base steps) over `critic_edges`; unjoined pairs `1e4`."""
    from hplan.graph import shortest_paths

    return shortest_paths(len(bank), *critic_edges(stack, bank, edge, neighbours, max_edge))


def data_edges(task: Task, stack: Stack, data: Dataset, size: int = 2048, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Links (src, dst, base steps) from the dataset's own transitions instead of critic0
    hops: every dataset state snaps to its nearest bank state (in observation space when
    that is a small vector, as for the critic's targets), and each observed transition
    between two bank states links them (both ways: the level-0 MPC can drive any observed
    link back). The data never crossed a wall, so neither does a link, but for snapping
    errors where two sides nearly touch (a corner). Same bank as `make_bank`."""
    from hplan.critic import transition_links

    x = data.obs if data.obs.size else observe(task, data.pos)
    if x.ndim != 3:  # pixels: snap in latent space, a few episodes at a time
        enc = jax.jit(stack.model().encode)
        x = np.concatenate([np.asarray(enc(jnp.asarray(x[i: i + 64])))
                            for i in range(0, len(x), 64)])
    _, g = transition_links(x, _bank_index(data, size, seed))
    g = g.tocoo()
    return g.row, g.col, g.data.astype(np.float32)


def data_graph(task: Task, stack: Stack, data: Dataset, size: int = 2048, seed: int = 0
               ) -> np.ndarray:
    """`bank_graph` over `data_edges`: on the 31x31 maze critic0 hops of even half a step
    crossed thin walls; links from data transitions do not."""
    from hplan.graph import shortest_paths

    return shortest_paths(size if size <= data.pos.shape[0] * data.pos.shape[1]
                          else data.pos.shape[0] * data.pos.shape[1],
                          *data_edges(task, stack, data, size, seed))


def graph_selector(stack: Stack, bank: jax.Array, dist: np.ndarray,
                   reach: float, progress: float, ends: int = GRAPH_ENDS,
                   edge: float = GRAPH_EDGE, commit: float = 0.0,
                   snap_scale: float | None = None, ban_radius: float = 1.5):
    """`select(z, zg, prev, ban) -> (subgoal, index, n_critic, togo)` from the bank graph
    (`bank_graph`); `togo` is the graph distance from `z` to the goal.

    The current state and the goal join the graph through their `ends` latent-nearest
    bank states (hop cost: critic0, as in the graph; the critic-nearest always joins).
    Among all bank states `s`, pick the one minimising `D(z, s) + (1 + progress) D(s, g)`
    subject to `D(z, s) <= reach` (stretched to the nearest state closer to the goal when
    none within reach is, and then only such states); the goal itself when it is within
    reach (through the graph, or one hop by critic0). Index -1 is the goal. Critic calls:
    `2 * ends + 1`.
    `commit > 0` adds `commit * D(prev, s)` when the previous subgoal `prev` is a bank
    state: hysteresis, so near-ties between routes (a ring) do not flip every selection.
    `snap_scale` (the latent step scale): join through the latent-nearest bank state
    instead (cost: latent distance in steps), with no critic calls, for graphs that do not
    trust critic0 locally (`data_graph`): on the 31x31 maze critic0 puts a state ~1 step
    from itself, so joins by it left no bank state but the nearest within reach and the
    agent stalled there.
    `ban >= 0` (a bank index): bank states within `ban_radius` graph steps of it are no
    subgoals while another state that makes progress is eligible (a subgoal the agent got
    stuck short of: see `hierarchical`'s `patience`).
    """
    bank = jnp.asarray(bank, jnp.float32)
    dist = jnp.asarray(dist, jnp.float32)
    m = bank.shape[0]
    # Snapping joins the latent-nearest bank state only: within 1.25 steps, a third of
    # the 32 latent-nearest crossed a wall on the 31x31 maze, the nearest under 1%.
    e = 1 if snap_scale is not None else min(ends, m)
    big = jnp.float32(1e4)

    def join(x, which):
        d2 = jnp.sum((bank - x) ** 2, -1)
        neg, near = jax.lax.top_k(-d2, e)
        if snap_scale is not None:
            c = jnp.sqrt(jnp.maximum(-neg, 0.0)) / snap_scale
        else:
            xx = jnp.broadcast_to(x, (e, x.shape[0]))
            c = (stack.critic(0)(xx, bank[near]) if which == 0
                 else stack.critic(0)(bank[near], xx))
        c = jnp.where((c <= edge) | (c <= jnp.min(c)), c, big)
        return near, c

    def select(z, zg, prev=None, ban=None):
        n_in, c_in = join(z, 0)
        n_out, c_out = join(zg, 1)
        from_z = jnp.min(c_in[:, None] + dist[n_in], 0)  # [M]
        to_g = jnp.min(dist[:, n_out] + c_out[None], 1)  # [M]
        direct = (costs.safe_norm(z - zg) / snap_scale if snap_scale is not None
                  else stack.critic(0)(z, zg))
        d_goal = jnp.minimum(jnp.min(from_z[n_out] + c_out),
                             jnp.where(direct <= edge, direct, big))
        # When no bank state within `reach` is nearer the goal than the agent itself (long
        # graph links where the bank is sparse), stretch the reach to the nearest that is:
        # otherwise the agent would be handed the state it already stands on, forever.
        # Candidates must also make progress when one can: a long graph link (past a wall
        # corner) can make staying put score best.
        here = jnp.min(from_z + to_g)
        gains = to_g < here - 0.5
        if ban is not None:
            gains = gains & ~((ban >= 0) & (dist[jnp.maximum(ban, 0)] <= ban_radius))
        ahead = jnp.min(jnp.where(gains, from_z, big))
        r = jnp.maximum(reach, jnp.minimum(ahead, 4.0 * reach))
        stall = jnp.any(gains & (from_z <= r)) & ~gains
        score = (from_z + (1.0 + progress) * to_g + 1e3 * jax.nn.relu(from_z - r)
                 + jnp.where(stall, 1e3, 0.0))
        if commit > 0 and prev is not None:
            # No hysteresis once the previous subgoal is reached (within half a step):
            # it would keep handing the agent the state it stands on.
            pi = jnp.maximum(prev, 0)
            held = (prev >= 0) & (from_z[pi] > 0.5)
            score = score + jnp.where(held, commit * dist[pi], 0.0)
        i = jnp.argmin(score)
        goal = d_goal <= r
        sub = jnp.where(goal, zg, bank[i])
        idx = jnp.where(goal, -1, i).astype(jnp.int32)
        return sub, idx, jnp.int32(0 if snap_scale is not None else 2 * e + 1), \
            jnp.minimum(here, d_goal)

    return select


def macro_selector(stack: Stack, cfg: AgentConfig, scale: float, level: int | None = None):
    """`select(top_plan, key, z, target) -> (subgoal, top_plan, n_evals)`: CEM over the
    macro-actions of `level` (default: the top one). Cost, in base steps: latent distance
    to `target` along the level's rollout + the top critic at its end. The subgoal is the
    first predicted latent, `strides[level]` base steps ahead."""
    level = stack.wm_cfg.levels - 1 if level is None else level
    top_stride = stack.wm_cfg.strides[-1]
    planner = P.cem(cfg.top_samples, cfg.top_elites)

    def cost(z, target, macros):
        model = nnx.merge(stack.wm_graph, stack.wm_params)
        zs = model.rollout(level, z, macros)
        d = costs.safe_norm(zs - target) / scale
        return (cfg.running * jnp.sum(d) + cfg.terminal * d[-1]
                + cfg.critic_weight * top_stride * stack.critic(1)(zs[-1], target))

    def select(top_plan, key, z, target):
        plan, info = P.solve(planner, lambda u: cost(z, target, u), top_plan, key,
                             cfg.top_iters)
        model = nnx.merge(stack.wm_graph, stack.wm_params)
        return model.step(level, z, plan[0]), P.shift(plan), info["n_evals"]

    return select


def hierarchical(task: Task, stack: Stack, bank: jax.Array | None = None,
                 planner: P.Planner | None = None, config: AgentConfig | None = None,
                 top: str | None = None, scale: float | None = None,
                 graph: bool = True, dist: np.ndarray | None = None) -> Policy:
    """Subgoal selection on top, level-0 MPC (with critic0 cost, `critic_on`) below.

    `top="critic"` needs `bank` (latents [M, d], e.g. from `make_bank`); `top="macro"`
    needs a stack with at least two levels; `top="critic+critic"` (three layers): a far
    graph subgoal (`far_reach`, every `far_replan` steps) and a near one (`reach`) on the
    way to it, both from the same bank graph; `top="critic+macro"` (three layers) needs both:
    the critic selector picks a far subgoal (`far_reach`, every `far_replan` steps), CEM
    over level-1 macro-actions aims at it and hands its first predicted latent to level 0.
    `config` defaults to `HIER_DEFAULT` (the values of `agents/hier-2.toml`). `dist`: the
    bank graph's distances (`data_graph`), joined by latent distance (no critic calls);
    default `bank_graph` (critic0 hops), joined by critic0.

    With `config.reached = 0` the selection schedule depends only on
    the step counter, which stays unbatched under `vmap` over episodes, so `lax.cond`
    really skips the selector between replans. An event trigger (`reached > 0`) makes the
    predicate per-episode; vmap then computes the selector every step and selects.
    """
    config = config or HIER_DEFAULT
    cfg = dataclasses.replace(config, kind="hier", top=top or config.top)
    planner = planner or make_planner(cfg)
    scale = scale or step_scale(task, stack)
    act = _low_level(task, stack, cfg, planner, scale)
    three = cfg.top in ("critic+macro", "critic+critic")
    top_shape = (1, 1)
    if cfg.top in ("critic", "critic+macro", "critic+critic"):
        if bank is None:
            raise ValueError(f"top={cfg.top!r} needs a bank of encoded dataset states. Fix: "
                             "pass bank=make_bank(task, stack, data, size)[0]")
        r = cfg.far_reach if three else cfg.reach
        if graph:
            snap = None if dist is None else scale  # a data graph: join by latent distance
            dist = bank_graph(stack, bank) if dist is None else dist
            choose = graph_selector(stack, bank, dist, r, cfg.progress, commit=cfg.commit,
                                    snap_scale=snap)
            if cfg.top == "critic+critic":  # the middle layer: same graph, towards the far one
                choose_near = graph_selector(stack, bank, dist, cfg.reach, cfg.progress,
                                             commit=cfg.commit, snap_scale=snap)
        elif cfg.top == "critic+critic":
            raise ValueError("top='critic+critic' searches the bank graph. Fix: graph=True")
        else:
            choose = critic_selector(stack, bank, r, cfg.progress, cfg.candidates)
    if cfg.top in ("macro", "critic+macro"):
        if stack.wm_cfg.levels < 2:
            raise ValueError(f"top={cfg.top!r} needs a stack with >= 2 levels. Fix: train "
                             "with strides=(1, s) or use top='critic'")
        choose_macro = macro_selector(stack, cfg, scale, 1 if three else None)
        top_shape = (cfg.top_horizon, stack.wm_cfg.macro_dim)
    # Without event triggers the selection schedule depends on the step counter alone,
    # which stays unbatched under `vmap` over episodes: `lax.cond` then really skips the
    # selector between replans instead of computing both branches and selecting.
    n_macro_model = cfg.top_samples * cfg.top_iters * cfg.top_horizon + 1
    n_macro_critic = cfg.top_samples * cfg.top_iters
    zero = jnp.int32(0)

    def init(key: jax.Array, state: State) -> AgentState:
        return _initial(task, stack, cfg, key, state, top_shape)

    def step(agent: AgentState, state: State) -> tuple[AgentState, jax.Array]:
        key, k_top, k_low = jax.random.split(agent.key, 3)
        z, zg = _encode(stack, state)
        far, far_idx, far_since, n_far = agent.far, agent.far_idx, agent.far_since, zero
        target = zg
        if three:
            far_fresh = (agent.t == 0) | (far_since >= cfg.far_replan)
            far, far_idx, n_far, far_togo = jax.lax.cond(
                far_fresh, lambda: choose(z, zg, far_idx), lambda: (far, far_idx, zero, agent.best))
            # A far subgoal that is the goal follows it (staged goals: waypoints).
            far = jnp.where(far_idx == -1, zg, far)
            far_since = jnp.where(far_fresh, 1, far_since + 1)
            target = far

        fresh = (agent.t == 0) | (agent.since >= cfg.replan)
        if three:
            fresh = fresh | far_fresh
        if cfg.reached > 0:
            reached = costs.safe_norm(z - agent.subgoal) / scale <= cfg.reached
            fresh = fresh | (reached & (agent.subgoal_idx != -1))

        # Unreachable subgoal: no step of progress towards the target for `patience` steps
        # (a wall corner where the level-0 model is wrong) bans the subgoal's graph
        # neighbourhood for `ban_steps`, so the selector routes round it.
        stuck_now = (cfg.patience > 0) & (agent.stuck >= cfg.patience) & (agent.subgoal_idx >= 0)
        ban_idx = jnp.where(stuck_now, agent.subgoal_idx,
                            jnp.where(agent.ban_left > 0, agent.ban_idx, -1))
        ban_left = jnp.where(stuck_now, cfg.ban_steps, jnp.maximum(agent.ban_left - 1, 0))
        best = jnp.where(stuck_now, jnp.inf, agent.best)
        if cfg.patience > 0:  # (a per-episode predicate: keep it out when off, see above)
            fresh = fresh | stuck_now

        def keep():
            return agent.subgoal, agent.subgoal_idx, agent.top_plan, zero, zero, best

        if cfg.top == "critic":
            def pick():
                s, i, nc, togo = choose(z, zg, agent.subgoal_idx, ban_idx)
                return s, i, agent.top_plan, zero, nc, togo
        elif cfg.top == "critic+critic":
            def pick():
                s, i, nc, togo = choose_near(z, target, agent.subgoal_idx, ban_idx)
                # reaching the far subgoal itself is index -1 here; keep its bank index
                i = jnp.where(i == -1, far_idx, i)
                return s, i.astype(jnp.int32), agent.top_plan, zero, nc, togo
        else:
            def pick():
                s, plan, _ = choose_macro(agent.top_plan, k_top, z, target)
                return s, jnp.int32(-2), plan, jnp.int32(n_macro_model), \
                    jnp.int32(n_macro_critic), best

        sub, idx, top_plan, n_top, n_crit_top, togo = jax.lax.cond(fresh, pick, keep)
        if three:  # progress towards the goal, measured at each far selection
            togo = far_togo
        gained = togo < best - 1.0
        best = jnp.where(gained, togo, best)
        stuck = jnp.where(gained | stuck_now, 0, agent.stuck + 1)
        # A subgoal that is the goal follows it, so passing a waypoint needs no
        # (per-episode, hence vmap-batched) trigger; the next selection refines it.
        sub = jnp.where(idx == -1, zg, sub)
        action, plan, cost, n = act(agent.plan, k_low, z, sub)
        agent = AgentState(plan=plan, top_plan=top_plan, key=key, subgoal=sub, subgoal_idx=idx,
                           since=jnp.where(fresh, 1, agent.since + 1), far=far,
                           far_idx=far_idx, far_since=far_since, best=best, stuck=stuck,
                           ban_idx=ban_idx, ban_left=ban_left, t=agent.t + 1,
                           cost=cost, n_evals=n, n_model=n * cfg.horizon + n_top,
                           n_critic=n * critic_calls(cfg) + n_crit_top + n_far)
        return agent, action

    return Policy(init=init, step=step)


def needs_bank(cfg: AgentConfig) -> bool:
    return cfg.kind == "hier" and cfg.top.startswith("critic")


def mpc_actuator(task: Task, stack: Stack, cfg: AgentConfig, scale: float,
                 planner: P.Planner | None = None) -> Actuator:
    """Level-0 MPC over the learned model as a chain's actuator."""
    act = _low_level(task, stack, cfg, planner or make_planner(cfg), scale)

    def init(key):
        del key
        return jnp.zeros((cfg.horizon, task.env.action_size), jnp.float32)

    def step(plan, key, z, subgoal):
        action, plan, cost, n = act(plan, key, z, subgoal)
        return plan, action, {"cost": cost, "n_evals": n, "n_model": n * cfg.horizon,
                              "n_critic": n * critic_calls(cfg)}

    return Actuator(init, step)


def graph_levels(graph: BankGraph, cfg: AgentConfig, scale: float) -> list[Level]:
    """The graph layers an agent definition describes: one (`top = "critic"`) or a far
    one re-selected every `far_replan` steps above a near one (`"critic+critic"`)."""
    near = GraphLevelConfig(reach=cfg.reach, progress=cfg.progress, commit=cfg.commit,
                            patience=cfg.patience, cut_radius=cfg.cut_radius,
                            max_cuts=cfg.max_cuts)
    levels = [graph_level(graph, scale, near)]
    if cfg.top == "critic+critic":
        far = dataclasses.replace(near, reach=cfg.far_reach, patience=0)
        levels.insert(0, hold(graph_level(graph, scale, far), cfg.far_replan))
    return levels


def graph_for(cfg: AgentConfig, task: Task, stack: Stack, data: Dataset | None,
              seed: int = 0) -> BankGraph | None:
    """The bank graph an agent selects subgoals from (None for agents without one):
    `cfg.bank` encoded dataset states linked by critic0 hops or by the data's own
    transitions (`cfg.edges`)."""
    if not needs_bank(cfg):
        return None
    if data is None:
        raise ValueError(f"agent {cfg.name!r} selects subgoals from a bank of dataset "
                         "states. Fix: pass the task's offline data (hplan collect)")
    bank = make_bank(task, stack, data, cfg.bank, seed)[0]
    links = data_edges(task, stack, data, cfg.bank, seed)
    if cfg.edges == "critic":
        links = verified(critic_edges(stack, bank), links, len(bank))
    return build_graph(bank, *links)


def verified(links, data_links, m: int, factor: float = 2.0, slack: float = 1.0):
    """The `links` (src, dst, w) that the data's own transitions confirm: the two states
    are at most `factor * w + slack` steps apart over `data_links`. critic0 under-estimates
    across thin walls and corners (it sees a hair's breadth where the way round is long);
    the data never crossed them."""
    from hplan.graph import shortest_paths

    src, dst, w = links
    d = shortest_paths(m, *data_links)
    keep = d[src, dst] <= factor * w + slack
    return src[keep], dst[keep], w[keep]


def build(cfg: AgentConfig, task: Task, stack: Stack, graph: BankGraph | None = None,
          scale: float | None = None) -> Policy:
    """The policy an agent definition describes."""
    if cfg.kind == "flat":
        return flat_learned(task, stack, config=cfg, scale=scale)
    if cfg.top in ("critic", "critic+critic"):
        if graph is None:
            raise ValueError(f"top={cfg.top!r} needs a graph of encoded dataset states. "
                             "Fix: pass graph=graph_for(cfg, task, stack, data)")
        scale = scale or step_scale(task, stack)
        return chain(graph_levels(graph, cfg, scale),
                     mpc_actuator(task, stack, cfg, scale), lambda st: _encode(stack, st))
    return hierarchical(task, stack, None if graph is None else graph.latents,
                        config=cfg, scale=scale)


def make(agent: str | AgentConfig, task: Task, stack: Stack, data: Dataset | None = None,
         seed: int = 0) -> tuple[Policy, AgentConfig]:
    """Policy from an agent name, file or config; encodes its bank from `data` if needed."""
    from hplan.agents import load_agent

    cfg = agent if isinstance(agent, AgentConfig) else load_agent(agent)
    return build(cfg, task, stack, graph_for(cfg, task, stack, data, seed)), cfg


# -- evaluation with compute accounting --------------------------------------------------
def agent_record(state: State, agent, action: jax.Array) -> dict:
    """`mpc.maze_record` plus the agent's per-step compute and subgoal."""
    rec = mpc.maze_record(state, agent, action)
    if isinstance(agent, AgentState | ChainState):
        rec.update(plan_cost=agent.cost, n_evals=agent.n_evals, n_model=agent.n_model,
                   n_critic=agent.n_critic, subgoal_idx=agent.subgoal_idx,
                   far_idx=agent.far_idx,
                   subgoal=agent.subgoal)
    return rec


def make_evaluate(task: Task, policy: Policy, steps: int | None = None, reset=None
                  ) -> Callable[[jax.Array], dict[str, jax.Array]]:
    """`mpc.make_evaluate`'s metrics plus per-step `n_evals`, `n_model`, `n_critic` [N, T],
    `subgoal_idx` [N, T], `subgoal` [N, T, d], `far_idx` [N, T] (three layers), `goal`
    [N, 2] and the true `distance` to it after each step [N, T]."""
    return mpc.make_evaluate(task, policy, steps, record=agent_record,
                             extra=("distance", "n_evals", "n_model", "n_critic",
                                    "subgoal_idx", "subgoal", "far_idx"), reset=reset)


def evaluate(task: Task, policy: Policy, key: jax.Array, episodes: int,
             steps: int | None = None) -> dict[str, jax.Array]:
    """Jit-compile and run `episodes` episodes as one program."""
    return jax.jit(make_evaluate(task, policy, steps))(jax.random.split(key, episodes))
