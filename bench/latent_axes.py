"""Does the level-0 latent move alike along every axis of the maze? At the centre of each
free cell, the latent move of a quarter-cell step either way along rows and along
columns; the ratio of the shorter to the longer. Near 0: one axis is squashed, and a step
along it moves the latent less than the model's own error (door-closes' east room before
`[stack.train] step_floor_weight`), so the planner cannot tell that step from standing
still. Point-maze tasks only (it places the agent by position).

Run: .venv/bin/python bench/latent_axes.py --task door-closes --seeds 0,1,2
     [--override '{"train": {"step_floor_weight": 0.0}}'] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np

from bench.common import overridden, table, write
from hplan import tasks
from hplan.train import pipeline


def axis_ratios(stack, env) -> np.ndarray:
    """Shorter over longer latent move, per free cell (row-major order)."""
    model = stack.model()
    enc = jax.jit(jax.vmap(lambda p: model.encode(env.observe(p))))
    cells = jnp.asarray(np.argwhere(~np.asarray(env.walls, bool)) + 0.5, jnp.float32)
    moves = []
    for axis in (0, 1):
        h = jnp.zeros(2).at[axis].set(0.25)
        moves.append(np.linalg.norm(np.asarray(enc(cells + h) - enc(cells - h)), axis=-1))
    return np.minimum(*moves) / np.maximum(np.maximum(*moves), 1e-9)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="door-closes")
    p.add_argument("--seeds", default="0,1,2", help="stack seeds (one stack each)")
    p.add_argument("--override", default="{}",
                   help="JSON merged over the task's [stack] table, e.g. "
                        "'{\"train\": {\"step_floor_weight\": 0.0}}'")
    p.add_argument("--cache", default="out/cache")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    task = tasks.load(a.task)
    env = task.env.unwrapped
    if not hasattr(env, "walls") or task.env.observation_size != 2:
        raise SystemExit(f"{a.task}: latent_axes needs a point-maze task with state "
                         "observations (it places the agent by position)")
    cfg = overridden(task, json.loads(a.override))
    rows, out = [], {"task": a.task, "override": json.loads(a.override), "stacks": {}}
    for seed in (int(s) for s in a.seeds.split(",")):
        st, _, where = pipeline.get_stack(task, a.cache, cfg=cfg, seed=seed, show=False)
        r = axis_ratios(st, env)
        stats = {"median": float(np.median(r)), "p10": float(np.percentile(r, 10)),
                 "share_under_0.2": float(np.mean(r < 0.2)), "cells": len(r),
                 "stack": str(where)}
        out["stacks"][str(seed)] = stats
        rows.append({"stack": seed, **{k: stats[k] for k in ("median", "p10",
                                                              "share_under_0.2")}})
    print(table(rows, ["stack", "median", "p10", "share_under_0.2"]))
    name = f"latent_axes_{a.task}" + ("_override" if json.loads(a.override) else "")
    print(f"wrote {write(name, out, a.json)}")
    return out


if __name__ == "__main__":
    main()
