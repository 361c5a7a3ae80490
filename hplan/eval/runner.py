"""One evaluator for every policy: `lax.scan` over time, `vmap` over episodes.

It records, per step, the env's `state.metrics` and the policy's `info` (compute counts,
subgoals, whatever the policy reports), and per episode whether it succeeded and when,
and how it kept the task's guardrails (on `metrics["xy"]`, where the env reports it).
Nothing here knows what kind of agent or env it runs.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from hplan.core import Policy, State
from hplan.planning import costs

Reset = Callable[[jax.Array, jax.Array], State]


def run_episodes(env, policy: Policy, keys: jax.Array, steps: int, reset: Reset | None = None):
    """(first states, per-step records [N, T, ...]) of `len(keys)` episodes. Episode `i`
    starts from `reset(key_i, i)` (default `env.reset(key_i)`). Pure: jit it."""

    def episode(key, i):
        k_env, k_pol = jax.random.split(key)
        s0 = env.reset(k_env) if reset is None else reset(k_env, i)

        def body(carry, _):
            state, ps = carry
            ps, action, info = policy.step(ps, state)
            state = env.step(state, action)
            return (state, ps), {"action": action, "metrics": state.metrics, "info": info}

        _, rec = jax.lax.scan(body, (s0, policy.init(k_pol, s0)), None, length=steps)
        return s0, rec

    return jax.vmap(episode)(keys, jnp.arange(keys.shape[0]))


def make_evaluate(task, policy: Policy, steps: int | None = None, reset: Reset | None = None
                  ) -> Callable[[jax.Array], dict]:
    """A pure `evaluate(keys [N]) -> dict`; `jax.jit` it for one program per batch.

    Keys: `success` [N] (the last target reached at any step), `steps_to_goal` [N] (-1 if
    never), `actions` [N, T, A], `metrics` and `info` (per step, [N, T, ...]), `first`
    (the first state's metrics and, for goal tasks, `targets`), and where the env reports
    `xy`: `positions` [N, T+1, d], `goal` [N, d], `violations` / `violation_amount` of the
    task's guardrails."""
    steps = steps or task.episode_length
    guard = costs.guardrails(task.guardrails, max_step=getattr(task.env, "action_scale", 1.0))

    def evaluate(keys: jax.Array) -> dict:
        s0, rec = run_episodes(task.env, policy, keys, steps, reset)
        done = rec["metrics"]["success"] > 0
        success = jnp.any(done, axis=1)
        first = {"metrics": s0.metrics}
        for k in ("targets", "context"):  # the oracle's optimum needs both
            if k in s0.info:
                first[k] = s0.info[k]
        out = {"success": success,
               "steps_to_goal": jnp.where(success, jnp.argmax(done, axis=1) + 1, -1),
               "actions": rec["action"], "metrics": rec["metrics"], "info": rec["info"],
               "first": first}
        if "xy" in s0.metrics:
            pos = jnp.concatenate([s0.metrics["xy"][:, None], rec["metrics"]["xy"]], axis=1)
            viol = jax.vmap(lambda xs, a: costs.violations(guard, xs, a))(pos, rec["action"])
            out.update(positions=pos, violations=viol["count"],
                       violation_amount=viol["amount"])
            if "targets" in first:
                out["goal"] = first["targets"][:, -1]
        else:
            n = keys.shape[0]
            out.update(violations=jnp.zeros(n, jnp.int32), violation_amount=jnp.zeros(n))
        return out

    return evaluate


def shard_keys(keys: jax.Array, devices: int | None) -> jax.Array:
    """Episode keys split over a `data` mesh of `devices` (None or 1: left as they are):
    the jitted batch then runs as one SPMD program, episodes side by side per device."""
    if not devices or devices == 1:
        return keys
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from hplan import sharding

    m = sharding.mesh(devices)
    sharding.check_batch(keys.shape[0], m, "number of episodes")
    return jax.device_put(keys, NamedSharding(m, P(sharding.AXIS)))


def evaluate(task, policy: Policy, key: jax.Array, episodes: int, steps: int | None = None,
             reset: Reset | None = None, devices: int | None = None) -> dict:
    """Jit-compile and run `episodes` episodes as one program (over `devices`)."""
    keys = shard_keys(jax.random.split(key, episodes), devices)
    return jax.jit(make_evaluate(task, policy, steps, reset))(keys)
