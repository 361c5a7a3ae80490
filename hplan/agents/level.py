"""Levels of a hierarchy as pure pairs, composed like optax transforms.

A `Level` maps the current latent and its target (the goal, or the subgoal of the level
above) to a subgoal for the level below:

    init(key, z_goal) -> level_state
    step(level_state, key, z, target) -> (level_state, subgoal, info)

`info` holds the level's compute this step (`n_model`, `n_critic`: predictor and critic
calls) and `idx` (the bank index of its subgoal; -1: the target itself, -2: a predicted
latent). An `Actuator` is the level-0 controller. `chain(levels, actuator, encode)` turns
them into a `Policy`, top level first, as `optax.chain` turns transforms into one; with
no levels it is flat MPC. `hold(level, every)` re-selects only every `every` steps. A level
may have a `surprised(level_state) -> level_state` hook: what it does when the world
turned out not to be what the model predicted (see `hplan.agents.surprise`), and a
`locate(state) -> where` hook: what it reads from the observation besides the latent
(a graph level localises the agent on its bank by it), passed to `step` after `target`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from hplan.agents import surprise as S
from hplan.core import Policy, State

LEVEL_KEYS = ("idx", "n_model", "n_critic")


class Level(NamedTuple):
    init: Callable[[jax.Array, jax.Array], Any]
    step: Callable[..., tuple[Any, jax.Array, dict]]
    surprised: Callable[[Any], Any] | None = None
    # `locate(state) -> where`: what the level reads from the observation besides its
    # latent; when set, `step` takes it as a fifth argument
    locate: Callable[[State], jax.Array] | None = None


def level_info(idx=-1, n_model=0, n_critic=0) -> dict[str, jax.Array]:
    return {"idx": jnp.int32(idx), "n_model": jnp.int32(n_model),
            "n_critic": jnp.int32(n_critic)}


def once(pred: jax.Array, fn: Callable, carry, *args):
    """`fn(carry, *args)` where `pred`, else `carry`. A while loop, not a cond: under `vmap`
    it runs only on the steps where some episode needs it. `args` (arrays) reach `fn`
    through the loop's flag: work on inputs the loop leaves unchanged is loop-invariant,
    and XLA hoisted it out of the loop to run at every step (the imagine level's graph
    build: 10.4 s an episode instead of 1.4)."""

    def body(c):
        go, x = c
        return jnp.bool_(False), fn(x, *(jnp.where(go, a, jnp.zeros_like(a)) for a in args))

    return jax.lax.while_loop(lambda c: c[0], body, (pred, carry))[1]


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

    def step(state: HoldState, key, z, target, *where):
        def fresh():
            inner, sub, info = level.step(state.inner, key, z, target, *where)
            return HoldState(inner, sub, info["idx"], jnp.int32(1)), \
                (info["n_model"], info["n_critic"])

        def keep():
            return state._replace(since=state.since + 1), (jnp.int32(0), jnp.int32(0))

        new, (n_model, n_critic) = jax.lax.cond(state.since >= every, fresh, keep)
        sub = jnp.where(new.idx == -1, target, new.subgoal)
        return new, sub, level_info(new.idx, n_model, n_critic)

    def surprised(state: HoldState) -> HoldState:
        inner = level.surprised(state.inner) if level.surprised else state.inner
        return state._replace(inner=inner, since=jnp.int32(every))  # re-select now

    return Level(init, step, surprised, level.locate)


class Actuator(NamedTuple):
    """The level-0 controller: `init(key) -> state`,
    `act(state, key, z, subgoal) -> (state, action, info)` (`cost`, `n_evals`, `n_model`,
    `n_critic`, `plan`: the actions it planned from here; an optional `record` is passed
    on to the chain's per-step info, e.g. for distillation)."""

    init: Callable[[jax.Array], Any]
    act: Callable[..., tuple[Any, jax.Array, dict]]
    # `observe(state) -> obs`: what the actuator reads besides the latent, passed to `act`
    # as a fifth argument (e.g. the frame, `MPCConfig.frame_step`); None: nothing.
    observe: Callable[[State], jax.Array] | None = None


class ChainState(NamedTuple):
    levels: tuple
    actuator: Any
    key: jax.Array
    surprise: S.SurpriseState


def chain(levels: Sequence[Level], actuator: Actuator,
          encode: Callable[[State], tuple[jax.Array, jax.Array]],
          predict: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
          surprise: S.SurpriseConfig = S.SurpriseConfig(), scale: float = 1.0) -> Policy:
    """A `Policy`: each level refines the target of the one above, top first; the actuator
    acts towards the last subgoal. `encode(state) -> (z, z_goal)`; `predict(z, action)`:
    the level-0 model's next latent, whose error (in base steps of latent size `scale`) is
    the agent's surprise.

    Per-step `info`: `subgoal` (what the actuator aimed at), `subgoal_idx` (the lowest
    level's index), `top_idx` (the top level's), `cost`, and the compute of the whole
    step summed over levels: `n_evals` (planner cost evaluations), `n_model`,
    `n_critic`; `cut`: a level cut its graph this step; `pred_error` (and `pred_move`,
    the length of the step that was predicted, both in base steps) and `surprise` (a
    spike this step; with `surprise.react` every level re-planned); with a graph level,
    `graph_node` (the bank state the lowest one localised the agent on) and `graph_togo`
    (its graph distance to the target from the agent, base steps)."""
    levels = tuple(levels)

    def init(key: jax.Array, state: State) -> ChainState:
        z, zg = encode(state)
        # The actuator's randomness does not depend on how many levels sit above it.
        key, k_act, k_lv = jax.random.split(key, 3)
        ks = jax.random.split(k_lv, max(len(levels), 1))
        return ChainState(levels=tuple(lv.init(k, zg) for lv, k in zip(levels, ks, strict=False)),
                          actuator=actuator.init(k_act), key=key, surprise=S.init(z))

    def step(s: ChainState, state: State):
        key, k_act, k_lv = jax.random.split(s.key, 3)
        ks = jax.random.split(k_lv, max(len(levels), 1))
        z, target = encode(state)
        sur, spike = S.observe(surprise, s.surprise, z, scale)
        checked_move = sur.move  # the predicted step whose error `sur.error` is
        level_states, act_state = s.levels, s.actuator
        if predict is not None and surprise.react:
            sur, react = S.react(surprise, sur, spike)  # every level at once; the
            # actuator drops its warm start
            level_states = tuple(S.select(react, lv.surprised(ls), ls) if lv.surprised
                                 else ls for lv, ls in zip(levels, level_states, strict=True))
            act_state = S.select(react, actuator.init(k_act), act_state)
        new_levels, idx, n_model, n_critic = [], [], jnp.int32(0), jnp.int32(0)
        cut, graph_info = jnp.bool_(False), {}
        for lv, ls, k in zip(levels, level_states, ks, strict=False):
            where = () if lv.locate is None else (lv.locate(state),)
            ls, target, info = lv.step(ls, k, z, target, *where)
            new_levels.append(ls)
            idx.append(info["idx"])
            n_model = n_model + info["n_model"]
            n_critic = n_critic + info["n_critic"]
            cut = cut | info.get("cut", jnp.bool_(False))
            graph_info.update({key: info[key] for key in ("node", "togo") if key in info})
        seen = () if actuator.observe is None else (actuator.observe(state),)
        act_state, action, a_info = actuator.act(act_state, k_act, z, target, *seen)
        if predict is not None:
            sur = S.predicted(sur, z, predict(z, action), scale)
        idx = idx or [jnp.int32(-1)]
        info = {"subgoal": target, "subgoal_idx": idx[-1], "top_idx": idx[0],
                "cost": a_info["cost"], "n_evals": a_info["n_evals"],
                "n_model": a_info["n_model"] + n_model + (predict is not None),
                "n_critic": a_info["n_critic"] + n_critic, "cut": cut,
                "pred_error": sur.error, "pred_move": checked_move,
                "surprise": spike & (predict is not None),
                **{f"graph_{key}": v for key, v in graph_info.items()}}
        if "record" in a_info:
            info["record"] = a_info["record"]
        return ChainState(tuple(new_levels), act_state, key, sur), action, info

    return Policy(init=init, step=step)
