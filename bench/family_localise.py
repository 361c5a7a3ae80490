"""On a task family (one map per episode), how often is a recorded state's latent-nearest
bank state on its own map? That is where a graph level places the agent; a state placed
on another map is routed through that map's door. Also: the map chosen jointly from two
states of one map (the agent and its target, `GraphLevelConfig.family`), in the latent
and, for reference, in raw pixels; and the latent covariance's spectrum (how much of the
latent's variance the map leaves to the agent's position).

Run: .venv/bin/python bench/family_localise.py --task two-rooms-random --seed 0
     [--banks 4096,16384] [--queries 2000] [--json OUT]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np

from bench.common import table, write
from hplan import tasks
from hplan.train import pipeline


def map_distances(x: np.ndarray, bank: np.ndarray, groups: np.ndarray, n_maps: int
                  ) -> np.ndarray:
    """[Q, K] distance of each query to each map's nearest bank state."""
    b, g = jnp.asarray(bank, jnp.float32), jnp.asarray(groups)

    @jax.jit
    def one(q):
        return jnp.sqrt(jnp.maximum(jax.ops.segment_min(
            jnp.sum((b - q) ** 2, -1), g, n_maps), 0.0))

    return np.concatenate([np.asarray(jax.vmap(one)(jnp.asarray(x[i:i + 256], jnp.float32)))
                           for i in range(0, len(x), 256)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="two-rooms-random")
    p.add_argument("--seed", type=int, default=0, help="stack seed")
    p.add_argument("--banks", default="4096,16384")
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--cache", default="out/cache")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    task = tasks.load(a.task)
    st, ds, where = pipeline.get_stack(task, a.cache, seed=a.seed, show=False)
    if ds.groups is None:
        sys.exit(f"{a.task} has one map: use a task family, e.g. two-rooms-random")
    n, t1 = ds.obs.shape[:2]
    _, g = np.unique(np.repeat(np.asarray(ds.groups), t1), return_inverse=True)
    n_maps = int(g.max()) + 1
    z = np.asarray(st.encode(ds.obs)).reshape(n * t1, -1)
    pix = ds.obs.reshape(n * t1, -1)
    eig = np.linalg.eigvalsh(np.cov(z.T))[::-1]
    rng = np.random.default_rng(a.seed)
    rows = []
    for size in map(int, a.banks.split(",")):
        bank = rng.choice(n * t1, size, replace=False)
        q1 = rng.choice(np.setdiff1d(np.arange(n * t1), bank), a.queries, replace=False)
        q2 = np.array([rng.choice(np.flatnonzero(g == g[i])) for i in q1])  # same map
        for space, x in (("latent", z), ("pixels", pix)):
            d1 = map_distances(x[q1], x[bank], g[bank], n_maps)
            d2 = map_distances(x[q2], x[bank], g[bank], n_maps)
            rows.append({"bank": size, "space": space,
                         "own map, one state": float((d1.argmin(1) == g[q1]).mean()),
                         "own map, two states": float(((d1 + d2).argmin(1)
                                                       == g[q1]).mean())})
    print(f"{a.task} stack {a.seed}: {n_maps} maps, {a.queries} held-out states; latent "
          f"covariance: top eigenvalue {eig[0]:.3g} of {eig.sum():.3g}")
    print(table(rows, list(rows[0])))
    out = write(f"family_localise_{task.name}_s{a.seed}",
                {"task": task.name, "seed": a.seed, "stack": str(where), "maps": n_maps,
                 "latent_cov_eigenvalues": [float(v) for v in eig], "rows": rows}, a.json)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
