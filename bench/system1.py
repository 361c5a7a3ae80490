"""System 1 vs the planner it was distilled from, on the same episodes.

For each task and stack seed: distil the teacher (`--teacher`, default hier-2) with DAgger
(`hplan.distill`, cached in `--policies`), then run the teacher, `system1` (the
policy acts alone under the teacher's levels) and `system1-mpc` (its chunk warm-starts a
smaller planner) on `--episodes` fresh episodes. Reports success, SPL, planning ms per
step (single-episode latency, median of 3) and model evaluations per step, their ratios
to the teacher, and the student's success after each DAgger round (one fixed episode set).

Targets (issue 17): system1-mpc keeps >= 95 % of the teacher's success at <= 1/3 of its
model evaluations per step; system1 is >= 10x faster per step than the teacher.

Run: .venv/bin/python bench/system1.py --tasks large --seeds 0 [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import table, write
from hplan import agents as A
from hplan import distill, tasks
from hplan.eval import compare
from hplan.train import pipeline


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="large,trap")
    p.add_argument("--seeds", default="0")
    p.add_argument("--teacher", default="hier-2")
    p.add_argument("--agents", default="system1,system1-mpc")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--distill-episodes", type=int, default=32)
    p.add_argument("--steps", type=int, default=2000, help="regression updates per round")
    p.add_argument("--cache", default="out/cache")
    p.add_argument("--policies", default="out/policies")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    teacher = A.load_agent(a.teacher)
    cfg = distill.DistillConfig(rounds=a.rounds, episodes=a.distill_episodes, steps=a.steps)
    rows, runs = [], {}
    for tname in a.tasks.split(","):
        task = tasks.load(tname)
        for seed in (int(s) for s in a.seeds.split(",")):
            st, ds, where = pipeline.get_stack(task, a.cache, seed=seed, show=False)
            pdir = Path(a.policies) / f"{Path(where).name}-{a.teacher}"
            ctx = A.Context(task, st, ds)
            meta = distill.distill(task, teacher, ctx, pdir, cfg)
            ctx.policy = str(pdir)
            pols = {n: A.make(n, task, st, ds, ctx=ctx)[0]
                    for n in [a.teacher, *a.agents.split(",")]}
            # Episode key 500 + seed: neither the distillation's nor the tuning's episodes.
            res, _ = compare.compare(task, pols, 500 + seed, a.episodes, progress=False)
            ref = res["agents"][a.teacher]
            for n, r in res["agents"].items():
                rows.append({"task": tname, "seed": seed, "agent": n,
                             "success": r["success_rate"], "spl": r["spl"],
                             "plan_ms_per_step": r["plan_ms_per_step"],
                             "model_evals_per_step": r["model_evals_per_step"],
                             "success_vs_teacher": r["success_rate"]
                             / max(ref["success_rate"], 1e-9),
                             "evals_vs_teacher": r["model_evals_per_step"]
                             / ref["model_evals_per_step"],
                             "speedup_per_step": ref["plan_ms_per_step"]
                             / r["plan_ms_per_step"]})
            runs[f"{tname}/s{seed}"] = {"stack": str(where), "policy": str(pdir),
                                        "dagger_rounds": meta["rounds_done"],
                                        "results": res}
            print(f"\n{tname} stack {seed}: student alone after each DAgger round "
                  "(same episodes)")
            print(table(meta["rounds_done"], ["round", "data", "acting_success",
                                              "student_success", "student_mean_steps"]))
            print(table([r for r in rows if r["task"] == tname and r["seed"] == seed],
                        list(rows[0])), flush=True)
            out = write("system1", {"teacher": a.teacher, "episodes": a.episodes,
                                    "distill": vars(cfg), "rows": rows, "runs": runs},
                        a.out)
    print(f"wrote {out}")
    return {"rows": rows, "runs": runs}


if __name__ == "__main__":
    main()
