"""Receding-horizon control and a generic episode runner: one XLA program per batch.

`run_episodes` scans a pure policy `step(agent_state, State) -> (agent_state, action)` over
time and vmaps over episodes, so any agent (flat, learned-model, hierarchical) is evaluated
the same way. `flat_mpc` is the oracle baseline: it plans through the true maze dynamics
`env.move` towards the current target, with the task's guardrails.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp

from hplan import costs
from hplan.env import Env, State
from hplan.planners import Planner, shift, solve
from hplan.tasks import KeepOut, SpeedLimit, Task

Record = Callable[[State, Any, jax.Array], Any]


class Policy(NamedTuple):
    """`init(key, first_state) -> agent_state`; `step(agent_state, state) -> (agent_state,
    action)`. Both pure, so an episode is a `lax.scan` and a batch a `vmap`."""

    init: Callable[[jax.Array, State], Any]
    step: Callable[[Any, State], tuple[Any, jax.Array]]


def default_record(state: State, agent_state: Any, action: jax.Array) -> dict[str, Any]:
    """Per-step record: action, reward, done and the env's metrics after the step."""
    return {"action": action, "reward": state.reward, "done": state.done, **state.metrics}


def run_episodes(env: Env, policy: Policy, keys: jax.Array, steps: int,
                 record: Record = default_record,
                 reset: Callable[[jax.Array, jax.Array], State] | None = None
                 ) -> tuple[State, Any]:
    """Run `len(keys)` episodes of `steps` steps; returns (first states, records [N, T, ...]).

    Episode `i` starts from `reset(key_i, i)` (default: `env.reset(key_i)`), so a benchmark
    can enumerate fixed start/goal pairs. Pure and traceable: wrap in `jax.jit` to get one
    program for the whole batch.
    """

    def episode(key, i):
        k_env, k_pol = jax.random.split(key)
        s0 = env.reset(k_env) if reset is None else reset(k_env, i)

        def body(carry, _):
            state, agent = carry
            agent, action = policy.step(agent, state)
            state = env.step(state, action)
            return (state, agent), record(state, agent, action)

        _, recs = jax.lax.scan(body, (s0, policy.init(k_pol, s0)), None, length=steps)
        return s0, recs

    return jax.vmap(episode)(keys, jnp.arange(keys.shape[0]))


# -- flat MPC on the true maze dynamics --------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MPCConfig:
    """Horizon/iterations per control step and cost weights (distances in cells)."""

    horizon: int = 16
    iters: int = 4
    running: float = 1.0  # weight of the summed distance to the target
    terminal: float = 0.0  # extra weight on the last step's distance
    guard_weight: float = 20.0  # keep-out penalty weight
    guard_margin: float = 0.1  # keep-out safety margin, cells

    def __post_init__(self):
        if self.horizon < 1 or self.iters < 1:
            raise ValueError(f"horizon={self.horizon} and iters={self.iters} must be >= 1")


class MPCState(NamedTuple):
    plan: jax.Array  # [H, 2] warm start for the next control step
    key: jax.Array
    cost: jax.Array  # planned cost at the last control step
    n_evals: jax.Array  # cost evaluations at the last control step


def _speed_limit(task: Task) -> SpeedLimit | None:
    limits = [g for g in task.guardrails if isinstance(g, SpeedLimit)]
    return min(limits, key=lambda g: g.max_speed) if limits else None


def action_filter(task: Task) -> Callable[[jax.Array], jax.Array]:
    """Hard guardrails on actions: clip to [-1, 1], then project onto the speed limit."""
    limit, max_step = _speed_limit(task), task.env.config.max_step
    if limit is None:
        return lambda a: jnp.clip(a, -1.0, 1.0)
    return lambda a: costs.project_speed(a, limit, max_step)


def maze_cost(task: Task, pos: jax.Array, target: jax.Array,
              config: MPCConfig = MPCConfig()) -> Callable[[jax.Array], jax.Array]:
    """Planner cost through the true dynamics: distance to `target` + keep-out penalty.

    Speed limits are enforced by `action_filter` (inside the rollout and at execution).
    """
    chex.assert_shape(pos, (2,))
    filt = action_filter(task)
    keep_outs = [g for g in task.guardrails if isinstance(g, KeepOut)]
    term = costs.goal_distance(target, running=config.running, terminal=config.terminal)
    if keep_outs:
        term = costs.sum_costs(term, costs.penalty(costs.guardrails(keep_outs),
                                                   config.guard_weight, config.guard_margin))

    def cost(actions: jax.Array) -> jax.Array:
        actions = filt(actions)
        return term(costs.rollout(task.env.move, pos, actions), actions)

    return cost


def flat_mpc(task: Task, planner: Planner, config: MPCConfig = MPCConfig()) -> Policy:
    """Oracle flat MPC: plan from the true position every step, execute the first action,
    warm-start the next step with the shifted plan."""
    filt = action_filter(task)

    def init(key: jax.Array, state: State) -> MPCState:
        return MPCState(plan=jnp.zeros((config.horizon, task.env.action_size), jnp.float32),
                        key=key, cost=jnp.float32(jnp.inf), n_evals=jnp.int32(0))

    def step(agent: MPCState, state: State) -> tuple[MPCState, jax.Array]:
        key, k = jax.random.split(agent.key)
        cost_fn = maze_cost(task, state.env_state.pos, state.info["target"], config)
        plan, info = solve(planner, cost_fn, agent.plan, k, config.iters)
        agent = MPCState(plan=shift(plan), key=key, cost=info["cost"], n_evals=info["n_evals"])
        return agent, filt(plan[0])

    return Policy(init=init, step=step)


def maze_record(state: State, agent: Any, action: jax.Array) -> dict[str, Any]:
    """`default_record` plus the position and, for MPC agents, planner statistics."""
    rec = {**default_record(state, agent, action), "pos": state.env_state.pos}
    if isinstance(agent, MPCState):
        rec.update(plan_cost=agent.cost, n_evals=agent.n_evals)
    return rec


def make_evaluate(task: Task, policy: Policy, steps: int | None = None,
                  record: Record | None = None, extra: tuple[str, ...] = ("n_evals",),
                  reset: Callable[[jax.Array, jax.Array], State] | None = None
                  ) -> Callable[[jax.Array], dict[str, jax.Array]]:
    """A pure `evaluate(keys [N]) -> per-episode metrics`; jit it for one program.

    Metrics: `success` (reached the final target at any step), `steps_to_goal` (-1 if
    never), `violations` / `violation_amount` of the task's guardrails along the executed
    trajectory, `positions` [N, T+1, 2], `actions` [N, T, 2], `n_evals` per control step.
    """
    steps = steps or task.episode_length
    guard = costs.guardrails(task.guardrails, max_step=task.env.config.max_step)

    def evaluate(keys: jax.Array) -> dict[str, jax.Array]:
        s0, rec = run_episodes(task.env, policy, keys, steps, record or maze_record, reset)
        done = rec["success"] > 0
        success = jnp.any(done, axis=1)
        first = jnp.argmax(done, axis=1) + 1
        pos = jnp.concatenate([s0.env_state.pos[:, None], rec["pos"]], axis=1)
        viol = jax.vmap(lambda xs, a: costs.violations(guard, xs, a))(pos, rec["action"])
        out = {"success": success, "steps_to_goal": jnp.where(success, first, -1),
               "violations": viol["count"], "violation_amount": viol["amount"],
               "positions": pos, "actions": rec["action"],
               "goal": s0.env_state.targets[:, -1], "targets": s0.env_state.targets}
        out.update({k: rec[k] for k in extra if k in rec})
        return out

    return evaluate


def evaluate(task: Task, policy: Policy, key: jax.Array, episodes: int,
             steps: int | None = None) -> dict[str, jax.Array]:
    """Jit-compile and run `episodes` episodes as one program."""
    return jax.jit(make_evaluate(task, policy, steps))(jax.random.split(key, episodes))
