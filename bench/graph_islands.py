"""How a family task's bank graph falls apart per map, and where its bridges go. Per
stack: pieces a map's graph (before bridges) falls into, the maps whose largest piece
holds one room only (two-rooms maps: the data never joined the two sides of the
dividing wall), and the bridges (`bridge` cap, optionally checked by critic0 with
`--bridge-critic`) that cross a wall: oracle geodesic over 2 w + 3 steps.

Run: .venv/bin/python bench/graph_islands.py --task bench/tasks/two-rooms-random-patch2.toml
     --seeds 0,1,2 [--edges states] [--bridge 2] [--bridge-critic 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench.common import dividing_wall, table, write
from hplan import agents as A
from hplan import tasks
from hplan.agents import context as C
from hplan.train import pipeline


def pieces(links, groups: np.ndarray):
    """{map: (its bank ids, piece label of each)} of the graph `links` (src, dst, w)."""
    src, dst = np.asarray(links[0]), np.asarray(links[1])
    out = {}
    for g in np.unique(groups):
        sel = np.flatnonzero(groups == g)
        out[int(g)] = (sel, C.map_pieces(src, dst, sel)[2])
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="bench/tasks/two-rooms-random-patch2.toml")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--bank", type=int, default=16384)
    p.add_argument("--edges", default="states", choices=("path", "states"))
    p.add_argument("--bridge", type=float, default=2.0)
    p.add_argument("--bridge-critic", type=float, default=0.0)
    p.add_argument("--cache", default="out/cache")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    task = tasks.load(a.task)
    orc = task.oracle
    if orc is None or not getattr(task.env.unwrapped, "layouts", None):
        raise SystemExit(f"{a.task}: graph_islands needs a point-maze task family")
    rows = []
    for seed in (int(s) for s in a.seeds.split(",")):
        st, ds, _ = pipeline.get_stack(task, a.cache, seed=seed, show=False)
        ctx = A.Context(task, st, ds)
        idx, bank = ctx.bank(a.bank)
        edges = C.state_edges if a.edges == "states" else C.path_edges
        links, points = edges(st, ds, idx)
        groups, xy = ctx.bank_groups(a.bank), ctx.bank_xy(a.bank)
        per = pieces(links, groups)
        one_room = 0
        for g, (sel, lab) in per.items():
            west = xy[sel, 1] < dividing_wall(orc.layouts[g])
            big = lab == np.bincount(lab).argmax()
            one_room += int(west[big].all() or (~west[big]).all())
        check = C.critic_too_far(st, bank, a.bridge_critic) if a.bridge_critic > 0 else None
        full = C.bridged(np.asarray(points), links, groups, a.bridge, 1, check)
        n0 = len(links[0])
        bs, bd, bw = (np.asarray(v)[n0:] for v in full)
        geo = orc.geodesic(xy[bs], xy[bd], groups[bs])
        n_pieces = [int(lab.max()) + 1 for _, lab in per.values()]
        rows.append({"stack": seed, "maps": len(per), "pieces_median": float(np.median(n_pieces)),
                     "pieces_max": max(n_pieces), "one_room_maps": one_room,
                     "bridges": len(bs), "across_wall": int((geo > 2 * bw + 3.0).sum())})
    cols = list(rows[0])
    print(table(rows, cols))
    path = write("graph_islands", {"task": a.task, "args": vars(a), "rows": rows}, a.json)
    print(f"wrote {path}")
    return {"rows": rows}


if __name__ == "__main__":
    main()
