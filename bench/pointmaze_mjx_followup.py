"""Held-out diagnostics and plan time of a physics maze stack (the ball or the ant; the
one bench/hierarchy.py trains and caches in out/cache).

`diag`: 512 fresh episodes (a key training never used): relative latent prediction error
of the level-0 model at 1, 8 and 32 steps, probe R2 of the position (the ball's, the ant's
torso) and of the whole observation (velocities, joints), latent stats.
`AGENT,AGENT`: single-episode plan time per step on 4 episodes, with mean speed.
Run: .venv/bin/python bench/pointmaze_mjx_followup.py diag | hier-2,flat-mpc-critic
     [--task antmaze-medium] [--seed 0] [--override '{"train": {"var_weight": 8.0}}']
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np

from bench.common import overridden, write
from hplan import data as data_lib
from hplan import tasks
from hplan.eval import compare
from hplan.train import pipeline
from hplan.wm import diagnostics as diag


def diagnose(task, st) -> dict:
    ho = data_lib.collect(task, jax.random.key(987654), 512, 64, "mixed")
    z = st.encode(ho.obs)
    model = st.model()
    k = 32
    roll = jax.jit(jax.vmap(lambda z0, a: model.rollout(0, z0, a)))
    errs = []
    for s0 in (0, 32):  # two windows per episode
        zt = z[:, s0:s0 + k + 1]
        pred = np.asarray(roll(jnp.asarray(zt[:, 0]), jnp.asarray(ho.actions[:, s0:s0 + k])))
        errs.append(diag.prediction_error(pred, zt))
    err = np.concatenate(errs).mean(0)
    w, b = st.probe
    zf, xy = z.reshape(-1, z.shape[-1]), ho.xy.reshape(-1, 2)
    r = xy - (zf @ w + b)
    return {"l0_rel_err": {h: float(err[h - 1]) for h in (1, 8, 32)},
            "l0_rel_err_curve": err.tolist(),
            "probe_r2_pos_trainprobe_heldout":
                float(1 - (r ** 2).sum() / ((xy - xy.mean(0)) ** 2).sum()),
            "probe_r2_pos_fit_heldout": diag.probe_r2(z, ho.xy),
            "probe_r2_rest_fit_heldout": diag.probe_r2(z, ho.obs[..., 2:]),
            "probe_r2_obs_fit_heldout": diag.probe_r2(z, ho.obs),
            "latent": {k: v for k, v in diag.latent_stats(z).items() if k != "latent_std"}}


def timing(task, st, ds, names: list[str]) -> dict:
    agents = compare.build_agents(task, names, st, ds)
    out = {}
    for n in names:
        t0 = time.time()
        row, raw = compare.evaluate_agent(task, agents[n], jax.random.key(0), 4, latency=True)
        sp = np.linalg.norm(np.diff(np.asarray(raw["positions"]), axis=1), axis=-1)
        row.update(speed_cells_per_step_mean=float(sp.mean()),
                   frac_steps_over_0_4=float((sp > 0.4).mean()), wall_s=time.time() - t0)
        out[n] = row
        print(n, json.dumps(row), flush=True)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("what", help="'diag' or a comma-separated list of agents")
    p.add_argument("--task", default="pointmaze-mjx-large")
    p.add_argument("--cache", default="out/cache")
    p.add_argument("--seed", type=int, default=0, help="stack seed")
    p.add_argument("--override", default="{}",
                   help="a [stack]-style JSON table over the task's, e.g. "
                        '\'{"train": {"var_weight": 8.0}}\'')
    p.add_argument("--json", default=None, help="output file (default: bench/results/...)")
    args = p.parse_args(argv)
    task = tasks.load(args.task)
    override = json.loads(args.override)
    st, ds, where = pipeline.get_stack(task, args.cache, overridden(task, override),
                                       seed=args.seed, show=False)
    res = {"stack": str(where), "task": args.task, "seed": args.seed, "override": override}
    if args.what == "diag":
        res.update(diagnose(task, st))
    else:
        res.update(timing(task, st, ds, args.what.split(",")))
    print(json.dumps(res, indent=1))
    print(write(f"level0_{args.task.replace('-', '_')}_{args.what.replace(',', '_')}"
                f"_s{args.seed}", res, args.json))


if __name__ == "__main__":
    main()
