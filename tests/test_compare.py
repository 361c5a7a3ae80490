"""Benchmark plumbing: optimal steps and SPL from the env's oracle, layout tasks, and the
bench command end to end on a layout it has never seen."""

import json
import re

import numpy as np
import pytest

from hplan import tasks
from hplan.cli import layout_task, main
from hplan.eval.compare import spl

LAYOUT = """\
#########
#.......#
#.#####.#
#.#...#.#
#...#...#
#########
"""


def test_optimal_steps_follow_the_geodesic_through_every_target():
    t = tasks.load("four-rooms-staged")
    oracle = t.oracle
    s = t.env.reset(__import__("jax").random.key(0))
    first = __import__("types").SimpleNamespace(
        metrics={"xy": np.asarray(s.metrics["xy"])[None]},
        info={"targets": np.asarray(s.info["targets"])[None]})
    opt = oracle.optimal_steps(first)[0]
    # Never longer than 4-connected cell BFS (diagonal moves help), never shorter than the
    # straight lines between the targets at full speed along both axes.
    pts = np.concatenate([np.asarray(s.metrics["xy"])[None], np.asarray(s.info["targets"])])
    cheb = np.abs(np.diff(pts, axis=0)).max(axis=1).sum() / 0.5
    assert cheb - 1 <= opt <= oracle.bfs_steps(first)[0]


def test_spl_weights_success_by_path_length():
    ok = np.array([True, True, False])
    np.testing.assert_allclose(spl(ok, np.array([10.0, 10.0, 10.0]), np.array([10.0, 20.0, -1])),
                               [1.0, 0.5, 0.0])


def test_layout_task_sizes_itself(tmp_path):
    p = tmp_path / "m.txt"
    p.write_text(LAYOUT)
    t = layout_task(str(p), start=[1, 1], goal=[3, 3])
    lay = t.env.unwrapped.layout
    # (1,1) down to (4,1), right to (4,3), up to (3,3): 6 moves.
    assert t.spec.env_args["start_goal"] == "fixed" and lay.distance((1, 1), (3, 3)) == 6
    t2 = layout_task(str(p))
    assert t2.spec.env_args["start_goal"] == "random" and t2.spec.env_args["min_distance"] >= 1
    assert t2.episode_length >= 60


# slow (~140 s): trains a stack; test_family's unseen-map bench covers the CLI by default.
@pytest.mark.slow
def test_bench_cli_end_to_end_on_an_unseen_layout(tmp_path, capsys):
    p = tmp_path / "m.txt"
    p.write_text(LAYOUT)
    out = tmp_path / "r.json"
    rc = main(["bench", "--layout", str(p), "--start", "1,1", "--goal", "3,3",
               "--agents", "flat-true,flat-mpc,hier-2", "--episodes", "2",
               "--train-steps", "250", "--critic-steps", "500",
               "--cache", str(tmp_path / "cache"), "--json", str(out),
               "--plot", str(tmp_path / "p.png"), "--no-latency"])
    assert rc == 0
    res = json.loads(out.read_text())
    assert set(res["agents"]) == {"flat-true", "flat-mpc", "hier-2"}
    for row in res["agents"].values():
        assert {"success_rate", "spl", "mean_steps", "plan_ms_per_step", "compile_s",
                "model_evals_per_step", "path_ratio", "guardrail_violations"} <= set(row)
        assert 0.0 <= row["success_rate"] <= 1.0 and row["model_evals_per_step"] > 0
        assert 0.0 <= row["spl"] <= row["success_rate"]
    # Per-episode records with the start, goal and where the agent spent its time.
    rec = res["episode_records"]["hier-2"][0]
    assert {"start", "goal", "success", "steps", "optimal_steps", "final_distance",
            "most_visited", "most_visited_steps"} <= set(rec)
    # The oracle reaches this nearby goal; matched budgets: hierarchy never gets more.
    assert res["agents"]["flat-true"]["success_rate"] == 1.0
    assert (res["agents"]["hier-2"]["model_evals_per_step"]
            <= res["agents"]["flat-mpc"]["model_evals_per_step"])
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert "flat-true" in capsys.readouterr().out


@pytest.mark.parametrize("argv, match", [
    (["bench", "--task", "open", "--agents", "nope"], "unknown agent.*Known: .*flat-true"),
    (["bench", "--agents", "flat-mpc"], "give --task NAME, --layout FILE, or both"),
    (["bench", "--task", "open", "--layout", "x.txt"], "layout file 'x.txt' not found"),
    (["bench", "--task", "open", "--start", "1,1"], "--start/--goal go with --layout"),
])
def test_bench_bad_input(argv, match, capsys):
    assert main(argv) == 2
    assert re.search(match, capsys.readouterr().err)
