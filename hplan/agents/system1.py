"""System 1: a goal-conditioned policy distilled from the level-0 planner's decisions.

`pi(z, subgoal) -> action chunk [C, A]`: an MLP on the latent and the subgoal's offset
from it (in base steps), trained by `hplan.distill` to regress the planner's
plans. Two actuators use it, below any levels:

- `system1`: the policy acts; no planning (one forward pass per step);
- `system1+mpc`: its chunk is the planner's warm start, so the planner may run fewer
  iterations and restarts (set in the agent file).

A distilled policy lives in a directory (`hplan distill --out DIR`) with `policy.json`
(its shape and the task and stack it was distilled on) and an orbax checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from flax import nnx

from hplan.agents.actuator import MPCConfig, action_filter, mpc
from hplan.agents.level import Actuator
from hplan.wm.models import MLP


@dataclasses.dataclass(frozen=True)
class PolicyShape:
    latent_dim: int
    action_dim: int
    chunk: int = 8  # actions per call (the planner's horizon: a full warm start)
    hidden: int = 256


class Student(nnx.Module):
    """`pi(z, subgoal) -> [chunk, A]` in the action box (tanh)."""

    def __init__(self, shape: PolicyShape, scale: float, rngs: nnx.Rngs):
        self.shape = shape
        self.scale = scale  # latent size of one base step: offsets enter in steps
        self.net = MLP([2 * shape.latent_dim, shape.hidden, shape.hidden,
                        shape.chunk * shape.action_dim], rngs)

    def __call__(self, z: jax.Array, subgoal: jax.Array) -> jax.Array:
        x = jnp.concatenate([z, (subgoal - z) / self.scale], -1)
        out = jnp.tanh(self.net(x))
        return out.reshape(*out.shape[:-1], self.shape.chunk, self.shape.action_dim)


def new_student(shape: PolicyShape, scale: float, seed: int = 0) -> Student:
    return Student(shape, scale, nnx.Rngs(seed))


# -- where a distilled policy lives ------------------------------------------------------
def stack_id(task, stack) -> dict:
    """What a policy must match to act on top of `stack` for `task`."""
    return {"task": task.name, "task_key": task.key(), "latent_dim": stack.wm_cfg.latent_dim,
            "action_dim": int(task.env.action_size)}


def write_meta(out: Path, meta: dict) -> None:
    tmp = out / "policy.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    tmp.replace(out / "policy.json")  # atomic


def read_meta(out: Path) -> dict:
    path = Path(out) / "policy.json"
    if not path.is_file():
        raise ValueError(f"{out}: no distilled policy (policy.json missing). Fix: run "
                         "`hplan distill --task T --agent A --out DIR` and pass that DIR")
    return json.loads(path.read_text())


def check_match(meta: dict, task, stack, where) -> None:
    """Refuse a policy distilled on another task or stack, before any compute."""
    want = stack_id(task, stack)
    for key, value in want.items():
        if meta.get(key) != value:
            raise ValueError(
                f"{where}: this policy was distilled for {key}={meta.get(key)!r}, and the "
                f"agent runs on {key}={value!r} (task {task.name!r}). Fix: distill it for "
                f"this task (`hplan distill --task {task.name} ...`) or pass the policy "
                "distilled for it")


def save_params(out: Path, params) -> None:
    """The student's parameters as `out/params` (orbax: written aside, then renamed)."""
    ckpt = ocp.StandardCheckpointer()
    ckpt.save((Path(out) / "params").resolve(), params, force=True)
    ckpt.wait_until_finished()


def load_student(out: str | Path, task, stack) -> Student:
    """The student saved in `out` (`hplan.distill`), checked against task and stack."""
    out = Path(out)
    meta = read_meta(out)
    check_match(meta, task, stack, out)
    if not (out / "params").is_dir():
        raise ValueError(f"{out}: no finished distillation round. Fix: finish `hplan "
                         "distill` (re-running it resumes)")
    student = new_student(PolicyShape(**meta["shape"]), meta["scale"])
    graph, params = nnx.split(student)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, params)
    params = ocp.StandardCheckpointer().restore((out / "params").resolve(), abstract)
    return nnx.merge(graph, params)


# -- actuators -------------------------------------------------------------------------
def system1(ctx, student: Student) -> Actuator:
    """The policy acts: the first action of its chunk; no model calls."""
    filt = action_filter(ctx.task.env)
    graph, params = nnx.split(student)

    def init(key):
        del key
        return jnp.zeros(())

    def act(state, key, z, subgoal):
        del key
        chunk = nnx.merge(graph, params)(z, subgoal)
        zero = jnp.int32(0)
        return state, filt(chunk[0]), {"cost": jnp.float32(0), "n_evals": zero,
                                       "n_model": zero, "n_critic": zero,
                                       "plan": filt(chunk)}

    return Actuator(init, act)


def system1_mpc(ctx, cfg: MPCConfig, student: Student) -> Actuator:
    """Level-0 MPC (`actuator.mpc`, cfg: usually fewer iters/restarts) warm-started by the
    policy's chunk instead of its own shifted plan."""
    if student.shape.chunk != cfg.horizon:
        raise ValueError(f"the policy's chunk is {student.shape.chunk} actions and the "
                         f"planner's horizon {cfg.horizon}. Fix: set horizon = "
                         f"{student.shape.chunk} in [actuator], or distill from a teacher "
                         f"whose horizon is {cfg.horizon}")
    inner = mpc(ctx, cfg)
    graph, params = nnx.split(student)

    def act(state, key, z, subgoal, *seen):
        warm = nnx.merge(graph, params)(z, subgoal)
        return inner.act(state._replace(plan=warm), key, z, subgoal, *seen)

    return Actuator(inner.init, act, inner.observe)


def student_acts(teacher: Actuator, student: Student, filt) -> Actuator:
    """DAgger: the student's action is executed; the teacher plans at the same state, and
    its plan (`info["plan"]`) is the label."""
    graph, params = nnx.split(student)

    def act(state, key, z, subgoal, *seen):
        state, _, info = teacher.act(state, key, z, subgoal, *seen)
        return state, filt(nnx.merge(graph, params)(z, subgoal)[0]), info

    return Actuator(teacher.init, act, teacher.observe)
