"""Does the level-0 model know the wall of the map it sees? On a two-rooms family (the
wall at a different column on every map), the agent is put beside the dividing wall,
away from the door, and the level-0 model is rolled `--steps` steps pushing into the wall
at full speed. The stack's linear probe reads where the model thinks the agent went; the
true dynamics leave it where it is. Reported per stack: the share of rollouts the model
carries across the wall, and the median predicted move (cells) against the wall.

A planner over a model that walks through walls pushes into them (issue 16: two-rooms-
random stack 0, 92-97 % across before this bench existed).

Run: .venv/bin/python bench/wall_crossing.py --task two-rooms-random --seeds 0
     [--override JSON] [--steps 8] [--json OUT]
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

from bench.common import dividing_wall, family_env, overridden, table, write
from hplan import tasks
from hplan.train import pipeline


def starts(env) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(positions, contexts, push direction along columns, wall column) for every free cell
    next to a map's dividing wall (the inner column with the most wall cells)."""
    pos, ctx, push, wall = [], [], [], []
    for k, lay in enumerate(env.layouts):
        w = lay.walls
        col = dividing_wall(lay)
        for r in range(1, w.shape[0] - 1):
            if not w[r, col]:
                continue  # the door
            for c, d in ((col - 1, 1.0), (col + 1, -1.0)):
                if not w[r, c]:
                    pos.append((r + 0.5, c + 0.5))
                    ctx.append(k)
                    push.append(d)
                    wall.append(col)
    return (np.asarray(pos, np.float32), np.asarray(ctx), np.asarray(push, np.float32),
            np.asarray(wall))


def crossing(stack, env, steps: int) -> dict:
    pos, ctx, push, wall = starts(env)
    model = stack.model()
    w, b = stack.probe
    obs = jax.vmap(lambda p, k: env.observe(p, None, k))(jnp.asarray(pos), jnp.asarray(ctx))
    z0 = np.asarray(stack.encode(np.asarray(obs)))
    acts = np.zeros((len(pos), steps, 2), np.float32)
    acts[:, :, 1] = push[:, None]
    zs = jax.jit(jax.vmap(lambda z, a: model.rollout(0, z, a)))(jnp.asarray(z0),
                                                                  jnp.asarray(acts))
    start_col = z0 @ w[:, 1] + b[1]
    end_col = np.asarray(zs[:, -1]) @ w[:, 1] + b[1]
    moved = (end_col - start_col) * push  # towards the wall, in cells
    across = np.where(push > 0, end_col > wall + 1, end_col < wall)
    return {"rollouts": len(pos), "maps": int(len(np.unique(ctx))), "steps": steps,
            "share_across": float(across.mean()),
            "median_move_into_wall_cells": float(np.median(moved)),
            "probe_start_error_cells": float(np.median(np.abs(start_col - pos[:, 1])))}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="two-rooms-random")
    p.add_argument("--seeds", default="0", help="stack seeds (one stack each)")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--override", default="{}",
                   help="JSON merged over the task's [stack] table")
    p.add_argument("--cache", default="out/cache")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    task = tasks.load(a.task)
    env = family_env(task, "wall_crossing")
    cfg = overridden(task, json.loads(a.override))
    out = {"task": a.task, "override": json.loads(a.override), "stacks": {}}
    rows = []
    for seed in (int(s) for s in a.seeds.split(",")):
        st, _, where = pipeline.get_stack(task, a.cache, cfg=cfg, seed=seed, show=False)
        r = crossing(st, env, a.steps) | {"stack": str(where)}
        out["stacks"][str(seed)] = r
        rows.append({"stack": seed, **{k: r[k] for k in (
            "share_across", "median_move_into_wall_cells", "probe_start_error_cells",
            "rollouts")}})
    print(table(rows, ["stack", "share_across", "median_move_into_wall_cells",
                       "probe_start_error_cells", "rollouts"]))
    name = f"wall_crossing_{a.task}" + ("_override" if json.loads(a.override) else "")
    print(f"wrote {write(name, out, a.json)}")
    return out


if __name__ == "__main__":
    main()
