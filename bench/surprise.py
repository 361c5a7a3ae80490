"""Surprise on a world that changes: each agent with and without surprise handling, on the
same episodes of a changing task and of the same task unchanged.

The changing task (default `door-closes`): a door closes while the agent heads for it;
the data, the model and the graph know it open. With `react`, a spike of the level-0
prediction error makes the agent re-plan at every level and cut its graph where it
stands. On the unchanged world (the events dropped, same stack), the rate of spikes per
1000 steps is the false-alarm rate, and success must not drop with handling on. Also
plots one episode's prediction error with the event marked.

Run: .venv/bin/python bench/surprise.py [--task door-closes] [--episodes 48] [--seeds 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib
import numpy as np

from bench.common import RESULTS, write
from hplan import agents as A
from hplan import tasks
from hplan.eval import compare
from hplan.train import pipeline

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def unchanged(task):
    """The same task (name, so the same cached stack) with its events dropped."""
    args = {k: v for k, v in task.spec.env_args.items() if k != "events"}
    return tasks.build(dataclasses.replace(task.spec, env_args=args))


def world_context(ctx, task):
    """`ctx` for `task` (the same stack in a changed or unchanged world): one bank graph
    for both worlds, since it depends on the stack and data only."""
    return A.Context(task, ctx.stack, ctx.data, scale=ctx.scale, _graphs=ctx._graphs,
                     _links=ctx._links, _pinned=ctx._pinned)


def variants(names: list[str], max_cuts: int | None = None) -> dict[str, A.AgentConfig]:
    """Each agent without and with surprise handling; `max_cuts`: the graph levels of the
    handling variant keep that many cut centres."""
    out = {}
    for n in names:
        cfg = A.load_agent(n)
        for react in (False, True):
            tag = n if react == cfg.surprise.react else (
                f"{n}+surprise" if react else f"{n} (surprise off)")
            c = dataclasses.replace(
                cfg, name=tag, surprise=dataclasses.replace(cfg.surprise, react=react))
            if react and max_cuts:
                c = dataclasses.replace(c, levels=tuple(
                    dataclasses.replace(lv, config=dataclasses.replace(lv.config,
                                                                       max_cuts=max_cuts))
                    if lv.kind == "graph" else lv for lv in c.levels))
            out[tag] = c
    return out


def plot(raw: dict, agent: str, event: int | None, path: Path) -> None:
    err = np.asarray(raw[agent]["info"]["pred_error"])
    spike = np.asarray(raw[agent]["info"]["surprise"], bool)
    ok = np.asarray(raw[agent]["success"], bool)
    e = int(np.argmax(ok)) if ok.any() else 0
    end = int(raw[agent]["steps_to_goal"][e]) if ok[e] else err.shape[1]
    fig, ax = plt.subplots(figsize=(7, 3))
    t = np.arange(end)
    ax.plot(t, err[e, :end], label="level-0 prediction error (base steps)")
    ax.scatter(t[spike[e, :end]], err[e, :end][spike[e, :end]], c="tab:red", zorder=3,
               label="surprise")
    if event is not None:
        ax.axvline(event, c="k", ls="--", label=f"door closes (step {event})")
    ax.set(xlabel="control step", ylabel="error", title=f"{agent}, episode {e}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="door-closes")
    p.add_argument("--agents", default="hier-2-data,flat-mpc-critic")
    p.add_argument("--episodes", type=int, default=48)
    p.add_argument("--seeds", default="0", help="stack seeds (one stack each)")
    p.add_argument("--cache", default="out/cache")
    p.add_argument("--max-cuts", type=int, default=None,
                   help="cut centres the handling variant's graph levels keep")
    p.add_argument("--worlds", default="changed,unchanged")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    task = tasks.load(a.task)
    worlds = {w: t for w, t in (("changed", task), ("unchanged", unchanged(task)))
              if w in a.worlds.split(",")}
    events = task.spec.env_args.get("events", [])
    cfgs = variants(a.agents.split(","), a.max_cuts)
    out = {"task": a.task, "episodes": a.episodes, "events": events,
           "max_cuts": a.max_cuts, "runs": {}}
    for seed in (int(s) for s in a.seeds.split(",")):
        st, ds, _ = pipeline.get_stack(task, a.cache, seed=seed)
        ctx = A.Context(task, st, ds)
        for world, t in worlds.items():
            ctx_w = world_context(ctx, t)
            pols = {n: A.build(c, ctx_w) for n, c in cfgs.items()}
            res, raw = compare.compare(t, pols, seed=100 + seed, episodes=a.episodes,
                                       latency=False)
            out["runs"][f"s{seed}/{world}"] = res
            print(f"\n{a.task} ({world}), stack seed {seed}, {a.episodes} episodes")
            print(f"{'agent':28s} {'success':>8s} {'SPL':>6s} {'steps':>7s} "
                  f"{'surprise/1k':>11s} {'cuts/ep':>8s}")
            for n, r in res["agents"].items():
                print(f"{n:28s} {r['success_rate']:8.2f} {r['spl']:6.2f} "
                      f"{r['mean_steps']:7.1f} {r['surprises_per_1k_steps']:11.1f} "
                      f"{r['cuts_per_episode']:8.2f}")
            if world == "changed" and seed == int(a.seeds.split(",")[0]):
                name = next(n for n, c in cfgs.items() if c.surprise.react)
                plot(raw, name, events[0]["step"] if events else None,
                     RESULTS / f"surprise_{a.task}.png")
    write(f"surprise_{a.task}", out, a.json)
    return out


if __name__ == "__main__":
    main()
