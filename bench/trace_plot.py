"""Where do an agent's failed episodes go? One panel per failed episode on a point maze
(one layout or a family): walls, the path (coloured by time), start (green), goal (red
star) and the bank states the lowest graph level chose as subgoals (orange).

Run: .venv/bin/python bench/trace_plot.py --task pointmaze-mjx-maze32 --seed 0
     --episode-key 1000 --episodes 20 --agent hier-2-data-inertia --out trace.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.common import graph_agent_episodes  # noqa: E402
from hplan import tasks  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True)
    p.add_argument("--seed", type=int, default=0, help="stack seed")
    p.add_argument("--episode-key", type=int, default=1000,
                   help="episodes drawn with this key (bench/hierarchy.py: seed + offset)")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--agent", required=True)
    p.add_argument("--cache", default="out/cache")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    task = tasks.load(a.task)
    env = task.env.unwrapped
    if not (hasattr(env, "layouts") or hasattr(env, "layout")):
        raise SystemExit(f"{a.task}: trace_plot draws point mazes (a layout); this env has none")
    cfg, ctx, res, bank_xy = graph_agent_episodes(task, a.agent, a.seed, a.episode_key,
                                                  a.episodes, a.cache, "trace_plot")
    pos, goal = np.asarray(res["positions"]), np.asarray(res["goal"])
    idx = np.asarray(res["info"]["subgoal_idx"])
    maps = res["first"].get("context")
    maps = np.zeros(a.episodes, int) if maps is None else np.asarray(maps).reshape(-1)
    ok = np.asarray(res["success"]).reshape(-1).astype(bool)
    fails = np.flatnonzero(~ok)
    print(f"{a.task} stack {a.seed}, key {a.episode_key}: solved {ok.sum()} of {a.episodes}; "
          f"failed episodes {fails.tolist()}")
    cols = 5
    rows = max(1, -(-len(fails) // cols))
    fig, axs = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axs.flat:
        ax.axis("off")
    for ax, e in zip(axs.flat, fails, strict=False):
        lay = env.layouts[maps[e]] if hasattr(env, "layouts") else env.layout
        walls = np.asarray(lay.walls)
        h, w = walls.shape
        ax.imshow(walls, cmap="Greys", extent=(0, w, h, 0))  # cell (r, c) covers [r, r+1)
        path = pos[e]
        ax.plot(path[:, 1], path[:, 0], "-", lw=0.8, c="tab:blue")
        ax.scatter(path[::10, 1], path[::10, 0], c=np.arange(0, len(path), 10), s=6,
                   cmap="viridis", zorder=3)
        ax.plot(path[0, 1], path[0, 0], "go")
        ax.plot(goal[e, 1], goal[e, 0], "r*", ms=10)
        sub = bank_xy[idx[e][idx[e] >= 0]]
        ax.scatter(sub[:, 1], sub[:, 0], s=4, c="orange", alpha=0.4, zorder=2)
        ax.set_title(f"episode {e}" + (f", map {maps[e]}" if hasattr(env, "layouts") else ""),
                     fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out, dpi=80)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
