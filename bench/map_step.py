"""Does a predictor that reads the map keep imagined rollouts out of walls, on maps it
never saw? Open-loop latent rollouts of k steps under recorded random actions, from
held-out episodes of the training maps and from episodes collected on unseen maps
(`--maps`), scored against the encoder's latent of the frame k steps on (in level-0
step units) and, where the stack has a position probe, against the true position (cells).

Compared: staying put, the stack's level-0 model, and `hplan.wm.map_step` (fitted on the
stack's training episodes, as an agent with `map_step = N` fits it, and kept beside the
stack; reading the frame where the rollout starts). Fresh episodes are collected on the
training maps too, so no episode scored was fitted. Pushes into a wall (the true position
moved under 0.05 cells under an action over half the speed limit) are scored apart: how
far each predictor moves them in one step, in step units.

Run: .venv/bin/python bench/map_step.py --task bench/tasks/diverse-mazes-split.toml --seed 0
     [--updates 3000] [--maps tasks/layouts/diverse-test] [--json OUT]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np

from bench.common import table, write
from hplan import data as data_lib
from hplan import tasks
from hplan.agents.context import Context
from hplan.cli import unseen_map_task
from hplan.train import pipeline

ROOT = Path(__file__).resolve().parents[1]
KS = (1, 4, 16, 32)


def scores(st, step_fn, ctx_fn, obs, z, acts, xy, unit, starts):
    """{k: (median latent error in step units, median position error in cells)} of
    open-loop rollouts from each episode's `starts`."""
    model = st.model()
    kmax = max(KS)

    def roll(o, z0, a):
        c = ctx_fn(o)

        def f(zz, aa):
            zz = step_fn(model, c, zz, aa)
            return zz, zz

        return jax.lax.scan(f, z0, a)[1]

    run = jax.jit(jax.vmap(roll))
    out = {}
    preds = []
    for s in starts:
        preds.append(np.asarray(run(jnp.asarray(obs[:, s]), jnp.asarray(z[:, s]),
                                    jnp.asarray(acts[:, s: s + kmax]))))
    for k in KS:
        lat, pos = [], []
        for s, p in zip(starts, preds, strict=True):
            lat.append(np.linalg.norm(p[:, k - 1] - z[:, s + k], axis=-1) / unit)
            if xy is not None and st.probe is not None:
                w, b = st.probe
                pos.append(np.linalg.norm(p[:, k - 1] @ w + b - xy[:, s + k], axis=-1))
        out[k] = (float(np.median(np.concatenate(lat))),
                  float(np.median(np.concatenate(pos))) if pos else None)
    return out


def blocked_moves(st, step_fn, ctx_fn, obs, z, acts, xy, unit) -> dict:
    """Median one-step predicted move (step units) of pushes into a wall and of free
    pushes (the true position moved over half the action's length)."""
    model = st.model()
    speed = np.linalg.norm(acts, axis=-1)
    moved = np.linalg.norm(xy[:, 1:] - xy[:, :-1], axis=-1)
    push = speed > 0.5 * speed.max()
    masks = {"blocked_move": push & (moved < 0.05),
             "free_move": push & (moved > 0.5 * np.median(moved[push]))}
    run = jax.jit(jax.vmap(lambda o, zz, aa: step_fn(model, ctx_fn(o), zz, aa)))
    out = {}
    for k, m in masks.items():
        e, t = np.nonzero(m)
        e, t = e[:4096], t[:4096]
        p = np.asarray(run(jnp.asarray(obs[e, t]), jnp.asarray(z[e, t]),
                           jnp.asarray(acts[e, t])))
        out[k] = float(np.median(np.linalg.norm(p - z[e, t], axis=-1))) / unit
        out[k.replace("move", "true")] = float(np.median(
            np.linalg.norm(z[e, t + 1] - z[e, t], axis=-1))) / unit
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="bench/tasks/diverse-mazes-split.toml")
    p.add_argument("--seed", type=int, default=0, help="stack seed")
    p.add_argument("--updates", type=int, default=3000)
    p.add_argument("--horizon", type=int, default=1, help="the map step's fitting rollout")
    p.add_argument("--locate", default="attention", choices=("attention", "difference"),
                   help="how the map step's teacher finds the agent")
    p.add_argument("--maps", default=str(ROOT / "tasks/layouts/diverse-test"))
    p.add_argument("--unseen-episodes", type=int, default=256)
    p.add_argument("--cache", default="out/cache")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    task = tasks.load(a.task)
    st, ds, where = pipeline.get_stack(task, a.cache, seed=a.seed, show=False)
    obs, acts = np.asarray(ds.obs), np.asarray(ds.actions, np.float32)
    if obs.ndim != 5:
        raise SystemExit(f"{a.task}: the map step reads image observations; this task's "
                         "observations are not images")
    z = st.encode(obs)
    unit = float(np.sqrt(np.mean(np.sum((z[:, 1:] - z[:, :-1]) ** 2, -1))))
    t0 = time.perf_counter()
    ms = Context(task, st, ds).frame_step(a.updates, kind="map", horizon=a.horizon,
                                          locate=a.locate)
    fit_s = time.perf_counter() - t0
    sets = {}
    for name, t in (("seen maps, fresh episodes", task),
                    ("unseen maps", unseen_map_task(task, a.maps) if a.maps else None)):
        if t is None:
            continue
        fd = data_lib.collect(t, jax.random.key(10_000 + a.seed), a.unseen_episodes,
                              acts.shape[1], ds.meta.get("policy", "mixed"))
        fo = np.asarray(fd.obs)
        sets[name] = (fo, st.encode(fo), np.asarray(fd.actions, np.float32), fd.xy)
    predictors = {
        "stay": (lambda m, c, zz, aa: zz, lambda o: 0.0),
        "level-0 model": (lambda m, c, zz, aa: m.step(0, zz, aa), lambda o: 0.0),
        "map step": (lambda m, c, zz, aa: ms.step(c, zz, aa), ms.context),
    }
    starts = list(range(0, acts.shape[1] - max(KS), 24))
    rows, res = [], {}
    for name, (o, zz, aa, xy) in sets.items():
        for pname, (fn, cfn) in predictors.items():
            sc = scores(st, fn, cfn, o, zz, aa, xy, unit, starts)
            res[f"{name}/{pname}"] = sc
            row = {"episodes": name, "predictor": pname}
            for k, (lat, pos) in sc.items():
                row[f"latent@{k}"] = lat
                if pos is not None:
                    row[f"cells@{k}"] = pos
            if xy is not None:
                row.update(blocked_moves(st, fn, cfn, o, zz, aa, xy, unit))
            rows.append(row)
    cols = ["episodes", "predictor"] + [f"latent@{k}" for k in KS] + (
        [f"cells@{k}" for k in KS] if "cells@1" in rows[0] else []) + (
        ["blocked_move", "free_move"] if "blocked_move" in rows[0] else [])
    print(f"{a.task} stack {a.seed}: open-loop rollout error, median (latent: step units)")
    print(table(rows, cols))
    out = {"task": a.task, "seed": a.seed, "updates": a.updates, "horizon": a.horizon,
           "locate": a.locate, "fit_s": fit_s, "stack": str(where), "maps": a.maps, "rows": rows}
    print(f"wrote {write('map_step_' + task.name, out, a.json)}")
    return out


if __name__ == "__main__":
    main()
