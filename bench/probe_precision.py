"""How precisely does a stack's latent place the agent? On held-out episodes (the last
10 %), the goal-space error of the stack's linear position probe and of a fresh 3 x 512
MLP probe fitted on the other 90 % (cells: median and 90th percentile). A latent that
places the agent no better than the success radius leaves level 0 unable to tell
"reached" from "not yet".

Run: .venv/bin/python bench/probe_precision.py --tasks two-rooms-random --seeds 0
     [--updates 3000] [--json OUT]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench.common import table, write
from bench.frozen_predictor import fit_predictor
from hplan import tasks
from hplan.train import pipeline


def probe_data(st, ds, name: str):
    """(latents [N, d], positions [N, k], held-out mask [N]) of every data state; the last
    10 % of episodes are held out."""
    if ds.xy is None:
        raise SystemExit(f"{name}: the env reports no goal-space position to probe")
    n, t1 = ds.obs.shape[:2]
    z = np.asarray(st.encode(ds.obs)).reshape(n * t1, -1)
    xy = np.asarray(ds.xy).reshape(n * t1, -1)
    return z, xy, np.repeat(np.arange(n) >= int(0.9 * n), t1)


def mlp_probe(z, xy, updates: int, seed: int):
    """A fresh 3 x 512 MLP position probe fitted on (z, xy): `predict(z) -> xy`."""
    predict, _ = fit_predictor(z, xy, np.zeros((len(z), 1), np.float32), updates, seed,
                               residual=False)  # the probe reads the latent alone
    return lambda q: predict(q, np.zeros((len(q), 1), np.float32))


def precision(task, seed: int, cache: str, updates: int) -> dict:
    st, ds, where = pipeline.get_stack(task, cache, seed=seed, show=False)
    z, xy, test = probe_data(st, ds, task.name)
    w, b = st.probe
    lin = np.linalg.norm(z @ np.asarray(w) + np.asarray(b) - xy, axis=-1)[test]
    predict = mlp_probe(z[~test], xy[~test], updates, seed)
    mlp = np.linalg.norm(predict(z[test]) - xy[test], axis=-1)
    return {"task": task.name, "seed": seed, "stack": str(where),
            "linear median": float(np.median(lin)), "linear p90": float(np.percentile(lin, 90)),
            "MLP median": float(np.median(mlp)), "MLP p90": float(np.percentile(mlp, 90))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="two-rooms-random")
    p.add_argument("--seeds", default="0")
    p.add_argument("--updates", type=int, default=3000)
    p.add_argument("--cache", default="out/cache")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    rows = [precision(tasks.load(t), int(s), a.cache, a.updates)
            for t in a.tasks.split(",") for s in a.seeds.split(",")]
    cols = ["task", "seed", "linear median", "linear p90", "MLP median", "MLP p90"]
    print("position error on held-out episodes (goal-space units: cells for mazes)")
    print(table(rows, cols))
    names = "_".join(sorted({r["task"] for r in rows}))
    print(f"wrote {write(f'probe_precision_{names}', {'rows': rows}, a.json)}")


if __name__ == "__main__":
    main()
