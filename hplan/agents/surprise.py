"""Surprise: the level-0 model's own prediction error, kept in the agent's state.

Each step the agent compares the latent it observes with the one its level-0 model
predicted from the last latent and action. A *spike* (the error more than `threshold`
base steps above a running baseline of unsurprising errors, `persist` steps in a row)
says the world differs from what the model expects (a door that closed, a wall that
moved). With `miss` set, a step is high instead when its error exceeds that fraction of
the step the model predicted: blocked by a wall the model does not know, the agent stays
put and the error equals the predicted step whatever speed it pushed at and however
noisy the model is elsewhere, so the rule carries between stacks where an absolute
threshold does not (door-closes: on a stack whose agent pushes at 0.6 of a base step
the error never crosses baseline + 0.5). A change persists (the agent pushes at the
closed door step after step) while a model's slips near walls come one at a time, so
`persist = 2` or 3 drops most false alarms at the cost of as many steps of delay. With
`react`, a surprised agent re-plans at every level at once: levels that have a
`surprised` hook (the graph level cuts where the agent stands and one step ahead on its
route, so the next subgoal takes another route; `hold` re-selects now) run it, and the
actuator drops its warm start.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from hplan.core import ConfigError


@dataclasses.dataclass(frozen=True)
class SurpriseConfig:
    # A spike: the error this many base steps above the baseline. Blocked by a wall the
    # model does not know, a full-speed step is missed by about one base step.
    threshold: float = 0.5
    decay: float = 0.9  # the baseline: exponential mean of the unsurprising errors
    warmup: int = 2  # steps before spikes count (the baseline settles)
    react: bool = False  # re-plan every level at once (and cut the graph) on a spike
    # Steps after a reaction before the next: pushing at a door that closed spikes every
    # step, and a cut per step would soon overwrite the first (the one at the door).
    refractory: int = 16
    persist: int = 1  # consecutive steps above the threshold that make a spike
    # If > 0: a step is high when its error exceeds this fraction of the predicted step
    # (and that step is at least `min_move` base steps); replaces `threshold`.
    miss: float = 0.0
    min_move: float = 0.3

    def __post_init__(self):
        if not self.threshold > 0:
            raise ConfigError("threshold", f"threshold={self.threshold!r}",
                              "use a positive number of base steps, e.g. 0.5")
        if not 0 <= self.decay < 1:
            raise ConfigError("decay", f"decay={self.decay!r}", "use a number in [0, 1)")
        for key in ("warmup", "refractory"):
            v = getattr(self, key)
            if not (isinstance(v, int) and v >= 0):
                raise ConfigError(key, f"{key}={v!r}", "use an integer >= 0")
        if not 0 <= self.miss <= 2:
            raise ConfigError("miss", f"miss={self.miss!r}",
                              "use 0 (off) or a fraction of the predicted step, e.g. 0.9")
        if not self.min_move >= 0:
            raise ConfigError("min_move", f"min_move={self.min_move!r}",
                              "use a non-negative number of base steps, e.g. 0.3")
        if not (isinstance(self.persist, int) and self.persist >= 1):
            raise ConfigError("persist", f"persist={self.persist!r}", "use an integer >= 1")


class SurpriseState(NamedTuple):
    z_pred: jax.Array  # [d] the latent the model predicted for this step
    error: jax.Array  # the last step's prediction error (base steps)
    baseline: jax.Array  # running mean of unsurprising errors
    n: jax.Array  # steps observed
    quiet: jax.Array  # steps since the last reaction
    over: jax.Array  # consecutive steps above the threshold
    move: jax.Array  # the length of the step the model predicted (base steps)


def init(z: jax.Array) -> SurpriseState:
    return SurpriseState(z_pred=z, error=jnp.float32(0), baseline=jnp.float32(0),
                         n=jnp.int32(0), quiet=jnp.int32(2**30),
                         over=jnp.int32(0), move=jnp.float32(0))


def react(cfg: SurpriseConfig, s: SurpriseState, spike: jax.Array
          ) -> tuple[SurpriseState, jax.Array]:
    """(state, whether to react now): a spike outside the refractory period."""
    now = spike & (s.quiet >= cfg.refractory)
    return s._replace(quiet=jnp.where(now, 0, jnp.minimum(s.quiet + 1, 2**30))), now


def _steps(a: jax.Array, b: jax.Array, scale: float) -> jax.Array:
    """The distance between two latents, in base steps."""
    return jnp.sqrt(jnp.sum((a - b) ** 2) + 1e-12) / scale


def observe(cfg: SurpriseConfig, s: SurpriseState, z: jax.Array, scale: float
            ) -> tuple[SurpriseState, jax.Array]:
    """(state, spike): the error of the last prediction against the observed `z`."""
    return judge(cfg, s, _steps(z, s.z_pred, scale))


def judge(cfg: SurpriseConfig, s: SurpriseState, err: jax.Array
          ) -> tuple[SurpriseState, jax.Array]:
    """(state, spike) for a prediction error `err` (base steps) of the step `s.move`
    predicted; offline replays of recorded errors call it directly."""
    first = s.n == 0  # nothing predicted yet
    err = jnp.where(first, 0.0, err)
    if cfg.miss > 0:
        high = (s.n > cfg.warmup) & (s.move > cfg.min_move) & (err > cfg.miss * s.move)
    else:
        high = (s.n > cfg.warmup) & (err > s.baseline + cfg.threshold)
    over = jnp.where(high, s.over + 1, 0)
    spike = over >= cfg.persist
    mean = jnp.where(s.n <= 1, err, cfg.decay * s.baseline + (1 - cfg.decay) * err)
    baseline = jnp.where(high, s.baseline, mean)
    return s._replace(error=err, baseline=baseline, n=s.n + 1, over=over), spike


def predicted(s: SurpriseState, z: jax.Array, z_next: jax.Array, scale: float
              ) -> SurpriseState:
    return s._replace(z_pred=z_next, move=_steps(z_next, z, scale))


def select(pred: jax.Array, a, b):
    """`a` where `pred`, else `b`, leaf by leaf (pytrees of one structure)."""
    return jax.tree_util.tree_map(lambda x, y: jnp.where(pred, x, y), a, b)
