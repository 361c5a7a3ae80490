"""System 1: a distilled policy recovers a known controller; `hplan distill` resumes after
a kill; agents that need a policy, and policies from another task, are refused clearly."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hplan import agents as A
from hplan import distill as D
from hplan.agents import system1 as S1
from hplan.agents.actuator import MPCConfig
from hplan.eval.runner import make_evaluate

FAST = D.DistillConfig(rounds=1, episodes=4, eval_episodes=4, steps=100, batch=64,
                       chunk_updates=50, hidden=64)
FLAT = A.AgentConfig(name="flat", actuator=MPCConfig(horizon=4, iters=3, restarts=2,
                                                     running=0.1, terminal=0.0,
                                                     critic="path"))


def test_student_recovers_a_known_linear_controller():
    """Labels from a = K (g - z) (the same action repeated over the chunk): on states it
    never saw, the student's chunk matches the controller."""
    d, a, c = 6, 2, 4
    rng = np.random.default_rng(0)
    gain = rng.normal(0, 0.05, (a, d)).astype(np.float32)

    def sample(n):
        z = rng.normal(0, 1, (n, d)).astype(np.float32)
        g = rng.normal(0, 1, (n, d)).astype(np.float32)
        act = (g - z) @ gain.T
        return {"z": z, "subgoal": g, "label": np.repeat(act[:, None], c, 1)}

    train, test = sample(4096), sample(512)
    assert np.abs(train["label"]).max() < 1  # inside the action box the tanh spans
    student = S1.new_student(S1.PolicyShape(d, a, c, hidden=64), scale=1.0)
    graph, params = nnx.split(student)
    cfg = dataclasses.replace(FAST, steps=1500, batch=256, chunk_updates=250, lr=3e-3)
    params, hist = D.train_round(graph, params, train, cfg, None, "t", show=False)
    pred = np.asarray(nnx.merge(graph, params)(jnp.asarray(test["z"]),
                                               jnp.asarray(test["subgoal"])))
    err = np.mean((pred - test["label"]) ** 2)
    assert err < 0.05 * np.var(test["label"]), (err, np.var(test["label"]))
    assert hist[-1]["loss"] < hist[0]["loss"]


def test_distill_resumes_after_a_kill_and_its_policy_acts(rooms, tmp_path, monkeypatch):
    task, st, _, ctx = rooms
    out = tmp_path / "policy"
    real_eval, real_round = D.evaluate_student, D.run_round

    def killed(*args, **kw):
        raise KeyboardInterrupt("killed after round 0 was trained and saved")

    monkeypatch.setattr(D, "evaluate_student", killed)
    with pytest.raises(KeyboardInterrupt):
        D.distill(task, FLAT, ctx, out, FAST, show=False)
    assert (out / "round0" / "data.npz").is_file() and (out / "round0" / "ckpt").is_dir()
    assert not (out / "round1").exists()

    rounds = []
    monkeypatch.setattr(D, "evaluate_student", real_eval)
    monkeypatch.setattr(D, "run_round",
                        lambda *a, **kw: rounds.append(a[3] is not None) or real_round(*a, **kw))
    meta = D.distill(task, FLAT, ctx, out, FAST, show=False)
    assert rounds == [True]  # round 0's data was kept: only the DAgger round ran
    assert [r["round"] for r in meta["rounds_done"]] == [0, 1]
    assert meta["rounds_done"][1]["data"] > meta["rounds_done"][0]["data"]  # aggregated
    # A different request on the same directory is refused, nothing deleted.
    with pytest.raises(ValueError, match="Nothing was deleted"):
        D.distill(task, FLAT, ctx, out, dataclasses.replace(FAST, steps=150), show=False)

    # The policy acts as a level-0 actuator: bounded actions, no planner evaluations; as
    # MPC's warm start, the planner spends what its (smaller) config says.
    with_policy = A.Context(task, st, ctx.data, policy=str(out))
    small = dataclasses.replace(FLAT.actuator, iters=2, restarts=1)
    for kind, actuator, evals in (("system1", FLAT.actuator, 0), ("system1+mpc", small, 2)):
        cfg = dataclasses.replace(FLAT, actuator_kind=kind, actuator=actuator)
        res = jax.jit(make_evaluate(task, A.build(cfg, with_policy)))(
            jax.random.split(jax.random.key(7), 4))
        assert np.all(np.abs(np.asarray(res["actions"])) <= 1 + 1e-6), kind
        assert int(np.asarray(res["info"]["n_evals"]).max()) == evals, kind


def test_agents_and_policies_from_elsewhere_are_refused(rooms, tmp_path, capsys):
    from hplan import cli

    task, st, ds, ctx = rooms
    assert cli.main(["distill", "--task", "two-rooms", "--agent", "no-such-agent",
                     "--out", str(tmp_path / "x")]) == 2
    assert "no-such-agent" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # refused before any work
    s1 = A.load_agent("system1")
    with pytest.raises(ValueError, match="hplan distill"):
        A.build(s1, ctx)  # no --policy
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    meta = {**S1.stack_id(task, st), "task": "maze32", "rounds_done": [{}]}
    (foreign / "policy.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="distilled for task='maze32'"):
        A.build(s1, A.Context(task, st, ds, policy=str(foreign)))
    with pytest.raises(ValueError, match="only a learned-model planner"):
        D.distill(task, A.load_agent("flat-true"), ctx, tmp_path / "y", FAST)
