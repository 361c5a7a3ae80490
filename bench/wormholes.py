"""Wormholes in the bank graphs, before and after the construction fixes.

A wormhole edge: its endpoints are more than twice as far apart along the true geodesic
(the point-maze oracle, in full-speed steps) as the edge weight says, plus one step for
grid quantisation: `geodesic > 2 w + 1`. A wormhole route: a pair of bank states the
graph's shortest path puts that much closer than the geodesic (sampled pairs). A wormhole
join: a free-cell centre whose latent-nearest bank state (how the current state and the
goal join the graph) is that much farther than the latent distance says.

Graphs, over 4096 encoded dataset states:
- before: critic0 hops (hier-2, hier-3) / the data's own transitions (hier-2-data), over a
  uniform draw of dataset states;
- after: the same over a bank that holds every exactly repeated (pinned) state first, and
  critic0 hops kept only where the data's transitions confirm them.
Run: .venv/bin/python bench/wormholes.py --tasks large,maze32 [--family 2 --layouts 20]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench.common import table, write
from hplan import agents, tasks
from hplan.agents import context as C
from hplan.agents import graph as G
from hplan.train import pipeline

BANK = 4096


def count(task, xy, src, dst, w, dist, rng) -> dict:
    geo = task.oracle.geodesic
    bad = geo(xy[src], xy[dst]) > 2 * w + 1.0
    a, b = rng.integers(0, len(xy), 20000), rng.integers(0, len(xy), 20000)
    d = dist[a, b]
    routes = (geo(xy[a], xy[b]) > 2 * d + 1.0) & (d < G.BIG)
    return {"edges": int(len(src)), "wormhole_edges": int(bad.sum()),
            "wormhole_route_share": float(routes.mean())}


def joins(task, st, bank_z, bank_xy, scale) -> dict:
    lay = task.env.unwrapped.layout
    cells = lay.free_cells + 0.5
    z = st.encode(np.stack([np.asarray(task.env.unwrapped.observe(c)) for c in cells]))
    d2 = ((z[:, None] - np.asarray(bank_z)[None]) ** 2).sum(-1)
    j = d2.argmin(1)
    cost = np.sqrt(d2[np.arange(len(j)), j]) / scale
    bad = task.oracle.geodesic(cells, bank_xy[j]) > 2 * cost + 1.0
    return {"joins": int(len(j)), "wormhole_joins": int(bad.sum())}


def graphs(task, st, ds, seed: int = 0) -> list[dict]:
    ctx = agents.Context(task, st, ds)
    flat_xy = ds.xy.reshape(-1, ds.xy.shape[-1])
    flat_obs = ds.obs.reshape(-1, *ds.obs.shape[2:])
    n = len(flat_xy)
    rows = []
    rng = np.random.default_rng(seed)
    banks = {"before": np.random.default_rng(seed).choice(n, min(BANK, n), replace=False),
             "after": C.bank_index(ds, BANK, seed)}
    for when, idx in banks.items():
        z = st.encode(flat_obs[idx])
        xy = flat_xy[idx]
        data = C.data_edges(st, ds, idx)[0]
        critic = C.critic_edges(st, z)
        kinds = {"data": data,
                 "critic": C.verified(critic, data, len(idx)) if when == "after" else critic}
        joined = joins(task, st, z, xy, ctx.scale)  # the same bank for both kinds
        for kind, links in kinds.items():
            dist = G.shortest_paths(len(idx), *links)
            rows.append({"task": task.name, "graph": f"{kind} ({when})",
                         **count(task, xy, *links, dist, rng), **joined})
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tasks", default="large,maze32")
    p.add_argument("--seed", type=int, default=0, help="stack seed")
    p.add_argument("--family", type=int, default=None, help="also this family seed")
    p.add_argument("--layouts", type=int, default=20)
    p.add_argument("--cache", default="out/cache")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    rows = []
    todo = [tasks.load(t) for t in args.tasks.split(",") if t]
    if args.family is not None:
        from bench.family import STACK, layout_tasks

        todo += [t for t, _ in layout_tasks(args.family, args.layouts, 4, STACK)]
    for task in todo:
        st, ds, _ = pipeline.get_stack(task, args.cache, seed=args.seed, show=False)
        rows += graphs(task, st, ds)
        print(table(rows[-4:], ["task", "graph", "edges", "wormhole_edges",
                                "wormhole_route_share", "wormhole_joins"]), flush=True)
    cols = ["task", "graph", "edges", "wormhole_edges", "wormhole_route_share", "joins",
            "wormhole_joins"]
    print(table(rows, cols))
    print(f"wrote {write('wormholes', {'bank': BANK, 'rows': rows}, args.out)}")


if __name__ == "__main__":
    main()
