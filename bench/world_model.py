"""Summarise trained world-model runs (from `hplan train`) into one table + JSON.

Run: .venv/bin/hplan train --task large --out out/large  (and two-rooms), then
     .venv/bin/python bench/world_model.py out/large out/two-rooms
Targets (issue 5): probe R^2 >= 0.95 at every level; level-0 8-step relative error
<= 0.05; critic Spearman >= 0.98 and descent consistency >= 0.99 on the large layout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import table, write


def summary(run: Path) -> dict:
    m = json.loads((run / "metrics.json").read_text())
    cfg = json.loads((run / "config.json").read_text())
    e0 = m["pred_error"]["level0"]
    row = {"task": m["task"], "run": str(run), "wm_updates": cfg["stack"]["train"]["steps"],
           "critic_updates": cfg["stack"]["critic"]["steps"],
           "effective_rank": m["effective_rank"],
           "collapsed": m["collapsed"]}
    row.update({f"probe_{k}": v for k, v in m["probe_r2"].items()})
    h8 = e0["horizon_steps"].index(8) if 8 in e0["horizon_steps"] else -1
    row["l0_err_8"] = e0["all"][h8]
    row["l0_err_8_near_wall"] = e0["near_wall"][h8] if "near_wall" in e0 else float("nan")
    row["near_wall_share"] = e0.get("near_wall_share", float("nan"))
    for lv, e in m["pred_error"].items():
        row[f"{lv}_err_own_stride"] = e["all"][0]
    for name, c in m.get("critic", {}).items():
        row[f"critic_{name}_spearman"] = c["spearman"]
        row[f"critic_{name}_descent"] = c["descent_consistency"]
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    rows = [summary(Path(r)) for r in args.runs]
    cols = ["task", "probe_encoder", "probe_level0", "probe_level1", "l0_err_8",
            "l0_err_8_near_wall", "critic_level0_spearman", "critic_level0_descent",
            "critic_level1_spearman", "critic_level1_descent", "critic_latent_l2_spearman",
            "critic_latent_l2_descent"]
    print(table(rows, cols))
    print(f"wrote {write('world_model', {'rows': rows}, args.out)}")


if __name__ == "__main__":
    main()
