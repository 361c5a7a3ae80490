"""Hierarchical vs flat agents at matched compute on long-horizon mazes.

For each task and seed: train (or reuse) the world-model stack with that seed (the
task's `[stack]` configuration), then run every agent on the same `--episodes` episodes
(start/goal pairs >= 15 cells apart for the random-pair tasks). Prints one table (mean
over seeds, with the per-seed spread) with success and SPL, and writes JSON with every
episode's record. Run: .venv/bin/python bench/hierarchy.py [--tasks large,trap,maze32]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench.common import write
from hplan import tasks
from hplan.eval import compare
from hplan.train import pipeline

AGENTS = "flat-true,flat-mpc,flat-mpc-critic,hier-2,hier-2-data,hier-3,hier-3-data"


def paired(res: dict, raw: dict, ref: str = "flat-mpc-critic") -> None:
    """Adds `paired_steps_vs_ref`: mean over the episodes both this agent and `ref` solved
    of (its steps / ref's steps), and `paired_n`. The plain path ratio averages each agent
    over its own successes, which flatters an agent that solves only the easy episodes."""
    if ref not in raw:
        return
    ok_ref = np.asarray(raw[ref]["success"], bool)
    steps_ref = np.asarray(raw[ref]["steps_to_goal"], float)
    for name, out in raw.items():
        both = ok_ref & np.asarray(out["success"], bool)
        ratio = np.asarray(out["steps_to_goal"], float)[both] / np.maximum(steps_ref[both], 1)
        row = res["agents"][name]
        row["paired_steps_vs_ref"] = float(ratio.mean()) if both.any() else float("nan")
        row["paired_n"] = int(both.sum())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tasks", default="large,trap,maze32")
    p.add_argument("--agents", default=AGENTS)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--stack-seed", type=int, default=None,
                   help="train one stack with this seed and evaluate every --seeds on it "
                        "(default: each evaluation seed trains its own stack)")
    p.add_argument("--episode-offset", type=int, default=0,
                   help="draw seed S's episodes with key S + this: episodes never looked at "
                        "while tuning (the stacks stay those of --seeds)")
    p.add_argument("--cache", default="out/cache")
    p.add_argument("--out", default=None)
    p.add_argument("--no-latency", action="store_true",
                   help="skip the single-episode latency run (one compilation per agent; "
                        "plan_ms_per_step and episode_s are then n/a)")
    args = p.parse_args(argv)
    names = args.agents.split(",")
    results = {}
    for tname in args.tasks.split(","):
        task = tasks.load(tname)
        per_seed = []
        for seed in map(int, args.seeds.split(",")):
            t0 = time.perf_counter()
            sseed = seed if args.stack_seed is None else args.stack_seed
            st, ds, where = pipeline.get_stack(task, args.cache, seed=sseed, show=False)
            train_s = time.perf_counter() - t0
            res, raw = compare.compare(task, compare.build_agents(task, names, st, ds),
                                       seed + args.episode_offset, args.episodes,
                                       progress=False,
                                       latency=not args.no_latency)
            paired(res, raw)
            res["train_s"] = train_s
            res["stack_seed"] = sseed
            res["episode_seed"] = seed + args.episode_offset
            res["stack"] = str(where)
            per_seed.append(res)
            print(f"{tname} seed {seed} (stack {train_s:.0f}s)")
            print(compare.format_table(res), flush=True)
        agg = {}
        for n in names:
            rows = [r["agents"][n] for r in per_seed]
            agg[n] = {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}
            agg[n]["success_by_seed"] = [r["success_rate"] for r in rows]
            agg[n]["spl_by_seed"] = [r["spl"] for r in rows]
        results[tname] = {"mean_over_seeds": agg, "per_seed": per_seed}
        print(f"== {tname}: mean over seeds")
        print(compare.format_table({"agents": agg}), flush=True)
        # Written after every task, so a run cut short keeps what it finished.
        out = write("hierarchy", {"episodes": args.episodes, "seeds": args.seeds,
                                  "stack_seed": args.stack_seed,
                                  "episode_offset": args.episode_offset,
                                  "stack_config": {t: tasks.load(t).spec.stack
                                                   for t in results},
                                  "results": results}, args.out)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
