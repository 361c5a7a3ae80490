"""Does a family stack's latent place the agent on maps it never saw? A fresh 3 x 512 MLP
position probe is fitted on 90 % of the training maps' data episodes; its error (cells)
is read on the other 10 %, on reset states of the training maps, and on reset states of
each unseen map. A latent that places the agent on the training maps only leaves every
planner on an unseen map lost, whatever its top level.

Run: .venv/bin/python bench/unseen_probe.py --task diverse-mazes --seeds 0 [--json OUT]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import numpy as np

from bench.common import table, write
from bench.probe_precision import mlp_probe, probe_data
from bench.unseen_mazes import banded
from hplan import tasks
from hplan.cli import unseen_map_task
from hplan.train import pipeline

ROOT = Path(__file__).resolve().parents[1]


def probe_errors(task, seed: int, maps: list[str], cache: str, updates: int,
                 states: int) -> list[dict]:
    st, ds, where = pipeline.get_stack(task, cache, seed=seed, show=True)
    z, xy, test = probe_data(st, ds, task.name)
    rng = np.random.default_rng(seed)
    fit = rng.choice(np.nonzero(~test)[0], min(int((~test).sum()), 60000), replace=False)
    predict = mlp_probe(z[fit], xy[fit], updates, seed)

    def err(zz, pp):
        e = np.linalg.norm(predict(zz) - pp, axis=-1)
        return {"median": float(np.median(e)), "p90": float(np.percentile(e, 90))}

    model = st.model()
    enc = jax.jit(jax.vmap(model.encode))

    def resets(t):
        s = jax.vmap(t.env.reset)(jax.random.split(jax.random.key(seed + 1), states))
        return np.asarray(enc(s.obs)), np.asarray(s.metrics["xy"])

    rows = [{"seed": seed, "maps": "training, held-out data episodes", **err(z[test], xy[test])},
            {"seed": seed, "maps": "training, reset states", **err(*resets(banded(task, 9, 12)))}]
    for f in maps:
        t = unseen_map_task(task, f, min_distance=9, max_distance=12)
        rows.append({"seed": seed, "maps": f"unseen {Path(f).stem}", **err(*resets(t))})
    for r in rows:
        r["stack"] = str(where)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="diverse-mazes")
    p.add_argument("--seeds", default="0")
    p.add_argument("--maps", default=str(ROOT / "tasks/layouts/diverse-test"))
    p.add_argument("--updates", type=int, default=3000)
    p.add_argument("--states", type=int, default=512, help="reset states per map set")
    p.add_argument("--cache", default="out/cache")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    task = tasks.load(a.task)
    maps = sorted(str(f) for f in Path(a.maps).glob("*.txt"))
    rows = [r for s in a.seeds.split(",")
            for r in probe_errors(task, int(s), maps, a.cache, a.updates, a.states)]
    print(f"{task.name}: MLP position probe error, cells")
    print(table(rows, ["seed", "maps", "median", "p90"]))
    print(f"wrote {write(f'unseen_probe_{task.name}', {'task': task.name, 'rows': rows}, a.json)}")


if __name__ == "__main__":
    main()
