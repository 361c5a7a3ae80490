"""Agents over a learned stack: one jit per batch of episodes, bounded actions, compute
accounting, subgoals that make progress, levels that compose, flat learned MPC that
approaches the goal."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SMALL

from hplan import agents as A
from hplan import data, tasks
from hplan.agents import graph_level
from hplan.agents.actuator import MPCConfig, latent_cost
from hplan.agents.config import LevelSpec, parse_agent
from hplan.core import KeepOut
from hplan.eval.runner import make_evaluate
from hplan.train import pipeline
from hplan.wm.config import stack_config

EPISODES = 24
LOW = MPCConfig(horizon=8, iters=6, restarts=4, running=0.1, terminal=0.0, critic="path")
GRAPH = graph_level.Config(bank=512, edges="critic", reach=5.0, commit=0.5, patience=8)
HIER = A.AgentConfig(name="hier", actuator=LOW, levels=(LevelSpec("graph", GRAPH),))


def _bfs(task, a, b):
    lay = task.env.unwrapped.layout
    idx, dist = lay.cell_index(), lay.distances()
    a, b = np.floor(a).astype(int), np.floor(b).astype(int)
    return dist[idx[a[..., 0], a[..., 1]], idx[b[..., 0], b[..., 1]]]


def _keys(seed=1, n=EPISODES):
    return jax.random.split(jax.random.key(seed), n)


def _run(evaluate, keys):
    """Trace once: the jaxpr for inspection and the compiled program's output."""
    traced = jax.jit(evaluate).trace(keys)
    return traced.jaxpr, traced.lower().compile()(keys)


def _primitives(jaxpr) -> set[str]:
    """Names of all primitives in a jaxpr, nested ones (scan, cond, pjit bodies) included."""
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for value in eqn.params.values():
            for sub in value if isinstance(value, tuple | list) else (value,):
                if hasattr(sub, "eqns") or hasattr(getattr(sub, "jaxpr", None), "eqns"):
                    names |= _primitives(getattr(sub, "jaxpr", sub))
    return names


# -- definitions -------------------------------------------------------------------------
def test_shipped_agents_load_and_bad_files_point_at_the_line(tmp_path):
    names = set(A.available())
    assert {"flat-true", "flat-mpc", "flat-mpc-critic", "hier-2", "hier-2-data", "hier-3",
            "hier-3-data", "hier-macro", "hier-3-macro"} <= names
    for name in names:
        cfg = A.load_agent(name)
        assert cfg.name == name and cfg.actuator.horizon >= 1
    assert A.load_agent("flat-mpc").flat and A.load_agent("flat-mpc-critic").actuator.critic \
        == "path"
    h3 = A.load_agent("hier-3")
    assert [lv.kind for lv in h3.levels] == ["graph", "graph"] and h3.levels[0].every == 8
    assert [lv.kind for lv in A.load_agent("hier-3-macro").levels] == ["graph", "macro"]
    assert A.load_agent("hier-2-data").levels[0].config.edges == "data"
    assert [lv.kind for lv in A.load_agent("hier-imagine").levels] == ["imagine"]
    fam = A.load_agent("hier-2-data-family").levels[0].config  # base hier-2-data, patched
    assert (fam.family, fam.edges, fam.bank, fam.reach, fam.patience) == (True, "path", 16384,
                                                                          4.0, 8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        A.load_agent("hier-2").actuator.horizon = 3
    with pytest.raises(ValueError, match=r"<string>:2:1: unknown key 'horizn'"):
        parse_agent('name = "x"\nhorizn = 3\n')
    with pytest.raises(ValueError, match=r"<string>:3:1: planner='adam'.*Fix"):
        parse_agent('name = "x"\n[actuator]\nplanner = "adam"\n')
    with pytest.raises(ValueError, match=r"<string>:2:1: horizon = 2.5 is not a int"):
        parse_agent("[actuator]\nhorizon = 2.5")
    with pytest.raises(ValueError, match=r"<string>:2:1: critic='end'.*Fix: use one of"):
        parse_agent('[actuator]\ncritic = "end"')
    with pytest.raises(ValueError, match=r"<string>:7:1: commit=-1.0.*Fix"):
        parse_agent('[[levels]]\nkind = "graph"\n\n[[levels]]\nkind = "graph"\nreach = 2.0\n'
                    'commit = -1.0')
    with pytest.raises(ValueError, match=r"<string>:2:1: unknown level kind 'grpah'.*"
                       r"Fix: use one of: .*graph"):
        parse_agent('[[levels]]\nkind = "grpah"')
    with pytest.raises(ValueError, match=r"elites=9 > samples=8"):
        parse_agent("[actuator]\nsamples = 8\nelites = 9")
    with pytest.raises(ValueError, match="unknown agent 'nope'"):
        A.load_agent("nope")
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\n[[levels]]\nkind = "graph"\nreach = 3\n')
    assert A.load_agent(path).levels[0].config.reach == 3.0


def test_an_agent_file_can_name_its_base_and_say_only_what_differs(tmp_path):
    """`base` + `[level.N]` patches give exactly the base agent with those keys changed;
    `[actuator]` keys merge one by one, `[[levels]]` replaces; a shipped variant written
    this way keeps its settings; mistakes point at the line."""
    hier2 = A.load_agent("hier-2")
    f = tmp_path / "v.toml"
    f.write_text('base = "hier-2"\nname = "v"\n[level.0]\ntrack = 1.5\n'
                 '[actuator]\nhorizon = 5\n')
    v = A.load_agent(f)
    assert v.name == "v" and v.description == hier2.description
    assert v.levels[0].config == dataclasses.replace(hier2.levels[0].config, track=1.5)
    assert v.actuator == dataclasses.replace(hier2.actuator, horizon=5)
    assert v.surprise == hier2.surprise and v.levels[0].every == hier2.levels[0].every
    (tmp_path / "w.toml").write_text('base = "v.toml"\nname = "w"\n[[levels]]\nkind = "macro"\n')
    w = A.load_agent(tmp_path / "w.toml")  # a chain of bases, by relative path
    assert [lv.kind for lv in w.levels] == ["macro"] and w.actuator.horizon == 5
    (tmp_path / "unnamed.toml").write_text('base = "hier-2"\n')
    assert A.load_agent(tmp_path / "unnamed.toml").name == "unnamed"  # not "hier-2"
    s = A.load_agent("hier-2-data-surprise")  # shipped as base = "hier-2-data" + patches
    assert s.levels[0].config == dataclasses.replace(
        A.load_agent("hier-2-data").levels[0].config, relax=8) and s.surprise.react
    bad = {'base = "hier-2"\n[level.0]\ntrak = 1.5\n': r"b.toml:3:1: unknown key 'trak'",
           'base = "hier-2"\n\n[level.3]\ntrack = 1.5\n': r"b.toml:4:1: \[level.3\].*0 to 0",
           'name = "x"\n[level.0]\ntrack = 1.5\n': r"b.toml:3:1: .*has no base",
           'name = "x"\nbase = "nope"\n': r"b.toml:2:1: unknown agent 'nope'",
           'base = "b.toml"\n': r"b.toml:1:1: .*leads back to this file"}
    for text, want in bad.items():
        (tmp_path / "b.toml").write_text(text)
        with pytest.raises(ValueError, match=want):
            A.load_agent(tmp_path / "b.toml")


def test_inverse_final_step_needs_a_trained_head_and_a_sane_distance(rooms):
    from hplan.core import ConfigError

    task, _, _, ctx = rooms
    with pytest.raises(ConfigError, match="inverse_within"):
        MPCConfig(inverse_within=-1.0)
    cfg = dataclasses.replace(HIER, actuator=dataclasses.replace(LOW, inverse_within=1.0))
    with pytest.raises(ConfigError, match="inverse_weight = 1.0"):  # rooms: no head
        A.build(cfg, ctx)


def test_an_agent_without_data_for_its_bank_is_told_what_to_pass(rooms):
    task, st, _, _ = rooms
    with pytest.raises(ValueError, match="step scale comes from dataset states"):
        A.make("hier-2", task, st)


# -- two rooms: whole episodes under one jit ---------------------------------------------
def _check_run(task, cfg, jaxpr, out):
    scans = [e for e in jaxpr.eqns if e.primitive.name == "scan"]
    assert len(scans) == 1 and scans[0].params["length"] == task.episode_length
    acts = np.asarray(out["actions"])
    assert acts.shape == (EPISODES, task.episode_length, 2)
    assert np.all(np.isfinite(acts)) and np.all(np.abs(acts) <= 1.0)
    a = cfg.actuator
    n_low = a.restarts * a.iters
    info = out["info"]
    np.testing.assert_array_equal(info["n_evals"], n_low)
    # graph levels join by latent distance: no model or critic calls of their own; one
    # model step predicts the next latent (the agent's surprise)
    np.testing.assert_array_equal(info["n_model"], n_low * a.horizon + 1)
    np.testing.assert_array_equal(info["n_critic"], n_low * a.critic_calls)


def test_flat_agent_is_one_jitted_program_with_bounded_actions_and_counted_compute(rooms):
    task, st, ds, ctx = rooms
    cfg = A.AgentConfig(actuator=LOW)
    _check_run(task, cfg, *_run(make_evaluate(task, A.build(cfg, ctx)), _keys()))


@pytest.fixture(scope="module")
def hier_run(rooms):
    """One compiled batch of hierarchical episodes, shared by the tests below."""
    task, st, ds, ctx = rooms
    policy = A.build(HIER, ctx)
    jaxpr, out = _run(make_evaluate(task, policy), _keys(2))
    return policy, jaxpr, out


def test_hierarchical_agent_is_one_jitted_program_with_counted_compute(rooms, hier_run):
    task = rooms[0]
    _, jaxpr, out = hier_run
    _check_run(task, HIER, jaxpr, out)
    # The field to the goal is recomputed only when the target or the cuts change: a
    # while loop that runs on those steps alone.
    assert "while" in _primitives(jaxpr)


def test_graph_subgoal_lies_between_start_and_goal(rooms, hier_run):
    task, _, _, ctx = rooms
    out = hier_run[2]
    idx = np.asarray(out["info"]["subgoal_idx"])[:, 0]
    bank_xy = ctx.bank_xy(GRAPH.bank)
    start, goal = np.asarray(out["positions"])[:, 0], np.asarray(out["goal"])
    assert np.mean(idx >= 0) >= 0.9  # the goal (>= 8 cells away) is out of reach
    sub = np.where(idx[:, None] >= 0, bank_xy[np.maximum(idx, 0)], goal)
    d_start, d_sub = _bfs(task, start, goal), _bfs(task, sub, goal)
    assert np.mean(d_sub < d_start) >= 0.8
    assert np.mean(d_start - d_sub) >= 1.0
    assert np.median(_bfs(task, start, sub)) <= 5  # nearby: a few cells, not half the maze


def test_hierarchical_agent_approaches_the_goal(rooms, hier_run):
    task = rooms[0]
    out = hier_run[2]
    pos, goal = np.asarray(out["positions"]), np.asarray(out["goal"])
    d0, d_end = _bfs(task, pos[:, 0], goal), _bfs(task, pos[:, -1], goal)
    assert d_end.mean() < 0.8 * d0.mean()


def test_a_level_localised_by_observation_reads_the_state_and_approaches_the_goal(rooms):
    """`localise = "observation"`: the graph level reads the agent's observation through
    its `locate` hook (here through a `hold`), and the agent still closes in."""
    task, _, _, ctx = rooms
    obs_graph = dataclasses.replace(GRAPH, localise="observation")
    cfg = dataclasses.replace(HIER, levels=(LevelSpec("graph", obs_graph, 2),))
    out = jax.jit(make_evaluate(task, A.build(cfg, ctx)))(_keys(3))
    pos, goal = np.asarray(out["positions"]), np.asarray(out["goal"])
    d0, d_end = _bfs(task, pos[:, 0], goal), _bfs(task, pos[:, -1], goal)
    assert d_end.mean() < 0.8 * d0.mean()


def test_a_new_level_is_one_file_and_the_trivial_one_is_flat_mpc(rooms):
    """`goal_level.py` (subgoal = target) chained over MPC acts exactly as flat MPC."""
    task, _, _, ctx = rooms
    flat = A.build(A.AgentConfig(actuator=LOW), ctx)
    trivial = A.build(dataclasses.replace(
        HIER, levels=(LevelSpec("goal", A.level_module("goal").Config()),)), ctx)
    keys = _keys(5, 6)
    a = jax.jit(make_evaluate(task, flat))(keys)
    b = jax.jit(make_evaluate(task, trivial))(keys)
    np.testing.assert_array_equal(np.asarray(a["positions"]), np.asarray(b["positions"]))
    np.testing.assert_array_equal(np.asarray(a["success"]), np.asarray(b["success"]))


def test_three_layers_graph_far_subgoal_macro_middle_level0_below(rooms):
    task, _, _, ctx = rooms
    macro = A.level_module("macro").Config(samples=32, iters=2)
    far = dataclasses.replace(GRAPH, reach=16.0, patience=0)
    cfg = dataclasses.replace(HIER, levels=(LevelSpec("graph", far, 8),
                                            LevelSpec("macro", macro, 4)))
    out = jax.jit(make_evaluate(task, A.build(cfg, ctx), steps=12))(_keys(n=4))
    info = out["info"]
    assert np.all(np.asarray(info["subgoal_idx"]) == -2)  # a predicted latent
    assert np.all(np.isfinite(np.asarray(info["subgoal"])))
    assert np.all(np.abs(np.asarray(out["actions"])) <= 1.0)
    # Macro plan every 4 steps, far subgoal every 8, level-0 plan every step: counted.
    t = np.arange(12)
    n_low = LOW.restarts * LOW.iters
    fresh = (t % 4 == 0)
    np.testing.assert_array_equal(info["n_critic"], np.broadcast_to(
        n_low * LOW.horizon + fresh * macro.samples * macro.iters, (4, 12)))
    np.testing.assert_array_equal(info["n_model"], np.broadcast_to(
        n_low * LOW.horizon + 1 + fresh * (macro.samples * macro.iters * macro.horizon + 1),
        (4, 12)))
    top = np.asarray(info["top_idx"])
    assert np.all(top[:, :8] == top[:, :1])  # held between selections


def test_keep_out_penalty_acts_on_probed_latent_positions(rooms):
    task, st, ds, ctx = rooms
    zone = KeepOut(center=(4.5, 3.5), radius=1.0)
    guarded = tasks.build(dataclasses.replace(task.spec, guardrails=(zone,)),
                          base_dir=tasks.TASKS_DIR)
    plain = latent_cost(ctx, LOW)
    fenced = latent_cost(A.Context(guarded, st, ds, scale=ctx.scale), LOW)
    model, (w, b) = st.model(), st.probe
    obs = task.env.unwrapped.observe
    z0, zg = model.encode(obs(jnp.array([4.5, 1.5]))), model.encode(obs(jnp.array([4.5, 5.5])))
    diff = jax.jit(lambda a: (fenced(z0, zg, a) - plain(z0, zg, a), model.rollout(0, z0, a)))
    for acts in (jnp.tile(jnp.array([[0.0, 1.0]]), (LOW.horizon, 1)),  # through the zone
                 jnp.tile(jnp.array([[-1.0, 0.0]]), (LOW.horizon, 1))):  # away from it
        extra, zs = diff(acts)
        probed = np.asarray(zs) @ w + b
        v = np.maximum(0.0, zone.radius + LOW.guard_margin
                       - np.linalg.norm(probed - np.array(zone.center), axis=-1))
        assert float(extra) == pytest.approx(LOW.guard_weight * np.sum(v + v * v), rel=1e-3,
                                             abs=1e-3)
    assert v.sum() == 0 and float(extra) == pytest.approx(0.0, abs=1e-4)  # moving away


def test_path_critic_is_counted_per_rollout_step_and_prefers_arriving_early(rooms):
    task, st, _, ctx = rooms
    model = st.model()
    obs = task.env.unwrapped.observe
    z0, zg = model.encode(obs(jnp.array([4.5, 1.5]))), model.encode(obs(jnp.array([4.5, 3.5])))
    right = jnp.array([[0.0, 1.0]])
    early = jnp.concatenate([jnp.tile(right, (4, 1)), jnp.zeros((LOW.horizon - 4, 2))])
    late = early[::-1]
    path = latent_cost(ctx, dataclasses.replace(LOW, running=0.0))
    # Two plans that end at the same place: the one that gets there first costs less.
    assert float(path(z0, zg, early)) < float(path(z0, zg, late)) - 0.3


def test_reverse_cost_keeps_the_agent_from_turning_back(rooms):
    """`reverse`: with the last action to the right (+col) and the subgoal two cells to the
    left, plain MPC heads left; a large reversal cost makes it stop or turn, not reverse."""
    from hplan.agents.actuator import MPCState
    from hplan.core import ConfigError

    with pytest.raises(ConfigError, match="reverse"):
        MPCConfig(reverse=-1.0)
    task, st, _, ctx = rooms
    model = st.model()
    obs = task.env.unwrapped.observe
    z, zg = model.encode(obs(jnp.array([4.5, 3.5]))), model.encode(obs(jnp.array([4.5, 1.5])))
    cols = {}
    for w in (0.0, 20.0):
        act = A.mpc(ctx, dataclasses.replace(LOW, reverse=w)).act
        state = MPCState(jnp.zeros((LOW.horizon, 2)), jnp.array([0.0, 1.0]))
        cols[w] = float(jax.jit(act)(state, jax.random.key(0), z, zg)[1][1])
    assert cols[0.0] < -0.5 and cols[20.0] > -0.1, cols


def test_graph_hysteresis_keeps_a_reachable_previous_subgoal(rooms):
    task, st, _, ctx = rooms
    g = ctx.graph(GRAPH.bank, GRAPH.edges)
    bank_xy = ctx.bank_xy(GRAPH.bank)
    model = st.model()
    obs = task.env.unwrapped.observe
    z, zg = model.encode(obs(jnp.array([4.5, 1.5]))), model.encode(obs(jnp.array([4.5, 11.5])))
    free = graph_level.graph_level(g, ctx.scale, dataclasses.replace(GRAPH, commit=0.0,
                                                                     reach=3.0))
    sticky = graph_level.graph_level(g, ctx.scale, dataclasses.replace(GRAPH, commit=100.0,
                                                                       reach=3.0))
    s0 = free.init(jax.random.key(0), zg)
    best = int(free.step(s0, None, z, zg)[2]["idx"])
    assert best >= 0
    dist = np.asarray(g.dist)
    # Another bank state within reach, not yet reached and on the way, but a worse choice:
    # only hysteresis keeps it.
    start = np.array([4.5, 1.5])
    other = next(int(i) for i in np.argsort(dist[best])
                 if i != best and np.linalg.norm(bank_xy[i] - start) > 0.5
                 and bank_xy[i][1] < bank_xy[best][1] - 0.2)
    held = s0._replace(idx=jnp.int32(other))
    assert int(free.step(held, None, z, zg)[2]["idx"]) == best  # commit = 0: ignored
    assert int(sticky.step(held, None, z, zg)[2]["idx"]) == other


def test_three_layers_over_the_bank_graph_reach_towards_the_goal(rooms):
    task, _, _, ctx = rooms
    far = dataclasses.replace(GRAPH, reach=12.0, patience=0)
    cfg = dataclasses.replace(HIER, levels=(LevelSpec("graph", far, 8),
                                            LevelSpec("graph", GRAPH)))
    out = jax.jit(make_evaluate(task, A.build(cfg, ctx)))(_keys(3))
    top, idx = np.asarray(out["info"]["top_idx"]), np.asarray(out["info"]["subgoal_idx"])
    for t0 in range(0, 24, 8):  # the far subgoal is held between selections
        held = top[:, t0: t0 + 8]
        assert np.all((held == held[:, :1]) | (held == -1))
    assert np.all(idx >= -1)  # near subgoals are bank states or the target
    pos, goal = np.asarray(out["positions"]), np.asarray(out["goal"])
    d0, d_end = _bfs(task, pos[:, 0], goal), _bfs(task, pos[:, -1], goal)
    assert d_end.mean() < 0.8 * d0.mean()


def test_data_graph_links_only_what_the_data_travelled(rooms):
    task, _, ds, ctx = rooms
    g = ctx.graph(GRAPH.bank, "data")
    bank_xy = ctx.bank_xy(GRAPH.bank)
    dist = np.asarray(g.dist)
    assert dist.shape == (GRAPH.bank, GRAPH.bank) and np.all(np.diag(dist) == 0)
    assert np.mean(dist < 1e4) > 0.99  # one component: the data covers both rooms
    step = np.percentile(np.linalg.norm(np.diff(ds.obs, axis=1), axis=-1), 95)
    scale = np.array(task.env.unwrapped.layout.shape) / 2.0  # obs -> cells
    cells = dist * step * scale.mean()
    bfs = _bfs(task, bank_xy[:, None], bank_xy[None])
    straight = np.linalg.norm(bank_xy[:, None] - bank_xy[None], axis=-1)
    ok = dist < 1e4
    across = (straight < 2.0) & (bfs >= 6) & ok  # two sides of the wall: the door only
    assert across.sum() > 20
    assert np.all(cells[across] >= straight[across] + 1.0)
    r = np.corrcoef(np.argsort(np.argsort(cells[ok])), np.argsort(np.argsort(bfs[ok])))[0, 1]
    assert r > 0.9


def test_flat_learned_mpc_approaches_the_goal_on_open():
    task = tasks.load("open")
    ds = data.collect(task, jax.random.key(0), episodes=256, steps=32)
    cfg = stack_config({**SMALL, "train": {**SMALL["train"], "steps": 400},
                        "critic": {**SMALL["critic"], "steps": 20, "chunk": 10}})
    st = pipeline.train_stack(task, ds, None, cfg, show=False)
    policy = A.build(A.AgentConfig(actuator=MPCConfig(horizon=12, iters=8)),
                     A.Context(task, st, ds))
    out = jax.jit(make_evaluate(task, policy))(_keys(4))
    pos, goal = np.asarray(out["positions"]), np.asarray(out["goal"])
    d0 = np.linalg.norm(pos[:, 0] - goal, axis=-1)
    d_end = np.linalg.norm(pos[:, -1] - goal, axis=-1)
    assert d_end.mean() < 0.4 * d0.mean()
    assert np.mean(d_end < d0) >= 0.9


def test_bank_successors_are_where_the_data_went_next(rooms):
    """`Context.successors`: each bank state's own dataset state, 2 steps on in its
    episode, snapped to its nearest bank state (in the observation, as the data links)."""
    _, _, ds, ctx = rooms
    idx, _ = ctx.bank(GRAPH.bank)
    succ = ctx.successors(GRAPH.bank, 2)
    assert succ.shape == (GRAPH.bank,) and succ.min() >= 0 and succ.max() < GRAPH.bank
    obs = np.asarray(ds.obs).reshape(-1, ds.obs.shape[-1])
    t1 = ds.obs.shape[1]
    ep, t = np.divmod(idx, t1)
    later = obs[ep * t1 + np.minimum(t + 2, t1 - 1)]
    bank = obs[idx]
    d = np.linalg.norm(later[:, None] - bank[None], axis=-1)
    np.testing.assert_allclose(d[np.arange(len(idx)), succ], d.min(1), atol=1e-5)
    assert np.mean(succ != np.arange(GRAPH.bank)) > 0.5  # the data was moving
