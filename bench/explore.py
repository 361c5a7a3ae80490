"""Exploration that travels: coverage after each round of `hplan.train.explore` (planning
with the learned level-0 model toward rare states) against random actions for the same
env steps from the same round 0, on any task whose oracle counts free cells.

Runs, all sharing round 0 (random actions from `starts` explore_reset draws):
- plan: the exploration loop;
- random: random actions, each round restarted at states drawn uniformly from its own
  data (`lead = -1`);
- random-same-starts (with --ablation): random actions from the planned loop's start rule
  (`lead` steps before rare states), so planning is the only difference.
Coverage (fraction of free cells visited, `oracle.coverage_fraction`) is computed here,
for the report only. Writes bench/results/explore_<task>_<cpu|gpu>.json (commit,
machine, config, per round: coverage, cover proxy, reached targets, seconds) and a PNG of
the heat maps beside it.
Run: .venv/bin/python bench/explore.py --task antmaze-medium [--rounds 4]
     [--episodes 256] [--steps 100] [--starts 8] [--set KEY=VALUE ...] [--ablation]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

if __package__ in (None, ""):  # run as a file: make the repository root importable
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.common import table, write  # noqa: E402
from hplan import tasks  # noqa: E402
from hplan.train.explore import ExploreConfig, explore  # noqa: E402


def _config(args) -> ExploreConfig:
    fields = {f.name: f for f in dataclasses.fields(ExploreConfig)}
    extra = {}
    for item in args.set or []:
        key, _, value = item.partition("=")
        if key not in fields:
            raise SystemExit(f"--set {item!r}: unknown key; use one of {', '.join(fields)}")
        extra[key] = type(fields[key].default)(value)
    return ExploreConfig(**{"rounds": args.rounds, "episodes": args.episodes,
                            "steps": args.steps, "starts": args.starts,
                            "train_steps": args.train_steps, "min_growth": -1.0,
                            "seed": args.seed, **extra})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="antmaze-medium")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--episodes", type=int, default=256)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--starts", type=int, default=8)
    p.add_argument("--train-steps", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--ablation", action="store_true",
                   help="also random actions from the planned loop's starts")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    task = tasks.load(args.task)
    oracle = task.oracle
    if oracle is None or not hasattr(oracle, "coverage_fraction"):
        raise SystemExit(f"task {task.name!r} has no oracle that counts free cells")
    cfg = _config(args)
    runs = {"plan": (cfg, True), "random": (dataclasses.replace(cfg, lead=-1), False)}
    if args.ablation:
        runs["random-same-starts"] = (cfg, False)
    results, maps = {}, {}
    for name, (c, plan) in runs.items():
        rows, maps[name] = [], []

        def on_round(k, ds, summary, rows=rows, name=name):
            rows.append({**summary, "coverage": oracle.coverage_fraction(ds.xy)})
            maps[name].append(ds.xy.copy())
            print(f"{name} round {k}: coverage {rows[-1]['coverage']:.3f}, cover proxy "
                  f"{summary['cover']}, reached {summary.get('reached', '-')}, "
                  f"{summary['seconds']:.1f}s", flush=True)

        t0 = time.perf_counter()
        explore(task, c, plan=plan, on_round=on_round)
        results[name] = {"rounds": rows, "seconds": time.perf_counter() - t0}

    fig, axes = plt.subplots(len(runs), cfg.rounds, figsize=(3.3 * cfg.rounds,
                                                             3.2 * len(runs)), squeeze=False)
    for i, name in enumerate(runs):
        for k, ax in enumerate(axes[i]):
            if k < len(maps[name]):
                text = oracle.coverage(ax, maps[name][k])
                ax.set_title(f"{name}, round {k}:\n{text}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    rows = [{"round": k, **{n: results[n]["rounds"][k]["coverage"] for n in runs
                            if k < len(results[n]["rounds"])}} for k in range(cfg.rounds)]
    print(table(rows, ["round", *runs]))
    path = write(f"explore_{task.name}", {
        "task": task.name, "command": "python bench/explore.py " + " ".join(sys.argv[1:]),
        "config": dataclasses.asdict(cfg),
        "baselines": {"random": "random actions, same env steps, same round 0, restarted "
                                "at states drawn uniformly from its own data",
                      "random-same-starts": "random actions from the planned loop's starts"},
        "coverage": "fraction of the layout's free cells visited (oracle, report only)",
        "table": rows, "runs": results}, args.out)
    png = path.with_suffix(".png")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    print(f"wrote {path} and {png}")


if __name__ == "__main__":
    main()
