"""Flat MPC through the environment's own `step`: the oracle baseline (`flat-true`).

It plans from the true state every step, towards the current target in goal space
(`info["target_xy"]`), with the task's keep-out zones as a penalty on `metrics["xy"]`;
costs are goal-space distances. Any pure-JAX env with those two entries can be planned
through this way; no learned component is involved.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hplan.agents.actuator import MPCConfig, action_filter, make_planner
from hplan.core import KeepOut, Policy, State
from hplan.planning import costs
from hplan.planning import planners as P


def true_cost(task, cfg: MPCConfig):
    """`cost(state, actions [H, A])`: goal-space distance to `state.info["target_xy"]`
    along a rollout of the env's own step, plus the keep-out penalty."""
    base = task.env.unwrapped
    filt = action_filter(task.env)
    keep_outs = [g for g in task.guardrails if isinstance(g, KeepOut)]
    guard = (costs.penalty(costs.guardrails(keep_outs), cfg.guard_weight, cfg.guard_margin)
             if keep_outs else None)

    def cost(state: State, actions):
        actions = filt(actions)

        def body(s, a):
            s = base.step(s, a)
            return s, s.metrics["xy"]

        _, xs = jax.lax.scan(body, state, actions)
        d = costs.safe_norm(xs - state.info["target_xy"])
        c = cfg.running * jnp.sum(d) + cfg.terminal * d[-1]
        if guard is not None:
            c = c + guard(jnp.concatenate([state.metrics["xy"][None], xs]), actions)
        return c

    return cost


def true_mpc(task, cfg: MPCConfig, planner: P.Planner | None = None) -> Policy:
    """Flat MPC through the true dynamics; `planner` defaults to the one `cfg` names."""
    filt = action_filter(task.env)
    planner = planner or make_planner(cfg)
    cost = true_cost(task, cfg)

    def init(key, state):
        return jnp.zeros((cfg.horizon, task.env.action_size), jnp.float32), key

    def step(ps, state):
        plan, key = ps
        key, k = jax.random.split(key)
        plan, info = P.solve(planner, lambda a: cost(state, a), plan, k, cfg.iters)
        n = info["n_evals"]
        return (P.shift(plan), key), filt(plan[0]), {
            "cost": info["cost"], "n_evals": n, "n_model": n * cfg.horizon,
            "n_critic": jnp.int32(0)}

    return Policy(init, step)
