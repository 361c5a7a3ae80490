"""Mazes never seen in training, from pixels: which top level transfers (issue 16).

One stack trained on a task's maps (default `diverse-mazes`: 25 corridor mazes), then the
same agents on the same episodes in two settings, each at two start-goal bands (HWM's
medium 9-12 and hard 13-16 BFS cells):
- `unseen`: the test maps (`--maps`, a folder of layout files the stack never trained on),
  one map per episode, drawn like the training family's;
- `seen`: the training maps themselves, so the cost of generalising is visible.
Prints one table per (setting, band) with success, SPL and plan time, and writes JSON
with every episode's record.

Run: .venv/bin/python bench/unseen_mazes.py [--episodes 40 --seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import write
from hplan import tasks
from hplan.cli import unseen_map_task
from hplan.eval import compare
from hplan.train import pipeline

AGENTS = "flat-mpc,flat-mpc-critic,hier-macro,hier-2-data"
BANDS = {"medium": (9, 12), "hard": (13, 16)}
ROOT = Path(__file__).resolve().parents[1]


def banded(task, lo: int, hi: int):
    """`task` with its random start-goal pairs restricted to lo..hi BFS cells."""
    spec = task.spec
    args = {**spec.env_args, "min_distance": lo, "max_distance": hi}
    return tasks.build(tasks.TaskSpec(name=spec.name, env=spec.env, env_args=args,
                                      episode_length=spec.episode_length, stack=spec.stack),
                       source=task.source, base_dir=task.base_dir)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--task", default="diverse-mazes")
    p.add_argument("--maps", default=str(ROOT / "tasks/layouts/diverse-test"),
                   help="folder of unseen layout files")
    p.add_argument("--agents", default=AGENTS)
    p.add_argument("--episodes", type=int, default=40)
    p.add_argument("--seed", type=int, default=0, help="stack seed and episode seed")
    p.add_argument("--bands", default="medium,hard")
    p.add_argument("--settings", default="unseen,seen")
    p.add_argument("--cache", default="out/cache")
    p.add_argument("--out", default=None)
    p.add_argument("--no-latency", action="store_true")
    args = p.parse_args(argv)
    train_task = tasks.load(args.task)
    t0 = time.perf_counter()
    st, ds, where = pipeline.get_stack(train_task, args.cache, seed=args.seed, show=True)
    train_s = time.perf_counter() - t0
    names = args.agents.split(",")
    results = {}
    for setting in args.settings.split(","):
        for band in args.bands.split(","):
            lo, hi = BANDS[band]
            if setting == "unseen":
                task = unseen_map_task(train_task, args.maps, min_distance=lo, max_distance=hi)
            else:
                task = banded(train_task, lo, hi)
            res, _ = compare.compare(task, compare.build_agents(task, names, st, ds),
                                     args.seed, args.episodes, progress=False,
                                     latency=not args.no_latency)
            results[f"{setting}/{band}"] = res
            print(f"== {args.task} {setting} maps, {band} pairs ({lo}-{hi} cells), "
                  f"{args.episodes} episodes")
            print(compare.format_table(res), flush=True)
            out = write("unseen_mazes", {
                "task": args.task, "maps": args.maps, "episodes": args.episodes,
                "seed": args.seed, "stack": str(where), "train_s": train_s,
                "bands": BANDS, "results": results}, args.out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
