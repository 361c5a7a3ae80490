"""Why the gait-driven ant is slow in a maze: walls. For one agent on a gait task, per
step: the command's size, its turn from the last one, and the speed the torso makes along
it as a share of the commanded speed, binned by the torso's distance to the nearest wall;
the same distance for the subgoals the agent is handed (read with the stack's probe).
Then whether the level-0 model knows walls slow the ant: the latent displacement it
predicts for every bank state under data actions held a few steps, ranked against that
state's wall distance (Spearman).

Run: .venv/bin/python bench/ant_walls.py --task antmaze-medium-gait --seed 0 --key 7
     [--episodes 10] [--agent hier-2-data-inertia] [--json OUT] [--no-model]
Key 7 is a tuning key, not one of the benchmark's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np

from bench.common import table, write
from hplan import agents as A
from hplan import tasks
from hplan.eval import compare, runner
from hplan.train import pipeline

BINS = [(0.0, 0.15), (0.15, 0.25), (0.25, 0.4), (0.4, 9.0)]


def wall_distance(walls: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Distance (cells) from each (row, col) in `p` [..., 2] to the nearest wall cell."""
    wc = np.argwhere(walls)
    flat = p.reshape(-1, 1, 2)
    gap = np.maximum(np.maximum(wc[None] - flat, flat - (wc[None] + 1)), 0)
    return np.sqrt((gap ** 2).sum(-1)).min(1).reshape(p.shape[:-1])


def command_share(env, pos: np.ndarray, act: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per step of `act` [..., T, 2] (positions `pos` [..., T + 1, 2]): the command's size,
    and the torso's move along the command as a share of the commanded move."""
    mag = np.linalg.norm(act, axis=-1)
    world = np.asarray(env.to_world(pos)) / env.cell_size
    along = ((world[..., 1:, :] - world[..., :-1, :]) * act).sum(-1) / np.maximum(mag, 1e-6)
    return mag, along / np.maximum(mag * env.max_step, 1e-6)


def trace(task, stack, data, agent: str, key: int, n: int) -> dict:
    env = task.env.unwrapped
    policy = compare.build_agents(task, [agent], stack, data)[agent]
    out = jax.device_get(jax.jit(runner.make_evaluate(task, policy))(
        jax.random.split(jax.random.key(key), n)))
    pos, act, ok = np.asarray(out["positions"]), np.asarray(out["actions"]), out["success"]
    steps = act.shape[1]
    live = np.arange(steps)[None] < np.where(ok, out["steps_to_goal"], steps)[:, None]
    mag, share = command_share(env, pos, act)
    cos = (act[:, 1:] * act[:, :-1]).sum(-1) / np.maximum(mag[:, 1:] * mag[:, :-1], 1e-6)
    turn = np.degrees(np.arccos(np.clip(cos, -1, 1)))[live[:, 1:]]
    wd = wall_distance(env.layout.walls, pos[:, :-1])
    w, b = stack.probe
    sub_xy = np.asarray(out["info"]["subgoal"]) @ w + b
    sub = wall_distance(env.layout.walls, sub_xy)
    stops = stopped(pos, sub_xy, live)
    rows = [{"torso to wall (cells)": f"{lo:.2f}-{hi:.2f}" if hi < 9 else f">{lo:.2f}",
             "share of steps": float((live & (wd >= lo) & (wd < hi)).sum() / live.sum()),
             "speed along / commanded": float(np.median(share[live & (wd >= lo) & (wd < hi)]))}
            for lo, hi in BINS]
    return {"agent": agent, "key": key, "episodes": n, "success": float(ok.mean()),
            "command_size_median": float(np.median(mag[live])),
            "turn_deg_median": float(np.median(turn)),
            "speed_along_over_commanded_median": float(np.median(share[live])),
            "by_wall_distance": rows,
            "subgoal_wall_distance_median": float(np.median(sub[live])),
            "subgoals_within_0.25": float((sub[live] < 0.25).mean()),
            "torso_within_0.25": float((wd[live] < 0.25).mean()),
            "stops": stops}


def stopped(pos: np.ndarray, sub_xy: np.ndarray, live: np.ndarray, slow: float = 0.03,
            near: float = 0.2) -> dict:
    """Steps the torso moved under `slow` cells before the goal: how many, in how many of
    them the subgoal stayed where it was the step before, in how many the torso was within
    `near` cells of it, and each episode's longest run of such steps (the time a stall
    costs before the graph level changes the subgoal)."""
    speed = np.linalg.norm(np.diff(pos, axis=1), axis=-1)
    stop = (speed < slow) & live
    held = np.concatenate([np.zeros_like(stop[:, :1]), np.linalg.norm(
        np.diff(sub_xy, axis=1), axis=-1) < 1e-3], 1)
    at = np.linalg.norm(pos[:, :live.shape[1]] - sub_xy, axis=-1) < near
    runs = []
    for row in stop:
        edges = np.diff(np.concatenate([[0], row.astype(int), [0]]))
        runs.append(int(max((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)),
                            default=0)))
    return {"live_steps": int(live.sum()), "stopped": int(stop.sum()),
            "stopped_subgoal_held": int((stop & held).sum()),
            "stopped_at_subgoal": int((stop & at).sum()),
            "longest_stop_per_episode": runs}


def model_knows_walls(task, stack, data, actions: int = 16, holds=(4, 8)) -> list[dict]:
    from scipy.stats import spearmanr

    ctx = A.Context(task, stack, data)
    idx, bank = ctx.bank(4096)
    xy = data.xy.reshape(-1, data.xy.shape[-1])[idx]
    wd = wall_distance(task.env.unwrapped.layout.walls, xy)
    model = stack.model()
    pool = data.actions.reshape(-1, data.actions.shape[-1])
    acts = jnp.asarray(pool[np.random.default_rng(0).choice(len(pool), actions)])
    rows = []
    for h in holds:
        seq = jnp.repeat(acts[:, None], h, 1)
        end = jax.jit(jax.vmap(lambda z0, seq=seq: jax.vmap(
            lambda a: model.rollout(0, z0, a)[-1])(seq)))(bank)
        moved = np.linalg.norm(np.asarray(end) - np.asarray(bank)[:, None], axis=-1)
        rows.append({"held steps": h, "data actions": actions,
                     "spearman(mean predicted move, wall dist)":
                         float(spearmanr(moved.mean(1), wd)[0]),
                     "spearman(20th pct move, wall dist)":
                         float(spearmanr(np.quantile(moved, 0.2, axis=1), wd)[0])})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="antmaze-medium-gait")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--key", type=int, default=7)
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--agent", default="hier-2-data-inertia")
    p.add_argument("--cache", default="out/cache")
    p.add_argument("--json", default=None)
    p.add_argument("--no-model", action="store_true",
                   help="skip the level-0 model's wall check (the trace only)")
    args = p.parse_args()
    task = tasks.load(args.task)
    if getattr(task.env.unwrapped, "gait", None) is None:
        sys.exit(f"{args.task} has no gait: this bench needs a gait-driven ant task "
                 "(e.g. antmaze-medium-gait)")
    stack, data, _ = pipeline.get_stack(task, args.cache, seed=args.seed)
    t = trace(task, stack, data, args.agent, args.key, args.episodes)
    print(f"{args.agent}, {args.episodes} episodes (key {args.key}): success {t['success']:.2f}, "
          f"command size {t['command_size_median']:.2f}, turn {t['turn_deg_median']:.0f} deg, "
          f"speed along / commanded {t['speed_along_over_commanded_median']:.2f}")
    print(table(t["by_wall_distance"], list(t["by_wall_distance"][0])))
    print(f"subgoals: median {t['subgoal_wall_distance_median']:.2f} cells from a wall, "
          f"{t['subgoals_within_0.25']:.2f} within 0.25 (torso {t['torso_within_0.25']:.2f})")
    st = t["stops"]
    print(f"stopped (< 0.03 cells a step, before the goal): {st['stopped']} of "
          f"{st['live_steps']} steps; subgoal held {st['stopped_subgoal_held']}, torso on it "
          f"{st['stopped_at_subgoal']}; longest stop per episode "
          f"{st['longest_stop_per_episode']}")
    m = None if args.no_model else model_knows_walls(task, stack, data)
    if m:
        print(table(m, list(m[0])))
    out = write(f"ant_walls_{task.name}_s{args.seed}",
                {"task": args.task, "seed": args.seed, "trace": t, "model": m}, args.json)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
