"""The level-0 actuator: receding-horizon MPC over the learned level-0 model.

Cost of a plan, in base steps: latent distance to the (sub)goal along the rollout
(`running` per step, `terminal` extra at the end), the level-0 critic (at the end, or
averaged along the rollout), and a keep-out penalty on positions read from latents by
the stack's linear probe. Speed limits act on the actions themselves (the task's action
filter, inside the rollout and at execution).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from hplan.agents.level import Actuator
from hplan.core import ConfigError, KeepOut
from hplan.envs.wrappers import clip_actions
from hplan.planning import costs
from hplan.planning import planners as P
from hplan.wm.map_step import check_config as check_map_config

PLANNERS = ("gradient", "cem", "mppi", "hybrid")
CRITIC_ON = ("none", "terminal", "path")


@dataclasses.dataclass(frozen=True)
class MPCConfig:
    """The level-0 planner and its cost (distances in base steps)."""

    planner: str = "gradient"  # gradient | cem | mppi | hybrid
    horizon: int = 12
    iters: int = 8
    lr: float = 0.3  # gradient: adam step size on actions
    restarts: int = 4  # gradient: parallel restarts
    init_noise: float = 0.5  # gradient: noise of restarts 1..R
    samples: int = 64  # cem / mppi / hybrid sampler
    elites: int = 8  # cem
    temperature: float = 0.5  # mppi
    sample_iters: int = 2  # hybrid: sampler iterations before gradient refinement
    running: float = 1.0  # weight of the summed latent distance to the (sub)goal
    terminal: float = 1.0  # extra weight on the last step's latent distance
    # the level-0 critic as cost: "none"; "terminal": at the rollout's end; "path": its mean
    # over the rollout, so reaching the (sub)goal early is cheaper than dawdling
    critic: str = "none"
    critic_weight: float = 1.0
    guard_weight: float = 20.0  # keep-out penalty on probed positions
    guard_margin: float = 0.1
    # Within this many base steps of the (sub)goal, act with the model's inverse-dynamics
    # head (z, subgoal) -> action instead of the plan's first action: the head resolves one
    # step about twice as finely as searching the forward model (bench/level0_precision.py),
    # so the agent lands on a near subgoal instead of dithering round it. 0: off. Needs a
    # stack trained with `inverse_weight > 0`.
    inverse_within: float = 0.0
    # Cost on reversing the action just executed: reverse * max(0, -<a_0, a_prev>) / |A|.
    # Damps back-and-forth round a subgoal; turns of up to 90 degrees are free. 0: off.
    reverse: float = 0.0
    # The first step of every rollout by a predictor that also reads the current frame
    # (`hplan.wm.frame_step`), fitted for this many updates when the agent is built; the
    # rest by the level-0 model. A pixel latent trained JEPA-style loses the wall beside
    # the agent (the model walks through it); the frame holds it. 0: off. Pixel tasks only.
    frame_step: int = 0
    # Rollout steps the frame step takes, all from the current frame (it sees the walls
    # round where the agent is now, and holds them for the next steps); the rest by the
    # level-0 model.
    frame_horizon: int = 1
    # What the frame step reads: "agent", the walls round the agent in the frame
    # (`hplan.wm.frame_step`); "map", the walls where the rollout's latent says the agent
    # is (`hplan.wm.map_step`), so they hold over a whole rollout
    frame_kind: str = "agent"
    map_sharp: float = 0.0  # the map step's teacher attention sharpened by this (0: off)
    map_locate: str = "attention"  # the map step's teacher: "attention" or "difference"
    map_rollout: int = 1  # "map": the map step is fitted on its own rollouts this long

    def __post_init__(self):
        if self.planner not in PLANNERS:
            raise ConfigError("planner", f"planner={self.planner!r}", f"use one of {PLANNERS}")
        if self.critic not in CRITIC_ON:
            raise ConfigError("critic", f"critic={self.critic!r}", f"use one of {CRITIC_ON}")
        for key in ("horizon", "iters", "restarts", "samples", "elites", "sample_iters"):
            v = getattr(self, key)
            if not (isinstance(v, int) and v >= (0 if key == "sample_iters" else 1)):
                raise ConfigError(key, f"{key}={v!r}", "use a positive integer")
        if not self.reverse >= 0:
            raise ConfigError("reverse", f"reverse={self.reverse!r}", "use a weight >= 0")
        if not (isinstance(self.frame_horizon, int) and 1 <= self.frame_horizon <= self.horizon):
            raise ConfigError("frame_horizon", f"frame_horizon={self.frame_horizon!r}",
                              f"use an integer in [1, horizon = {self.horizon}]")
        check_map_config(self.map_sharp, self.map_rollout, self.map_locate)
        if self.frame_kind not in ("agent", "map"):
            raise ConfigError("frame_kind", f"frame_kind={self.frame_kind!r}",
                              "use 'agent' or 'map'")
        if not (isinstance(self.frame_step, int) and self.frame_step >= 0):
            raise ConfigError("frame_step", f"frame_step={self.frame_step!r}",
                              "use a number of updates >= 0 (0: off), e.g. 1000")
        if not self.inverse_within >= 0:
            raise ConfigError("inverse_within", f"inverse_within={self.inverse_within!r}",
                              "use a distance in base steps >= 0 (0: off)")
        for key in ("lr", "temperature"):
            if not getattr(self, key) > 0:
                raise ConfigError(key, f"{key}={getattr(self, key)!r}",
                                  "use a positive number")
        if self.elites > self.samples:
            raise ConfigError("elites", f"elites={self.elites} > samples={self.samples}",
                              "use elites <= samples")

    @property
    def critic_calls(self) -> int:
        """Critic calls per cost evaluation."""
        return {"none": 0, "terminal": 1, "path": self.horizon}[self.critic]


def make_planner(cfg: MPCConfig) -> P.Planner:
    grad = P.gradient(optax.adam(cfg.lr), restarts=cfg.restarts, init_noise=cfg.init_noise)
    if cfg.planner == "gradient":
        return grad
    if cfg.planner == "cem":
        return P.cem(cfg.samples, cfg.elites)
    if cfg.planner == "mppi":
        return P.mppi(cfg.samples, cfg.temperature)
    return P.hybrid(P.cem(cfg.samples, cfg.elites), grad, cfg.sample_iters)


def action_filter(env) -> Callable[[jax.Array], jax.Array]:
    """The env's action filter (a task's speed limit), or the action box."""
    return getattr(env, "action_filter", clip_actions)


def latent_cost(ctx, cfg: MPCConfig, first=None) -> Callable[..., jax.Array]:
    """`cost(z0, goal_z, actions [H, A][, frame])` (see the module docstring); with
    `first` (a `FrameStepModel`) and the current frame's `context`, the rollout's first
    step is `first`'s."""
    stack, task, scale = ctx.stack, ctx.task, ctx.scale
    filt = action_filter(task.env)
    keep_outs = [g for g in task.guardrails if isinstance(g, KeepOut)]
    guard = None
    if keep_outs:
        if stack.probe is None:
            raise ValueError("keep-out guardrails act on positions read from latents, and "
                             "this stack has no position probe (its data had no xy). Fix: "
                             "use an env that reports metrics['xy']")
        w, b = (jnp.asarray(x, jnp.float32) for x in stack.probe)
        guard = costs.penalty(costs.guardrails(keep_outs, lambda z: z @ w + b),
                              cfg.guard_weight, cfg.guard_margin)

    def cost(z0, goal, actions, frame=None):
        model = nnx.merge(stack.wm_graph, stack.wm_params)
        actions = filt(actions)
        if first is None or frame is None:
            zs = model.rollout(0, z0, actions)
        else:
            k = cfg.frame_horizon

            def seen(z, a):
                z = first.step(frame, z, a)
                return z, z

            zk, near = jax.lax.scan(seen, z0, actions[:k])
            zs = near if k == len(actions) else jnp.concatenate(
                [near, model.rollout(0, zk, actions[k:])])
        d = costs.safe_norm(zs - goal) / scale
        c = cfg.running * jnp.sum(d) + cfg.terminal * d[-1]
        if cfg.critic == "path":
            c = c + cfg.critic_weight * jnp.mean(
                stack.critic(0)(zs, jnp.broadcast_to(goal, zs.shape)))
        elif cfg.critic == "terminal":
            c = c + cfg.critic_weight * stack.critic(0)(zs[-1], goal)
        if guard is not None:
            c = c + guard(jnp.concatenate([z0[None], zs]), actions)
        return c

    return cost


class MPCState(NamedTuple):
    plan: jax.Array  # [H, A] the warm start: last step's plan, shifted
    prev: jax.Array  # [A] the action executed last


def mpc(ctx, cfg: MPCConfig, planner: P.Planner | None = None) -> Actuator:
    """Level-0 MPC over the learned model: plan every step from the current latent,
    execute the first action, warm-start the next step with the shifted plan."""
    first = None if cfg.frame_step == 0 else ctx.frame_step(
        cfg.frame_step, kind=cfg.frame_kind, horizon=cfg.map_rollout, sharp=cfg.map_sharp,
        locate=cfg.map_locate)
    cost = latent_cost(ctx, cfg, first)
    filt = action_filter(ctx.task.env)
    planner = planner or make_planner(cfg)
    size = ctx.task.env.action_size
    final = inverse_step(ctx) if cfg.inverse_within > 0 else None

    def init(key):
        del key
        return MPCState(jnp.zeros((cfg.horizon, size), jnp.float32),
                        jnp.zeros((size,), jnp.float32))

    def total(z, subgoal, prev, frame=None):
        if cfg.reverse == 0:
            return lambda a: cost(z, subgoal, a, frame)
        return lambda a: cost(z, subgoal, a, frame) + cfg.reverse * jax.nn.relu(
            -jnp.dot(filt(a[0]), prev)) / size

    def act(state, key, z, subgoal, obs=None):
        frame = first.context(obs) if first is not None and obs is not None else None
        plan, info = P.solve(planner, total(z, subgoal, state.prev, frame), state.plan, key,
                             cfg.iters)
        n = info["n_evals"]
        a = filt(plan[0])
        if final is not None:
            near = costs.safe_norm(subgoal - z) / ctx.scale <= cfg.inverse_within
            a = jnp.where(near, filt(final(z, subgoal)), a)
        return MPCState(P.shift(plan), a), a, {
            "cost": info["cost"], "n_evals": n, "n_model": n * cfg.horizon,
            "n_critic": n * cfg.critic_calls, "plan": filt(plan)}

    return Actuator(init, act, (lambda state: state.obs) if first is not None else None)


def inverse_step(ctx) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """`action(z, target)`: the level-0 inverse-dynamics head's reading of the step from z
    to target (`WorldModel.read_action`)."""
    stack = ctx.stack
    if not stack.wm_cfg.inverse:
        raise ConfigError("inverse_within", "inverse_within > 0 needs a level-0 inverse-"
                          "dynamics head, and this stack was trained without one",
                          "set `inverse_weight = 1.0` under [stack.train] in the task file "
                          "and retrain, or set inverse_within = 0")
    unit = ctx.inverse_scale()

    def action(z, target):
        return nnx.merge(stack.wm_graph, stack.wm_params).read_action(z, target, unit)

    return action
