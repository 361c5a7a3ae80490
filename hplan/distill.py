"""`hplan distill`: System 1 from the planner's own decisions, with DAgger rounds.

Round 0: the teacher agent runs `episodes` episodes (one jitted program); each step
records (latent, subgoal, the level-0 planner's plan). Round k >= 1: the student acts
inside the same levels, the teacher's planner labels every state it visits, and the data
aggregates (DAgger), so the student learns to recover from its own mistakes. After each
round the student is trained by regression on the plans' first `chunk` actions and
evaluated alone (`system1`) on one fixed set of episodes, the same every round.

OUT holds `policy.json` (shape, task, stack, per-round results), `params/` (the last
finished round's student, what agents load) and per round `roundK/data.npz` and orbax
checkpoints (`roundK/ckpt`); every file is written atomically, so a killed run resumes
where it stopped. It comes after evaluation in the data flow: it runs agents.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from hplan import agents as A
from hplan.agents import system1 as S1
from hplan.agents.actuator import action_filter
from hplan.agents.level import Actuator
from hplan.core import ConfigError
from hplan.eval.runner import evaluate
from hplan.train import loop


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    rounds: int = 3  # DAgger rounds after the teacher's own (round 0)
    episodes: int = 32  # episodes per round
    eval_episodes: int = 20  # the student alone, after each round (same episodes)
    steps: int = 2000  # regression updates per round
    batch: int = 512
    lr: float = 1e-3
    hidden: int = 256
    seed: int = 0
    chunk_updates: int = 250  # updates per jitted chunk (progress bar, checkpoint)

    def __post_init__(self):
        for key in ("episodes", "eval_episodes", "steps", "batch", "hidden",
                    "chunk_updates"):
            v = getattr(self, key)
            if not (isinstance(v, int) and v >= 1):
                raise ConfigError(key, f"{key}={v!r}", "use a positive integer")
        if not (isinstance(self.rounds, int) and self.rounds >= 0):
            raise ConfigError("rounds", f"rounds={self.rounds!r}", "use an integer >= 0")
        if self.steps % self.chunk_updates:
            raise ConfigError("steps", f"steps={self.steps} is not a multiple of "
                              f"chunk_updates={self.chunk_updates}",
                              f"use a multiple of {self.chunk_updates}")


def recording(actuator):
    """The actuator, with (latent, subgoal, its plan) put in `info["record"]`."""

    def act(state, key, z, subgoal, *seen):
        state, action, info = actuator.act(state, key, z, subgoal, *seen)
        return state, action, {**info, "record": {"z": z, "subgoal": subgoal,
                                                  "label": info["plan"]}}

    return Actuator(actuator.init, act, actuator.observe)


def run_round(task, agent_cfg, ctx, student: S1.Student | None, key, episodes: int,
              chunk: int) -> tuple[dict, dict]:
    """(data, summary) of one round: the teacher acts (student None) or the student acts
    and the teacher labels. Steps after an episode reached its goal are left out."""
    teacher = A.mpc(ctx, agent_cfg.actuator)
    if student is not None:
        teacher = S1.student_acts(teacher, student, action_filter(task.env))
    out = evaluate(task, A.build(agent_cfg, ctx, actuator=recording(teacher)), key, episodes)
    rec = jax.tree.map(np.asarray, out["info"]["record"])
    t = np.arange(rec["z"].shape[1])
    end = np.where(np.asarray(out["success"]), np.asarray(out["steps_to_goal"]), t.size)
    keep = t[None] < end[:, None]
    data = {"z": rec["z"][keep], "subgoal": rec["subgoal"][keep],
            "label": rec["label"][keep][:, :chunk]}
    return data, {"success": float(np.mean(out["success"])), "steps": int(keep.sum())}


def evaluate_student(task, agent_cfg, ctx, student, key, episodes: int) -> dict:
    """Success and mean steps of the student acting alone under the same levels."""
    out = evaluate(task, A.build(agent_cfg, ctx, actuator=S1.system1(ctx, student)), key,
                   episodes)
    ok = np.asarray(out["success"])
    steps = np.asarray(out["steps_to_goal"])
    return {"success": float(ok.mean()),
            "mean_steps": float(steps[ok].mean()) if ok.any() else float("nan")}


def _optimizer(cfg: DistillConfig):
    return optax.adam(cfg.lr)


def _state(params, cfg):
    return {"params": params, "opt": _optimizer(cfg).init(params), "step": jnp.int32(0)}


def train_round(graph, params, data: dict, cfg: DistillConfig, ckpt: Path | None,
                desc: str, show: bool = True):
    """`cfg.steps` regression updates from `params` on `data`; resumable from `ckpt`."""
    z, sub, label = (jnp.asarray(data[k], jnp.float32) for k in ("z", "subgoal", "label"))
    n = z.shape[0]
    chex.assert_rank([z, sub, label], [2, 2, 3])
    chex.assert_equal_shape([z, sub])
    chex.assert_equal_shape_prefix([z, label], 1)
    opt = _optimizer(cfg)

    def loss_fn(p, idx):
        pred = nnx.merge(graph, p)(z[idx], sub[idx])
        return jnp.mean((pred - label[idx]) ** 2)

    def chunk_fn(state):
        def body(s, _):
            k = jax.random.fold_in(jax.random.key(cfg.seed), s["step"])
            idx = jax.random.randint(k, (cfg.batch,), 0, n)
            loss, g = jax.value_and_grad(loss_fn)(s["params"], idx)
            upd, o = opt.update(g, s["opt"], s["params"])
            return {"params": optax.apply_updates(s["params"], upd), "opt": o,
                    "step": s["step"] + 1}, loss

        state, losses = jax.lax.scan(body, state, None, length=cfg.chunk_updates)
        return state, {"loss": jnp.mean(losses)}

    state, hist = loop.run(_state(params, cfg), chunk_fn, cfg.steps, cfg.chunk_updates,
                           ckpt, desc, show=show)
    return state["params"], hist


def _save_npz(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **data)
    tmp.replace(path)


def distill(task, agent_cfg, ctx, out: str | Path, cfg: DistillConfig = DistillConfig(),
            show: bool = True) -> dict:
    """Distil `agent_cfg`'s level-0 planner into a student (see the module docstring);
    returns the policy's metadata, with per-round results under `rounds_done`."""
    if agent_cfg.actuator_kind != "mpc":
        raise ValueError(f"agent {agent_cfg.name!r} has a {agent_cfg.actuator_kind!r} "
                         "actuator: only a learned-model planner (kind 'mpc') can teach. "
                         "Fix: pass an agent such as hier-2 or flat-mpc-critic")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shape = S1.PolicyShape(int(ctx.stack.wm_cfg.latent_dim), int(task.env.action_size),
                           agent_cfg.actuator.horizon, cfg.hidden)
    ident = S1.stack_id(task, ctx.stack)
    meta = {**ident, "teacher": agent_cfg.name, "shape": dataclasses.asdict(shape),
            "scale": float(ctx.scale), "config": dataclasses.asdict(cfg), "rounds_done": []}
    if (out / "policy.json").is_file():
        old = S1.read_meta(out)
        S1.check_match(old, task, ctx.stack, out)
        if old["teacher"] != agent_cfg.name or old["config"] != meta["config"]:
            raise ValueError(f"{out} holds a distillation of {old['teacher']!r} with "
                             f"{old['config']}; this run asks for {agent_cfg.name!r} with "
                             f"{meta['config']}. Nothing was deleted. Fix: pass another "
                             "--out, or the same settings to resume")
        meta["rounds_done"] = old["rounds_done"]
    S1.write_meta(out, meta)
    student = S1.new_student(shape, ctx.scale, cfg.seed)
    graph, params = nnx.split(student)
    eval_key = jax.random.key(cfg.seed + 10_000)  # the same episodes after every round
    data = None
    for k in range(cfg.rounds + 1):
        rdir = out / f"round{k}"
        rdir.mkdir(exist_ok=True)
        path = rdir / "data.npz"
        if path.is_file():
            new = dict(np.load(path))
        else:
            acting = None if k == 0 else nnx.merge(graph, params)
            new, summary = run_round(task, agent_cfg, ctx, acting,
                                     jax.random.fold_in(jax.random.key(cfg.seed), k),
                                     cfg.episodes, shape.chunk)
            new["acting_success"] = np.float32(summary["success"])
            _save_npz(path, new)
        data = {key: new[key] if data is None else np.concatenate([data[key], new[key]])
                for key in ("z", "subgoal", "label")}
        params, hist = train_round(graph, params, data, cfg, rdir / "ckpt",
                                   f"distill round {k}", show)
        S1.save_params(out, params)  # the policy agents load: the last finished round's
        if k < len(meta["rounds_done"]):
            continue
        ev = evaluate_student(task, agent_cfg, ctx, nnx.merge(graph, params), eval_key,
                              cfg.eval_episodes)
        meta["rounds_done"].append({"round": k, "data": int(data["z"].shape[0]),
                                    "acting_success": float(new["acting_success"]),
                                    "loss": hist[-1]["loss"] if hist else None,
                                    "student_success": ev["success"],
                                    "student_mean_steps": ev["mean_steps"]})
        S1.write_meta(out, meta)
    return meta
