"""A `Level` that plans with a higher world-model level (HWM style): CEM over that
level's latent macro-actions; the subgoal is the first predicted latent, one stride ahead.

Cost in base steps: latent distance to the target along the level's rollout (`running`
per macro step, `terminal` extra at the end) plus the level's critic at the end. It
needs no dataset states, so it transfers to worlds the data never visited.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from flax import nnx

from hplan.agents.level import Level, level_info
from hplan.core import ConfigError
from hplan.planning import costs
from hplan.planning import planners as P


@dataclasses.dataclass(frozen=True)
class Config:
    level: int = -1  # world-model level to plan with (-1: the top)
    horizon: int = 3  # macro-actions planned
    samples: int = 64
    elites: int = 8
    iters: int = 3
    running: float = 0.1
    terminal: float = 0.0
    critic_weight: float = 1.0

    def __post_init__(self):
        for key in ("horizon", "samples", "elites", "iters"):
            v = getattr(self, key)
            if not (isinstance(v, int) and v >= 1):
                raise ConfigError(key, f"{key}={v!r}", "use a positive integer")
        if self.elites > self.samples:
            raise ConfigError("elites", f"elites={self.elites} > samples={self.samples}",
                              "use elites <= samples")


def make(cfg: Config, ctx) -> Level:
    stack, scale = ctx.stack, ctx.scale
    levels = stack.wm_cfg.levels
    level = levels - 1 if cfg.level < 0 else cfg.level
    if not 1 <= level < levels:
        raise ConfigError("level", f"level={cfg.level} but the stack has levels 0.."
                          f"{levels - 1} and level 0 has no macro-actions",
                          "train with strides = [1, s] or more, and name a level >= 1")
    stride = stack.wm_cfg.strides[level]
    planner = P.cem(cfg.samples, cfg.elites)
    n_model = cfg.samples * cfg.iters * cfg.horizon + 1
    n_critic = cfg.samples * cfg.iters

    def cost(z, target, macros):
        model = nnx.merge(stack.wm_graph, stack.wm_params)
        zs = model.rollout(level, z, macros)
        d = costs.safe_norm(zs - target) / scale
        return (cfg.running * jnp.sum(d) + cfg.terminal * d[-1]
                + cfg.critic_weight * stride * stack.critic(level)(zs[-1], target))

    def init(key, z_goal):
        return jnp.zeros((cfg.horizon, stack.wm_cfg.macro_dim), jnp.float32)

    def step(plan, key, z, target):
        plan, _ = P.solve(planner, lambda u: cost(z, target, u), plan, key, cfg.iters)
        model = nnx.merge(stack.wm_graph, stack.wm_params)
        return P.shift(plan), model.step(level, z, plan[0]), level_info(-2, n_model,
                                                                         n_critic)

    return Level(init=init, step=step)
