"""How a family task's bank graph falls apart per map, and where its bridges go. Per
stack: pieces a map's graph (before bridges) falls into, the maps whose largest piece
holds one room only (two-rooms maps: the data never joined the two sides of the
dividing wall), and the bridges (`bridge` cap, `bridges` out of each island,
optionally checked by critic0 with `--bridge-critic`) that cross a wall: oracle geodesic
over 2 w + 3 steps. Also the maps whose data never crossed the dividing wall (no episode
on both sides: no graph can hold the door there) and the maps whose two rooms the
bridged graph joins only across the wall (without its across-wall bridges no piece
holds states of both rooms: a route there runs through the wall).

Run: .venv/bin/python bench/graph_islands.py --task bench/tasks/two-rooms-random-patch2.toml
     --seeds 0,1,2 [--edges states] [--bridge 2] [--bridges 2] [--bridge-critic 5] [--spread]
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


def both_rooms(links, groups: np.ndarray, west: np.ndarray) -> set[int]:
    """The maps on which some piece of the graph `links` holds states of both rooms
    (`west` [M]: bank state west of its map's dividing wall)."""
    return {g for g, (sel, lab) in pieces(links, groups).items()
            if np.intersect1d(lab[west[sel]], lab[~west[sel]]).size}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="bench/tasks/two-rooms-random-patch2.toml")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--bank", type=int, default=16384)
    p.add_argument("--edges", default="states", choices=("path", "states"))
    p.add_argument("--bridge", type=float, default=2.0)
    p.add_argument("--bridges", type=int, default=1, help="links out of each island")
    p.add_argument("--bridge-critic", type=float, default=0.0)
    p.add_argument("--spread", action="store_true",
                   help="the bank spread farthest-first over each map (GraphLevelConfig.spread)")
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
        draw = "spread" if a.spread else 0
        idx, bank = ctx.bank(a.bank, draw)
        edges = C.state_edges if a.edges == "states" else C.path_edges
        links, points = edges(st, ds, idx)
        groups, xy = ctx.bank_groups(a.bank, draw), ctx.bank_xy(a.bank, draw)
        # (a state on the wall's west face sits at its column: west is left of its middle)
        wall = np.array([dividing_wall(lay) + 0.5 for lay in orc.layouts])
        west = xy[:, 1] < wall[groups]
        per = pieces(links, groups)
        one_room = 0
        for sel, lab in per.values():
            big = lab == np.bincount(lab).argmax()
            one_room += int(west[sel][big].all() or (~west[sel][big]).all())
        check = C.critic_too_far(st, bank, a.bridge_critic) if a.bridge_critic > 0 else None
        full = C.bridged(np.asarray(points), links, groups, a.bridge, a.bridges, check)
        n0 = len(links[0])
        bs, bd, bw = (np.asarray(v)[n0:] for v in full)
        geo = orc.geodesic(xy[bs], xy[bd], groups[bs])
        across = geo > 2 * bw + 3.0
        keep = np.r_[np.ones(n0, bool), ~across]
        joined = both_rooms(full, groups, west)
        honest = both_rooms(tuple(np.asarray(v)[keep] for v in full), groups, west)
        side = np.asarray(ds.xy)[..., 1] < wall[np.asarray(ds.groups)][:, None]
        crossed = np.bincount(np.asarray(ds.groups), (side.any(1) & ~side.all(1)).astype(int),
                              minlength=len(wall))
        n_pieces = [int(lab.max()) + 1 for _, lab in per.values()]
        rows.append({"stack": seed, "maps": len(per), "pieces_median": float(np.median(n_pieces)),
                     "pieces_max": max(n_pieces), "one_room_maps": one_room,
                     "bridges": len(bs), "across_wall": int(across.sum()),
                     "no_door_data": int((crossed == 0).sum()),
                     "rooms_only_across": len(joined - honest)})
    cols = list(rows[0])
    print(table(rows, cols))
    path = write("graph_islands", {"task": a.task, "args": vars(a), "rows": rows}, a.json)
    print(f"wrote {path}")
    return {"rows": rows}


if __name__ == "__main__":
    main()
