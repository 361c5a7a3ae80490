"""A `Level` that scores bank states with the critics directly (no graph search).

Among a bank of encoded dataset states plus the target, pick the one minimising
`V_top(z, s) + (1 + progress) V_top(s, target)` with a hinge keeping `V_0(z, s) <= reach`
(base steps). `candidates > 0` scores only that many bank states latent-nearest to `z`.
The critic under-estimates across thin walls, which is why the graph level exists; this
one stays for comparison and for the far layer of three-level agents.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from hplan.agents.level import Level, level_info
from hplan.core import ConfigError


@dataclasses.dataclass(frozen=True)
class Config:
    bank: int = 2048
    reach: float = 16.0  # base steps (critic0) to a chosen subgoal
    progress: float = 0.5
    candidates: int = 0  # 0: score the whole bank

    def __post_init__(self):
        if not self.reach > 0:
            raise ConfigError("reach", f"reach={self.reach!r}", "use a positive number")
        if not (isinstance(self.candidates, int) and self.candidates >= 0):
            raise ConfigError("candidates", f"candidates={self.candidates!r}",
                              "use 0 (score the whole bank) or a positive count")


def make(cfg: Config, ctx) -> Level:
    _, bank = ctx.bank(cfg.bank)
    stack = ctx.stack
    m = bank.shape[0]
    k = min(cfg.candidates, m) if cfg.candidates > 0 else m

    def step(state, key, z, target):
        c0, ct = stack.critic(0), stack.critic(-1)
        if k < m:
            _, near = jax.lax.top_k(-jnp.sum((bank - z) ** 2, -1), k)
        else:
            near = jnp.arange(m)
        cand = jnp.concatenate([bank[near], target[None]])
        zz = jnp.broadcast_to(z, cand.shape)
        score = ct(zz, cand) + (1.0 + cfg.progress) * ct(cand, jnp.broadcast_to(target,
                                                                               cand.shape))
        score = score + 1e3 * jax.nn.relu(c0(zz, cand) - cfg.reach)
        i = jnp.argmin(score)
        idx = jnp.where(i == k, -1, near[jnp.minimum(i, k - 1)]).astype(jnp.int32)
        return state, cand[i], level_info(idx, 0, 3 * (k + 1))

    return Level(init=lambda key, z_goal: (), step=step)
