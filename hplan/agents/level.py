"""Levels of a hierarchy as pure pairs, composed like optax transforms.

A `Level` maps the current latent and its target (the goal, or the subgoal of the level
above) to a subgoal for the level below:

    init(key, z_goal) -> level_state
    step(level_state, key, z, target) -> (level_state, subgoal, info)

`info` holds the level's compute this step (`n_model`, `n_critic`: predictor and critic
calls) and `idx` (the bank index of its subgoal; -1: the target itself, -2: a predicted
latent). An `Actuator` is the level-0 controller. `chain(levels, actuator, encode)` turns
them into a `Policy`, top level first, as `optax.chain` turns transforms into one; with
no levels it is flat MPC. `hold(level, every)` re-selects only every `every` steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from hplan.core import Policy, State

LEVEL_KEYS = ("idx", "n_model", "n_critic")


class Level(NamedTuple):
    init: Callable[[jax.Array, jax.Array], Any]
    step: Callable[[Any, jax.Array, jax.Array, jax.Array], tuple[Any, jax.Array, dict]]


def level_info(idx=-1, n_model=0, n_critic=0) -> dict[str, jax.Array]:
    return {"idx": jnp.int32(idx), "n_model": jnp.int32(n_model),
            "n_critic": jnp.int32(n_critic)}


class HoldState(NamedTuple):
    inner: Any
    subgoal: jax.Array
    idx: jax.Array
    since: jax.Array


def hold(level: Level, every: int) -> Level:
    """`level` re-selects every `every` steps and hands down its last subgoal between.

    The schedule depends on the step counter alone, which stays unbatched under `vmap`
    over episodes, so `lax.cond` really skips the level between selections. A held
    subgoal that is the target itself (`idx == -1`) follows the target (staged goals)."""
    if not (isinstance(every, int) and every >= 1):
        raise ValueError(f"every={every!r}. Fix: use a positive integer")

    def init(key, z_goal):
        return HoldState(level.init(key, z_goal), z_goal, jnp.int32(-1), jnp.int32(every))

    def step(state: HoldState, key, z, target):
        def fresh():
            inner, sub, info = level.step(state.inner, key, z, target)
            return HoldState(inner, sub, info["idx"], jnp.int32(1)), \
                (info["n_model"], info["n_critic"])

        def keep():
            return state._replace(since=state.since + 1), (jnp.int32(0), jnp.int32(0))

        new, (n_model, n_critic) = jax.lax.cond(state.since >= every, fresh, keep)
        sub = jnp.where(new.idx == -1, target, new.subgoal)
        return new, sub, level_info(new.idx, n_model, n_critic)

    return Level(init, step)


class Actuator(NamedTuple):
    """The level-0 controller: `init(key) -> state`,
    `act(state, key, z, subgoal) -> (state, action, info)` (`cost`, `n_evals`, `n_model`,
    `n_critic`)."""

    init: Callable[[jax.Array], Any]
    act: Callable[[Any, jax.Array, jax.Array, jax.Array], tuple[Any, jax.Array, dict]]


class ChainState(NamedTuple):
    levels: tuple
    actuator: Any
    key: jax.Array


def chain(levels: Sequence[Level], actuator: Actuator,
          encode: Callable[[State], tuple[jax.Array, jax.Array]]) -> Policy:
    """A `Policy`: each level refines the target of the one above, top first; the actuator
    acts towards the last subgoal. `encode(state) -> (z, z_goal)`.

    Per-step `info`: `subgoal` (what the actuator aimed at), `subgoal_idx` (the lowest
    level's index), `top_idx` (the top level's), `cost`, and the compute of the whole
    step summed over levels: `n_evals` (planner cost evaluations), `n_model`,
    `n_critic`; `cut`: a level cut its graph this step."""
    levels = tuple(levels)

    def init(key: jax.Array, state: State) -> ChainState:
        _, zg = encode(state)
        # The actuator's randomness does not depend on how many levels sit above it.
        key, k_act, k_lv = jax.random.split(key, 3)
        ks = jax.random.split(k_lv, max(len(levels), 1))
        return ChainState(levels=tuple(lv.init(k, zg) for lv, k in zip(levels, ks, strict=False)),
                          actuator=actuator.init(k_act), key=key)

    def step(s: ChainState, state: State):
        key, k_act, k_lv = jax.random.split(s.key, 3)
        ks = jax.random.split(k_lv, max(len(levels), 1))
        z, target = encode(state)
        new_levels, idx, n_model, n_critic = [], [], jnp.int32(0), jnp.int32(0)
        cut = jnp.bool_(False)
        for lv, ls, k in zip(levels, s.levels, ks, strict=False):
            ls, target, info = lv.step(ls, k, z, target)
            new_levels.append(ls)
            idx.append(info["idx"])
            n_model = n_model + info["n_model"]
            n_critic = n_critic + info["n_critic"]
            cut = cut | info.get("cut", jnp.bool_(False))
        act_state, action, a_info = actuator.act(s.actuator, k_act, z, target)
        idx = idx or [jnp.int32(-1)]
        info = {"subgoal": target, "subgoal_idx": idx[-1], "top_idx": idx[0],
                "cost": a_info["cost"], "n_evals": a_info["n_evals"],
                "n_model": a_info["n_model"] + n_model,
                "n_critic": a_info["n_critic"] + n_critic, "cut": cut}
        return ChainState(tuple(new_levels), act_state, key), action, info

    return Policy(init=init, step=step)
