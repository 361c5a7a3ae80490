"""Where does an agent lose time? Each control step until the goal, classified by the
change of the oracle's geodesic distance to the goal (in full-speed steps):

- `full` (>= 0.9 of a step closer), `part` (0.1-0.9), `stay` (within 0.1), `back` (>= 0.1
  farther);
- the steps that made no progress (stay or back), by cause: `bad_small` (the action was
  under half speed: the planner hesitated), `bad_blocked` (a full action, but a wall
  stopped over half of it), `bad_free` (a full, unblocked move that did not get closer);
- of the `bad_free` moves, `free_to_sub`: the share that got closer (in the plane) to the
  agent's own subgoal (the subgoal lies round a corner), the rest moved away from it
  (the level-0 model or critic erred); `sub_behind`: how often the subgoal was farther
  from the goal than the agent (by more than half a step);
- `ratio`: steps taken / geodesic optimum of the episode; `own_map` (task families): the
  share of bank subgoals on the episode's own map;
- where the graph level placed the agent (its `graph_node`) against where it was:
  `loc_off` the median geodesic distance between the two (steps), `loc_far` the share of
  steps it was over 2 steps off, `loc_across` the share over 2 steps off by geodesic while
  within 1 step in the plane (placed across a wall); and the level's own distance to the
  goal (`graph_togo`) against the oracle's: `togo_wrong`, the share of steps whose change
  of it disagrees in sign with the oracle's where the oracle moved by half a step or more.
  Each also on the failed episodes alone (`fail_*`).

Subgoals are read as the recorded position of the bank state the lowest graph level chose
(the goal where it chose the goal). Point mazes only (needs the oracle and recorded xy).
Fresh episodes by default (episode key = stack seed + 3000).

Run: .venv/bin/python bench/step_progress.py --task maze32 --seeds 0,1,2 --episodes 10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench.common import graph_agent_episodes, table, write
from hplan import tasks
from hplan.agents.graph_level import bank_draw


def classify(orc, pos, goal, acts, stg, sub_xy, maps=None) -> dict:
    """Shares over every episode's steps until its goal (or its end). `maps` [N]: each
    episode's map, for a task family (geodesics on that map)."""
    n, t1, _ = pos.shape
    maps = np.zeros(n, int) if maps is None else np.asarray(maps)
    d = orc.geodesic(pos.reshape(-1, 2), np.repeat(goal, t1, 0),
                     np.repeat(maps, t1)).reshape(n, t1)
    d_sub = orc.geodesic(sub_xy.reshape(-1, 2), np.repeat(goal, t1 - 1, 0),
                         np.repeat(maps, t1 - 1)).reshape(n, t1 - 1)
    gain = d[:, :-1] - d[:, 1:]
    speed = np.abs(acts).max(-1)
    moved = np.abs(pos[:, 1:] - pos[:, :-1]).max(-1) / orc.max_step
    to_sub = (np.linalg.norm(sub_xy - pos[:, 1:], axis=-1)
              < np.linalg.norm(sub_xy - pos[:, :-1], axis=-1))
    behind = np.isfinite(d_sub) & (d_sub > d[:, :-1] + 0.5)
    live = np.arange(t1 - 1)[None] < np.where(stg > 0, stg, t1 - 1)[:, None]
    bad = live & (gain < 0.1)
    free = bad & (speed >= 0.5) & (moved >= 0.5 * speed)

    def share(sel, of):
        return float(sel.sum() / max(of.sum(), 1))

    return {"full": share(live & (gain >= 0.9), live),
            "part": share(live & (gain >= 0.1) & (gain < 0.9), live),
            "stay": share(live & (np.abs(gain) < 0.1), live),
            "back": share(live & (gain <= -0.1), live),
            "bad_small": share(bad & (speed < 0.5), bad),
            "bad_blocked": share(bad & (speed >= 0.5) & (moved < 0.5 * speed), bad),
            "bad_free": share(free, bad),
            "free_to_sub": share(free & to_sub, free),
            "sub_behind": share(live & behind, live),
            "ratio": float(np.mean(np.where(stg > 0, stg, t1 - 1) / np.maximum(d[:, 0], 1))),
            "success": float((stg > 0).mean())}


def localisation(orc, pos, goal, stg, node_xy, togo, maps=None) -> dict:
    """Where the graph level placed the agent, and its distance to the goal, against the
    oracle (see the module docstring), over all episodes and over the failed ones."""
    n, t1, _ = pos.shape
    maps = np.zeros(n, int) if maps is None else np.asarray(maps)
    flat = np.repeat(maps, t1 - 1)
    here = pos[:, :-1].reshape(-1, 2)
    off = orc.geodesic(node_xy.reshape(-1, 2), here, flat).reshape(n, t1 - 1)
    plane = (np.linalg.norm(node_xy - pos[:, :-1], axis=-1) / orc.max_step)
    d = orc.geodesic(here, np.repeat(goal, t1 - 1, 0), flat).reshape(n, t1 - 1)
    live = np.arange(t1 - 1)[None] < np.where(stg > 0, stg, t1 - 1)[:, None]
    dd, dt = np.diff(d, axis=1), np.diff(togo, axis=1)
    moved = live[:, 1:] & (np.abs(dd) >= 0.5)
    wrong = moved & (np.sign(dd) != np.sign(dt))
    out = {}
    for tag, sel in (("", np.ones(n, bool)), ("fail_", stg <= 0)):
        lv, mv = live & sel[:, None], moved & sel[:, None]
        if not lv.any():
            continue
        out[f"{tag}loc_off"] = float(np.median(off[lv]))
        out[f"{tag}loc_far"] = float((off[lv] > 2).mean())
        out[f"{tag}loc_across"] = float(((off > 2) & (plane <= 1))[lv].mean())
        out[f"{tag}togo_wrong"] = float((wrong & sel[:, None]).sum() / max(mv.sum(), 1))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--task", default="maze32")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--agent", default="hier-3-data-long")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--episode-offset", type=int, default=3000)
    p.add_argument("--cache", default="out/cache")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    task = tasks.load(a.task)
    orc = getattr(task.env.unwrapped, "oracle", None)
    if orc is None:
        raise SystemExit(f"{a.task}: step_progress needs a point-maze task (an oracle)")
    rows = []
    for seed in (int(s) for s in a.seeds.split(",")):
        cfg, ctx, res, bank_xy = graph_agent_episodes(
            task, a.agent, seed, seed + a.episode_offset, a.episodes, a.cache, "step_progress")
        goal = np.asarray(res["goal"])
        idx = np.asarray(res["info"]["subgoal_idx"])
        sub_xy = np.where((idx >= 0)[..., None], bank_xy[np.maximum(idx, 0)], goal[:, None])
        maps = res["first"].get("context")
        pos, stg = np.asarray(res["positions"]), np.asarray(res["steps_to_goal"])
        row = classify(orc, pos, goal, np.asarray(res["actions"]), stg, sub_xy, maps)
        info = res["info"]
        if "graph_node" in info:
            row.update(localisation(orc, pos, goal, stg,
                                    bank_xy[np.asarray(info["graph_node"])],
                                    np.asarray(info["graph_togo"]), maps))
        lowest = cfg.levels[-1].config
        groups = ctx.bank_groups(lowest.bank, bank_draw(lowest))
        if maps is not None and groups is not None:  # subgoals on the episode's own map
            mine = groups[np.maximum(idx, 0)] == np.asarray(maps).reshape(-1, 1)
            row["own_map"] = float(mine[idx >= 0].mean()) if (idx >= 0).any() else 1.0
        rows.append({"stack": seed, **row})
        print(f"stack {seed}: " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    print(table(rows, list(rows[0])))
    path = write(f"step_progress_{task.name}", {
        "task": task.name, "agent": a.agent, "episodes": a.episodes,
        "episode_offset": a.episode_offset, "rows": rows}, a.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
