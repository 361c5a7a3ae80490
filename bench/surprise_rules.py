"""Surprise detection rules replayed offline: which rule sees a changed world on every stack.

Runs an agent with surprise handling off on a changing task and on the same task
unchanged (same stack, same episodes), records each step's level-0 prediction error and
predicted step length, then replays detection rules on those traces: the fixed threshold
(error > baseline + t base steps) and the miss rule (error > f x the predicted step), each
with `persist` steps in a row. Per stack: the fraction of changed-world episodes with a
spike within `--window` steps of the event (and the median delay), and false alarms per
1000 steps in the unchanged world. Handling is off, so every rule sees the same traces.

Run: .venv/bin/python bench/surprise_rules.py [--task door-closes] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np

from bench.common import write
from bench.surprise import unchanged, world_context
from hplan import agents as A
from hplan import tasks
from hplan.agents import surprise as S
from hplan.eval import compare
from hplan.train import pipeline

RULES = {f"threshold {t}": ("threshold", t) for t in (0.3, 0.4, 0.5)} | {
    f"miss {f}": ("miss", f) for f in (0.8, 0.9, 1.0)}


def replay(err: np.ndarray, move: np.ndarray, kind: str, value: float, persist: int
           ) -> np.ndarray:
    """Spikes [episodes, T] of a rule: `hplan.agents.surprise.judge` (what the agent
    runs) scanned over the recorded errors, each judged against its predicted step."""
    cfg = S.SurpriseConfig(persist=persist, **({"miss": value} if kind == "miss"
                                                 else {"threshold": value}))

    def episode(e, m):
        def step(s, em):
            s, spike = S.judge(cfg, s._replace(move=em[1]), em[0])
            return s, spike

        return jax.lax.scan(step, S.init(jnp.zeros(1)), (e, m))[1]

    return np.asarray(jax.vmap(episode)(jnp.asarray(err, jnp.float32),
                                        jnp.asarray(move, jnp.float32)))


def traces(task, agent: str, seed: int, episodes: int, cache: str) -> dict:
    cfg = A.load_agent(agent)
    cfg = dataclasses.replace(cfg, surprise=dataclasses.replace(cfg.surprise, react=False))
    st, ds, _ = pipeline.get_stack(task, cache, seed=seed)
    ctx = A.Context(task, st, ds)
    out = {}
    for world, t in (("changed", task), ("unchanged", unchanged(task))):
        res, raw = compare.compare(t, {agent: A.build(cfg, world_context(ctx, t))}, seed=100 + seed,
                                   episodes=episodes, latency=False)
        r = raw[agent]
        T = np.asarray(r["info"]["pred_error"]).shape[1]
        ok, steps = np.asarray(r["success"]), np.asarray(r["steps_to_goal"])
        out[world] = {"err": np.asarray(r["info"]["pred_error"]),
                      "move": np.asarray(r["info"]["pred_move"]),
                      "until": np.arange(T)[None] < np.where(ok, steps, T)[:, None],
                      "success": float(ok.mean())}
    return out


def score(tr: dict, kind: str, value: float, persist: int, event: int, window: int) -> dict:
    ch, un = tr["changed"], tr["unchanged"]
    sp = replay(ch["err"], ch["move"], kind, value, persist) & ch["until"]
    win = sp[:, event:event + window]
    det = win.any(1)
    spu = replay(un["err"], un["move"], kind, value, persist) & un["until"]
    return {"detected": float(det.mean()),
            "median_delay": float(np.median(np.argmax(win, 1)[det])) if det.any() else None,
            "false_alarms_per_1k": float(1e3 * spu.sum() / max(un["until"].sum(), 1))}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="door-closes")
    p.add_argument("--agent", default="hier-2-data-surprise")
    p.add_argument("--episodes", type=int, default=48)
    p.add_argument("--seeds", default="0,1,2", help="stack seeds (one stack each)")
    p.add_argument("--persist", default="1,2,3,4")
    p.add_argument("--window", type=int, default=24, help="steps after the event that count")
    p.add_argument("--cache", default="out/cache")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    task = tasks.load(a.task)
    events = task.spec.env_args.get("events", [])
    if not events:
        p.error(f"task {a.task!r} has no events: give a task whose world changes "
                "(e.g. door-closes)")
    event = int(events[0]["step"])
    seeds = [int(s) for s in a.seeds.split(",")]
    trs = {s: traces(task, a.agent, s, a.episodes, a.cache) for s in seeds}
    out = {"task": a.task, "agent": a.agent, "episodes": a.episodes, "event_step": event,
           "window": a.window, "handling_off_success": {
               f"s{s}": {w: trs[s][w]["success"] for w in trs[s]} for s in seeds},
           "rules": {}}
    head = "  ".join(f"s{s}: det delay  fa/1k" for s in seeds)
    print(f"\n{a.task}, {a.episodes} episodes per stack, spike within {a.window} steps of "
          f"the event\n{'rule':14s} persist  {head}")
    for name, (kind, value) in RULES.items():
        for persist in (int(x) for x in a.persist.split(",")):
            row = {f"s{s}": score(trs[s], kind, value, persist, event, a.window)
                   for s in seeds}
            out["rules"][f"{name} persist {persist}"] = row
            cells = "  ".join(
                f"{r['detected']:4.2f} {r['median_delay'] or float('nan'):5.1f} "
                f"{r['false_alarms_per_1k']:6.1f}" for r in row.values())
            print(f"{name:14s} {persist:7d}  {cells}")
    write(f"surprise_rules_{a.task}", out, a.json)
    return out


if __name__ == "__main__":
    main()
