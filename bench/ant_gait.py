"""The ant's locomotion primitive: train it with brax's PPO, and measure how well it
follows velocity commands (on an open floor, and inside a maze where walls stop it).

Train (CPU cost printed and written with the curve):
  .venv/bin/python bench/ant_gait.py train [--timesteps 12000000] [--out tasks/gaits/ant.msgpack]
Writes the parameters after every evaluation (so a killed run keeps its last ones) and
bench/results/ant_gait_train_<cpu|gpu>.json.

Fine-tune a gait (`--init FILE`), with commands redrawn more often (`--switch-prob`) or
among walls (`--pillars 0.2`): bench/results/ant_gait_variants_cpu.json compares two such.

Follow commands (8 directions x 3 speeds and a zero command, 10 s each, from the centre of
an open 13 x 13-cell room, in the maze env the agents use):
  .venv/bin/python bench/ant_gait.py eval [--gait tasks/gaits/ant.msgpack]
Prints per speed the achieved speed along the command, the angle error and the flips,
then the speed under a new random command every 0.5 s, and beside a wall;
writes bench/results/ant_gait_eval_<cpu|gpu>.json and a PNG of the torso paths.
"""

from __future__ import annotations

import argparse
import time

if __package__ in (None, ""):  # run as a file: make the repository root importable
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import write
from hplan.envs.pointmaze import gait

DEFAULT_OUT = "tasks/gaits/ant.msgpack"


def cmd_train(args) -> None:
    config = gait.GaitConfig(timesteps=args.timesteps, num_envs=args.num_envs,
                             batch_size=args.batch_size, seed=args.seed,
                             switch_prob=args.switch_prob, init=args.init or "",
                             pillars=args.pillars, max_speed=args.max_speed)
    t0 = time.perf_counter()

    def progress(step, m):
        n = max(m.get("eval/avg_episode_length", 1.0), 1.0)
        print(f"{time.perf_counter() - t0:7.0f} s  {step:>10,d} steps  "
              f"reward/step {m.get('eval/episode_reward', 0) / n:6.2f}  "
              f"tracking error {m.get('eval/episode_tracking_error', 0) / n:5.2f} m/s  "
              f"speed {m.get('eval/episode_speed', 0) / n:4.2f} m/s  "
              f"episode {n:4.0f} steps", flush=True)

    _, log = gait.train(config, progress,
                        on_params=lambda step, p: gait.save(p, args.out, config))
    seconds = time.perf_counter() - t0
    write("ant_gait_train", {"config": config.__dict__, "seconds": seconds,
                             "steps_per_s": config.timesteps / seconds, "log": log,
                             "out": args.out}, out=args.json)
    print(f"{config.timesteps:,d} steps in {seconds:.0f} s "
          f"({config.timesteps / seconds:,.0f} steps/s); parameters in {args.out}")


def cmd_eval(args) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from bench.common import table
    from hplan import envs

    env = envs.make("antmaze", layout=gait.open_room(13), gait=args.gait).unwrapped
    ang = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    mags = np.array([1 / 3, 2 / 3, 1.0])
    cmds = np.concatenate([(m * np.stack([np.cos(ang), np.sin(ang)], 1)) for m in mags]
                          + [np.zeros((1, 2))]).astype(np.float32)
    steps = int(round(10.0 / env.config.dt))
    run = jax.jit(lambda c, k: gait.walk(env, c, jnp.array([7.5, 7.5]), steps, k))

    t0 = time.perf_counter()
    xy, height = jax.device_get(run(jnp.asarray(cmds), jax.random.key(args.seed)))
    seconds = time.perf_counter() - t0
    world = np.asarray(env.to_world(xy))
    moved = world[:, -1] - world[:, 0]
    dur, max_speed = steps * env.config.dt, env.max_speed
    rows = []
    for i, m in enumerate(list(mags) + [0.0]):
        sel = slice(8 * i, 8 * i + 8) if m > 0 else slice(24, 25)
        c, d = cmds[sel], moved[sel]
        along = (d * c).sum(1) / np.maximum(np.linalg.norm(c, axis=1), 1e-9) / dur
        cosine = (d * c).sum(1) / np.maximum(
            np.linalg.norm(d, axis=1) * np.linalg.norm(c, axis=1), 1e-9)
        rows.append({"command": f"{m * max_speed:.2f} m/s",
                     "speed along": float(np.median(along)) if m > 0 else float("nan"),
                     "angle err (deg)": float(np.degrees(np.median(np.arccos(
                         np.clip(cosine, -1, 1))))) if m > 0 else float("nan"),
                     "drift (m)": float(np.median(np.linalg.norm(d, axis=1))),
                     "flipped": int((height[sel].min(1) < 0.2).sum())})
    print(table(rows, list(rows[0])))
    switching = _switching(args)
    print(table([switching], list(switching)))
    wall = _beside_wall(args, env, steps)
    print(table(wall, list(wall[0])))
    out = write("ant_gait_eval", {"gait": args.gait, "seconds_per_run": dur,
                                  "wall_seconds": seconds, "rows": rows,
                                  "switching": switching, "beside_wall": wall,
                                  "commands": cmds.tolist(), "moved_m": moved.tolist()},
                out=args.json)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    for i in range(len(cmds)):
        ax.plot(world[i, :, 0] - world[i, 0, 0], world[i, :, 1] - world[i, 0, 1],
                color=plt.cm.viridis(np.linalg.norm(cmds[i])), lw=1)
        ax.plot(*(cmds[i] * max_speed * dur), "x", color="gray", ms=5)
    ax.set_aspect("equal")
    ax.set_title("torso paths, 10 s per command (x: commanded end)")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    fig.savefig(out.with_suffix(".png"), dpi=100, bbox_inches="tight")
    print(f"wrote {out} and its PNG")


def _switching(args) -> dict:
    """A planner's use of the gait: a new random command every 0.5 s (the shipped tasks'
    gait_repeat of 10), 64 ants x 20 commands. Speed along each command over its 0.5 s,
    as a fraction of the commanded speed: what the planner gets from a command it holds
    for one step only."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from hplan import envs

    env = envs.make("antmaze", layout=gait.open_room(13), gait=args.gait,
                    gait_repeat=10).unwrapped
    n, k = 64, 20
    key = jax.random.key(args.seed + 1)
    cmds = jax.vmap(jax.vmap(lambda kk: gait.sample_command(kk, 0.0)))(
        jax.random.split(key, n * k).reshape(n, k))
    run = jax.jit(lambda c, kk: gait.walk_switching(env, c, jnp.array([7.5, 7.5]), 1, kk))
    xy, height = jax.device_get(run(cmds, jax.random.fold_in(key, 1)))
    world = np.asarray(env.to_world(xy))
    step = np.diff(world, axis=1) / env.config.dt  # m/s over each command's 0.5 s
    c = np.asarray(cmds)
    along = (step * c).sum(-1) / np.linalg.norm(c, axis=-1) / (np.linalg.norm(c, axis=-1)
                                                               * env.max_speed)
    return {"commands": "random every 0.5 s",
            "speed along / commanded (median)": float(np.median(along)),
            "same, 2nd-10th command": float(np.median(along[:, 1:10])),
            "tracking err (m/s, median)": float(np.median(np.linalg.norm(
                step - c * env.max_speed, axis=-1))),
            "flipped": int((height.min(1) < 0.2).sum()), "ants": n}


def _beside_wall(args, env, steps: int) -> list[dict]:
    """In a maze the ant walks beside walls: from 1 m off the room's top wall (its feet
    reach 1.2 m), commands along the wall at full speed, turned 0-30 deg into it. Speed
    along the wall over 10 s: what a planner's slightly wall-ward command gets."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    tilt = np.array([0.0, 10.0, 20.0, 30.0])
    cmds = np.repeat(np.stack([np.cos(np.radians(tilt)), np.sin(np.radians(tilt))], 1), 4, 0)
    run = jax.jit(lambda c, k: gait.walk(env, c, jnp.array([1.25, 2.5]), steps, k))
    xy, height = jax.device_get(run(jnp.asarray(cmds, jnp.float32),
                                    jax.random.key(args.seed + 2)))
    world = np.asarray(env.to_world(xy))
    along = (world[:, -1, 0] - world[:, 0, 0]) / (steps * env.config.dt)
    return [{"tilt into wall (deg)": float(t),
             "speed along wall (m/s, median of 4)": float(np.median(along[4 * i: 4 * i + 4])),
             "flipped": int((height[4 * i: 4 * i + 4].min(1) < 0.2).sum())}
            for i, t in enumerate(tilt)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--timesteps", type=int, default=gait.GaitConfig.timesteps)
    t.add_argument("--num-envs", type=int, default=gait.GaitConfig.num_envs)
    t.add_argument("--batch-size", type=int, default=gait.GaitConfig.batch_size)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default=DEFAULT_OUT)
    t.add_argument("--json", help="results file (default bench/results/ant_gait_train_*)")
    t.add_argument("--switch-prob", type=float, default=gait.GaitConfig.switch_prob,
                   help="per control step chance of a new command")
    t.add_argument("--pillars", type=float, default=0.0,
                   help="train among walls: share of wall cells in a 12 x 12-cell room")
    t.add_argument("--max-speed", type=float, default=gait.GaitConfig.max_speed,
                   help="m/s at |command| = 1 (the gait file keeps it; the ant env reads it)")
    t.add_argument("--init", help="a gait file to fine-tune (policy kept, value net fresh)")
    e = sub.add_parser("eval")
    e.add_argument("--gait", default=DEFAULT_OUT)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--json", help="results file (default bench/results/ant_gait_eval_*)")
    args = p.parse_args()
    {"train": cmd_train, "eval": cmd_eval}[args.cmd](args)


if __name__ == "__main__":
    main()
