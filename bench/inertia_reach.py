"""Where agents on a body with inertia lose time: short reaches and the pace of long ones.

Two sets of episodes on one trained stack:
- `short`: 8 start-goal pairs 3 cells apart along straight corridors of the large
  layout (no wall between), 60 steps: can level-0 MPC over the learned model accelerate,
  brake and stop on a goal at all?
- `long`: the task's own random pairs (>= 15 BFS cells apart), with the task's episode
  length, drawn with `--key` (the agent files were tuned on key 7; the hierarchy bench
  uses other keys).

Per agent: success, steps to the goal, and mean speed (cells per step over the whole
episode; full speed is `max_step`, 0.5 cells). Run:
.venv/bin/python bench/inertia_reach.py --task pointmaze-mjx-large --seed 0 \
    --agents flat-true,flat-mpc,flat-mpc-critic,hier-2-data,hier-2-data-inertia
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import numpy as np

from bench.common import table, write
from hplan import agents as A
from hplan import tasks
from hplan.eval import runner
from hplan.train import pipeline

# (start, goal) cells 3 apart along straight corridors of tasks/layouts/large.txt
SHORT_PAIRS = [[[1, 1], [1, 4]], [[1, 8], [1, 5]], [[3, 1], [3, 4]], [[11, 9], [11, 6]],
               [[1, 15], [4, 15]], [[7, 1], [10, 1]], [[3, 9], [3, 12]], [[9, 15], [6, 15]]]


def run(task, ctx, name: str, keys, steps: int) -> dict:
    pol = A.build(A.load_agent(name), ctx)
    out = jax.jit(runner.make_evaluate(task, pol, steps))(keys)
    pos, goal = np.asarray(out["positions"]), np.asarray(out["goal"])
    reached = np.asarray(out["steps_to_goal"])
    speed = np.linalg.norm(np.diff(pos, axis=1), axis=-1).mean(1)
    ok = reached > 0
    return {"success": float(ok.mean()),
            "median_steps_of_successes": float(np.median(reached[ok])) if ok.any() else None,
            "mean_speed_cells_per_step": float(speed.mean()),
            "min_distance_to_goal": np.linalg.norm(pos - goal[:, None], axis=-1).min(1)
            .round(2).tolist(),
            "steps_to_goal": reached.tolist()}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="pointmaze-mjx-large")
    p.add_argument("--seed", type=int, default=0, help="stack seed")
    p.add_argument("--agents", default="flat-true,flat-mpc,flat-mpc-critic,hier-2-data,"
                                       "hier-2-data-inertia")
    p.add_argument("--sets", default="short,long")
    p.add_argument("--episodes", type=int, default=16)
    p.add_argument("--key", type=int, default=7, help="key of the episodes")
    p.add_argument("--cache", default="out/cache")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    task = tasks.load(a.task)
    st, ds, _ = pipeline.get_stack(task, a.cache, seed=a.seed)
    keys = jax.random.split(jax.random.key(a.key), a.episodes)
    out = {"task": a.task, "seed": a.seed, "key": a.key, "episodes": a.episodes, "sets": {}}
    for which in a.sets.split(","):
        if which == "short":
            spec = task.spec
            t = tasks.build(dataclasses.replace(spec, env_args={
                **spec.env_args, "start_goal": "pairs", "pairs": SHORT_PAIRS}),
                base_dir=tasks.TASKS_DIR)
            steps = 60
        else:
            t, steps = task, task.episode_length
        ctx = A.Context(t, st, ds)
        rows = {n: run(t, ctx, n, keys, steps) for n in a.agents.split(",")}
        out["sets"][which] = rows
        print(f"\n== {a.task} stack {a.seed}, {which} ({a.episodes} episodes, {steps} steps)")
        print(table([{"agent": n, **{k: v for k, v in r.items() if not isinstance(v, list)}}
                     for n, r in rows.items()],
                    ["agent", "success", "median_steps_of_successes",
                     "mean_speed_cells_per_step"]))
    write(f"inertia_reach_{a.task}", out, a.json)
    return out


if __name__ == "__main__":
    main()
