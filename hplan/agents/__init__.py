"""Agents: a chain of levels over a level-0 actuator, built from an agent definition.

    policy, cfg = hplan.agents.make("hier-2", task, stack, data)

`agents/*.toml` (see `hplan.agents.config`) describe the chain; each level kind is one
file `hplan/agents/<kind>_level.py`; `Context` holds what they are built from.
"""

from __future__ import annotations

from pathlib import Path

from hplan.agents.actuator import MPCConfig, mpc
from hplan.agents.config import AgentConfig, LevelSpec, available, level_module, load_agent
from hplan.agents.context import Context
from hplan.agents.level import Actuator, Level, chain, hold
from hplan.core import Policy


def encoder(stack):
    """`encode(state) -> (z, z_goal)` for a chain: the observation and `info["goal_obs"]`."""

    def encode(state):
        model = stack.model()
        return model.encode(state.obs), model.encode(state.info["goal_obs"])

    return encode


def build(cfg: AgentConfig, ctx: Context, actuator: Actuator | None = None) -> Policy:
    """The policy an agent definition describes, built from `ctx` (`actuator`: one to use
    instead of the file's, under the same levels)."""
    if cfg.actuator_kind == "true-dynamics":
        from hplan.agents.true_dynamics import true_mpc

        return true_mpc(ctx.task, cfg.actuator)
    if actuator is None:
        actuator = make_actuator(cfg, ctx)
    levels = []
    for spec in cfg.levels:
        level = level_module(spec.kind).make(spec.config, ctx)
        levels.append(hold(level, spec.every) if spec.every > 1 else level)
    return chain(levels, actuator, encoder(ctx.stack), predictor(ctx), cfg.surprise,
                 ctx.scale)


def make_actuator(cfg: AgentConfig, ctx: Context) -> Actuator:
    """Level 0 of an agent file: learned-model MPC, or a distilled System 1 policy
    (`ctx.policy`: its directory) acting alone or warm-starting MPC."""
    if cfg.actuator_kind == "mpc":
        return mpc(ctx, cfg.actuator)
    from hplan.agents import system1 as S1

    if ctx.policy is None:
        raise ValueError(f"agent {cfg.name!r} acts with a distilled System 1 policy and "
                         "none was given. Fix: run `hplan distill --task T --agent A --out "
                         "DIR`, then pass --policy DIR")
    student = S1.load_student(ctx.policy, ctx.task, ctx.stack)
    if cfg.actuator_kind == "system1":
        return S1.system1(ctx, student)
    return S1.system1_mpc(ctx, cfg.actuator, student)


def predictor(ctx):
    """`predict(z, action)`: the level-0 model's next latent (the agent's expectation) for
    the action as executed (the actuator has already put it through the task's filter)."""

    def predict(z, action):
        return ctx.stack.model().step(0, z, action)

    return predict


def make(agent: str | Path | AgentConfig, task, stack, data=None,
         ctx: Context | None = None) -> tuple[Policy, AgentConfig]:
    """Policy from an agent name, file or config (its banks are encoded from `data`)."""
    cfg = agent if isinstance(agent, AgentConfig) else load_agent(agent)
    ctx = ctx or Context(task, stack, data)
    return build(cfg, ctx), cfg


__all__ = ["Actuator", "AgentConfig", "Context", "Level", "LevelSpec", "MPCConfig",
           "available", "build", "chain", "encoder", "hold", "load_agent", "make", "mpc"]
