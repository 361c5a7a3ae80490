"""Agents over a learned stack: one jit per batch of episodes, bounded actions, compute
accounting, subgoals that make progress, and flat learned MPC that approaches the goal."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hplan import agent, critic, data, mpc, stack, tasks, trainer, wm_train
from hplan.agents import AgentConfig, available, load_agent, parse_agent
from hplan.diagnostics import fit_probe
from hplan.models import WMConfig
from hplan.tasks import KeepOut

WM = WMConfig(latent_dim=8, hidden=64, strides=(1, 4))
# A constant rate: 600 updates decayed to 0.05x left the path critic nearly flat here.
TC = wm_train.TrainConfig(steps=600, batch=128, rollout=(4, 2), chunk=200, lr_final=1.0)
CC = critic.CriticConfig(steps=1000, batch=256, chunk=500, nodes=1024)
EPISODES = 24
LOW = dict(horizon=8, iters=6, restarts=4, running=0.1, terminal=0.0, use_critic=True)
# Periodic selection over the bank graph, as in agents/hier-2.toml (a smaller bank).
HIER = AgentConfig(kind="hier", bank=512, reached=0.0, **LOW)


def _rooms_data(task):
    return data.collect(task, jax.random.key(0), episodes=512, steps=32)


@pytest.fixture(scope="module")
def rooms():
    task = tasks.load("two-rooms")
    ds = _rooms_data(task)
    st = stack.train(task, ds, None, WM, TC, CC, show=False)
    bank, bank_pos = agent.make_bank(task, st, ds, HIER.bank)
    return task, st, bank, bank_pos, agent.step_scale(task, st)


def _wm_only_stack(task, ds):
    """A stack whose world model and probe are trained; critics stay at initialisation
    (the flat agent without critic never calls them)."""
    tc = dataclasses.replace(TC, steps=400)
    model = wm_train.build_model((2,), 2, WM, tc.seed)
    graph, opt, state = wm_train.init_state(model, tc)
    chunk = wm_train.make_chunk(graph, opt, jnp.asarray(ds.obs), jnp.asarray(ds.actions), WM, tc)
    state, _ = trainer.run(state, chunk, tc.steps, tc.chunk, None, "wm", show=False)
    z = wm_train.encode_all(graph, state["params"], ds.obs)
    cgraph, _, cstate = critic.init_state(WM, CC)
    return stack.Stack(wm_cfg=WM, wm_graph=graph, wm_params=state["params"],
                       critic_graph=cgraph, critic_params=(cstate["params"],) * 2,
                       probe=fit_probe(z, ds.pos), metrics={})


def _bfs(task, a, b):
    idx, dist = task.layout.cell_index(), task.layout.distances()
    a, b = np.floor(a).astype(int), np.floor(b).astype(int)
    return dist[idx[a[..., 0], a[..., 1]], idx[b[..., 0], b[..., 1]]]


def _keys(seed=1, n=EPISODES):
    return jax.random.split(jax.random.key(seed), n)


# -- definitions -------------------------------------------------------------------------
def test_shipped_agents_load_and_bad_files_point_at_the_line(tmp_path):
    names = set(available())
    assert {"flat-mpc", "flat-mpc-critic", "hier-2", "hier-3", "hier-macro"} <= names
    for name in names:
        cfg = load_agent(name)
        assert cfg.name == name and cfg.horizon >= 1
    assert load_agent("hier-2").kind == "hier" and load_agent("flat-mpc-critic").use_critic
    assert load_agent("hier-3").top == "critic+critic"
    assert load_agent("hier-3-macro").top == "critic+macro"
    assert load_agent("hier-3-data").edges == load_agent("hier-2-data").edges == "data"
    assert load_agent("flat-mpc-critic").critic_on == load_agent("hier-2").critic_on == "path"
    # `hierarchical`'s default is the shipped hier-2 definition.
    assert dataclasses.replace(load_agent("hier-2"), description="") == agent.HIER_DEFAULT
    with pytest.raises(dataclasses.FrozenInstanceError):
        load_agent("hier-2").horizon = 3
    with pytest.raises(ValueError, match=r"<string>:2:1: unknown key 'horizn'"):
        parse_agent('name = "x"\nhorizn = 3\n')
    with pytest.raises(ValueError, match=r"<string>:3:1: planner='adam'.*Fix"):
        parse_agent('name = "x"\n\nplanner = "adam"\n')
    with pytest.raises(ValueError, match=r"<string>:1:1: horizon = 2.5 is not a int"):
        parse_agent("horizon = 2.5")
    with pytest.raises(ValueError, match=r"<string>:1:1: critic_on='end'.*Fix: use one of"):
        parse_agent('critic_on = "end"')
    with pytest.raises(ValueError, match=r"commit=-1.0.*Fix"):
        parse_agent("commit = -1.0")
    with pytest.raises(ValueError, match=r"elites=9 > samples=8"):
        parse_agent("samples = 8\nelites = 9")
    with pytest.raises(ValueError, match="unknown agent 'nope'"):
        load_agent("nope")
    with pytest.raises(ValueError, match="bank of dataset states"):
        agent.make("hier-2", tasks.load("two-rooms"), stack=None)
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\nkind = "hier"\nreach = 3\n')
    assert load_agent(path).reach == 3.0


# -- two rooms: whole episodes under one jit ---------------------------------------------
@pytest.fixture(scope="module")
def hier_run(rooms):
    """One compiled batch of hierarchical episodes, shared by the tests below."""
    task, st, bank, _, scale = rooms
    policy = agent.hierarchical(task, st, bank, config=HIER, scale=scale)
    evaluate = agent.make_evaluate(task, policy)
    jaxpr, out = _run(evaluate, _keys(2))
    return policy, jaxpr, out


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


def _n_select(n_bank):
    return 2 * min(agent.GRAPH_ENDS, n_bank) + 1


def _check_run(task, cfg, jaxpr, out, n_bank=0):
    scans = [e for e in jaxpr.eqns if e.primitive.name == "scan"]
    assert len(scans) == 1 and scans[0].params["length"] == task.episode_length
    if cfg.kind == "hier" and cfg.reached == 0:
        # A periodic schedule keeps the selection a real branch under vmap (no select).
        assert "cond" in _primitives(scans[0].params["jaxpr"].jaxpr)
    acts = np.asarray(out["actions"])
    assert acts.shape == (EPISODES, task.episode_length, 2)
    assert np.all(np.isfinite(acts)) and np.all(np.abs(acts) <= 1.0)
    n_low = cfg.restarts * cfg.iters
    np.testing.assert_array_equal(out["n_evals"], n_low)
    np.testing.assert_array_equal(out["n_model"], n_low * cfg.horizon)
    n_critic = np.asarray(out["n_critic"])
    if cfg.kind == "flat":
        np.testing.assert_array_equal(n_critic, n_low)
        return
    # A selection joins the state and the goal to the bank graph (critic0 to their nearest
    # bank states) and checks the goal directly.
    selected = n_critic > n_low
    np.testing.assert_array_equal(n_critic[selected], n_low + _n_select(n_bank))
    assert selected[:, 0].all()  # the first step always selects
    for row in selected:
        if cfg.reached == 0:
            np.testing.assert_array_equal(np.nonzero(row)[0],
                                          np.arange(0, len(row), cfg.replan))
        else:
            assert np.diff(np.nonzero(row)[0]).max() <= cfg.replan


def test_flat_agent_is_one_jitted_program_with_bounded_actions_and_counted_compute(rooms):
    task, st, _, _, scale = rooms
    cfg = AgentConfig(**LOW)
    evaluate = agent.make_evaluate(task, agent.flat_learned(task, st, config=cfg, scale=scale))
    _check_run(task, cfg, *_run(evaluate, _keys()))


def test_hierarchical_agent_is_one_jitted_program_with_counted_compute(rooms, hier_run):
    task, _, bank, _, _ = rooms
    policy, jaxpr, out = hier_run
    _check_run(task, HIER, jaxpr, out, n_bank=len(bank))
    # The policies are plain `mpc.Policy`s: the generic evaluator traces them too.
    shapes = jax.eval_shape(mpc.make_evaluate(task, policy), _keys(n=2))
    assert shapes["positions"].shape == (2, task.episode_length + 1, 2)


def test_critic_subgoal_lies_between_start_and_goal(rooms, hier_run):
    task, _, _, bank_pos, _ = rooms
    out = hier_run[2]
    idx = np.asarray(out["subgoal_idx"])[:, 0]
    start, goal = np.asarray(out["positions"])[:, 0], np.asarray(out["goal"])
    assert np.mean(idx >= 0) >= 0.9  # the goal (>= 8 cells away) is out of reach
    sub = np.where(idx[:, None] >= 0, bank_pos[np.maximum(idx, 0)], goal)
    d_start, d_sub = _bfs(task, start, goal), _bfs(task, sub, goal)
    assert np.mean(d_sub < d_start) >= 0.8
    assert np.mean(d_start - d_sub) >= 1.0
    # Subgoals are nearby: a few cells, not half the maze.
    assert np.median(_bfs(task, start, sub)) <= 5


def test_hierarchical_agent_approaches_the_goal(rooms, hier_run):
    task = rooms[0]
    out = hier_run[2]
    pos, goal = np.asarray(out["positions"]), np.asarray(out["goal"])
    d0, d_end = _bfs(task, pos[:, 0], goal), _bfs(task, pos[:, -1], goal)
    assert d_end.mean() < 0.8 * d0.mean()


def test_three_layers_critic_far_subgoal_macro_middle_level0_below(rooms):
    task, st, bank, bank_pos, scale = rooms
    cfg = dataclasses.replace(HIER, top="critic+macro", top_samples=32, top_iters=2,
                              far_reach=16.0, far_replan=8)
    policy = agent.hierarchical(task, st, bank, config=cfg, scale=scale)
    out = jax.jit(agent.make_evaluate(task, policy, steps=12))(_keys(n=4))
    assert np.all(np.asarray(out["subgoal_idx"]) == -2)  # a predicted latent
    assert np.all(np.isfinite(np.asarray(out["subgoal"])))
    assert np.all(np.abs(np.asarray(out["actions"])) <= 1.0)
    # Far subgoal every 8 steps, macro plan every 4, level-0 plan every step: counted.
    t = np.arange(12)
    n_low = cfg.restarts * cfg.iters
    macro = (t % cfg.replan == 0) * cfg.top_samples * cfg.top_iters
    far = (t % cfg.far_replan == 0) * _n_select(len(bank))
    np.testing.assert_array_equal(out["n_critic"], np.broadcast_to(n_low + macro + far, (4, 12)))
    np.testing.assert_array_equal(out["n_model"], np.broadcast_to(
        n_low * cfg.horizon + macro * cfg.top_horizon + (macro > 0), (4, 12)))
    far_idx = np.asarray(out["far_idx"])
    assert np.all(far_idx[:, :8] == far_idx[:, :1])  # held between selections
    # The plain macro top (HWM style, early re-selection once reached) traces; a critic
    # top without a bank is refused.
    macro_only = agent.hierarchical(
        task, st, config=dataclasses.replace(cfg, top="macro", reached=1.0), scale=scale)
    shapes = jax.eval_shape(agent.make_evaluate(task, macro_only, steps=4), _keys(n=2))
    assert shapes["subgoal"].shape == (2, 4, WM.latent_dim)
    with pytest.raises(ValueError, match="needs a bank"):
        agent.hierarchical(task, st, None, config=HIER)


def test_keep_out_penalty_acts_on_probed_latent_positions(rooms):
    task, st, _, _, scale = rooms
    zone = KeepOut(center=(4.5, 3.5), radius=1.0)
    guarded = tasks.build(dataclasses.replace(task.spec, guardrails=(zone,)))
    cfg = AgentConfig(**LOW)
    plain, fenced = (agent.latent_cost(t, st, cfg, scale) for t in (task, guarded))
    model, (w, b) = st.model(), st.probe
    z0 = model.encode(task.env.observe(jnp.array([4.5, 1.5])))
    zg = model.encode(task.env.observe(jnp.array([4.5, 5.5])))
    diff = jax.jit(lambda a: (fenced(z0, zg, a) - plain(z0, zg, a), model.rollout(0, z0, a)))
    for acts in (jnp.tile(jnp.array([[0.0, 1.0]]), (cfg.horizon, 1)),  # through the zone
                 jnp.tile(jnp.array([[-1.0, 0.0]]), (cfg.horizon, 1))):  # away from it
        extra, zs = diff(acts)
        probed = np.asarray(zs) @ w + b
        v = np.maximum(0.0, zone.radius + cfg.guard_margin
                       - np.linalg.norm(probed - np.array(zone.center), axis=-1))
        extra = float(extra)
        assert extra == pytest.approx(cfg.guard_weight * np.sum(v + v * v), rel=1e-3, abs=1e-3)
    assert v.sum() == 0  # moving away never enters: no penalty
    assert extra == pytest.approx(0.0, abs=1e-4)


# -- open arena: flat MPC over the learned model -----------------------------------------
def test_flat_learned_mpc_approaches_the_goal_on_open():
    task = tasks.load("open")
    ds = data.collect(task, jax.random.key(0), episodes=256, steps=32)
    st = _wm_only_stack(task, ds)
    policy = agent.flat_learned(task, st, horizon=12, iters=8, use_critic=False)
    out = jax.jit(agent.make_evaluate(task, policy))(_keys(4))
    pos, goal = np.asarray(out["positions"]), np.asarray(out["goal"])
    d0 = np.linalg.norm(pos[:, 0] - goal, axis=-1)
    d_end = np.linalg.norm(pos[:, -1] - goal, axis=-1)
    assert d_end.mean() < 0.4 * d0.mean()
    assert np.mean(d_end < d0) >= 0.9


def test_path_critic_is_counted_per_rollout_step_and_prefers_arriving_early(rooms):
    task, st, _, _, scale = rooms
    cfg = AgentConfig(**{**LOW, "critic_on": "path"})
    evaluate = agent.make_evaluate(task, agent.flat_learned(task, st, config=cfg, scale=scale))
    out = jax.jit(evaluate)(_keys(n=2))
    n_low = cfg.restarts * cfg.iters
    np.testing.assert_array_equal(out["n_critic"], n_low * cfg.horizon)
    # Two plans that end at the same place: the one that gets there first costs less under
    # the path critic (the terminal critic only sees where they end).
    model = st.model()
    z0 = model.encode(task.env.observe(jnp.array([4.5, 1.5])))
    zg = model.encode(task.env.observe(jnp.array([4.5, 3.5])))
    right = jnp.array([[0.0, 1.0]])
    early = jnp.concatenate([jnp.tile(right, (4, 1)), jnp.zeros((cfg.horizon - 4, 2))])
    late = early[::-1]
    path = agent.latent_cost(task, st, dataclasses.replace(cfg, running=0.0), scale)
    assert float(path(z0, zg, early)) < float(path(z0, zg, late)) - 0.3


def test_selector_hysteresis_keeps_a_reachable_previous_subgoal(rooms):
    task, st, bank, bank_pos, _ = rooms
    dist = agent.bank_graph(st, bank)
    model = st.model()
    z = model.encode(task.env.observe(jnp.array([4.5, 1.5])))
    zg = model.encode(task.env.observe(jnp.array([4.5, 11.5])))
    free = agent.graph_selector(st, bank, dist, reach=3.0, progress=0.5)
    sticky = agent.graph_selector(st, bank, dist, reach=3.0, progress=0.5, commit=100.0)
    best = int(free(z, zg)[1])
    assert best >= 0
    # Another bank state within reach, not yet reached and on the way (graph-near the best
    # subgoal, a little short of it), but a worse choice: only hysteresis keeps it.
    other = next(int(i) for i in np.argsort(dist[best])
                 if i != best and 2.0 < bank_pos[i][1] < bank_pos[best][1] - 0.2)
    assert int(free(z, zg, jnp.int32(other))[1]) == best  # commit = 0: prev is ignored
    assert int(sticky(z, zg, jnp.int32(other))[1]) == other
    assert int(sticky(z, zg, jnp.int32(-1))[1]) == best  # the goal as prev: no hysteresis


def test_three_layers_over_the_bank_graph_reach_towards_the_goal(rooms):
    task, st, bank, bank_pos, scale = rooms
    cfg = dataclasses.replace(HIER, top="critic+critic", far_reach=12.0, far_replan=8,
                              reach=2.0, replan=1, commit=0.5, critic_on="path")
    policy = agent.hierarchical(task, st, bank, config=cfg, scale=scale)
    out = jax.jit(agent.make_evaluate(task, policy))(_keys(3))
    far_idx, idx = np.asarray(out["far_idx"]), np.asarray(out["subgoal_idx"])
    for t0 in range(0, 24, cfg.far_replan):  # the far subgoal is held between selections
        held = far_idx[:, t0: t0 + cfg.far_replan]
        assert np.all((held == held[:, :1]) | (held == -1))
    # Near subgoals are bank states (or the goal / the far subgoal), never predicted ones.
    assert np.all(idx >= -1)
    pos, goal = np.asarray(out["positions"]), np.asarray(out["goal"])
    d0, d_end = _bfs(task, pos[:, 0], goal), _bfs(task, pos[:, -1], goal)
    assert d_end.mean() < 0.8 * d0.mean()


def test_data_graph_links_only_what_the_data_travelled(rooms):
    task, st, _, bank_pos, _ = rooms
    ds = _rooms_data(task)  # the fixture's data (collection is deterministic)
    dist = agent.data_graph(task, st, ds, HIER.bank)
    assert dist.shape == (HIER.bank, HIER.bank) and np.all(np.diag(dist) == 0)
    assert np.mean(dist < 1e4) > 0.99  # one component: the data covers both rooms
    step = np.percentile(np.linalg.norm(np.diff(ds.pos, axis=1), axis=-1), 95)
    cells = dist * step  # graph length in cells
    bfs = _bfs(task, bank_pos[:, None], bank_pos[None])
    straight = np.linalg.norm(bank_pos[:, None] - bank_pos[None], axis=-1)
    # Pairs on the two sides of the wall, close in a straight line: through the door only.
    ok = dist < 1e4
    across = (straight < 2.0) & (bfs >= 6) & ok
    assert across.sum() > 20
    # (the corner of the door can make the true detour as short as ~1.7 cells extra)
    assert np.all(cells[across] >= straight[across] + 1.0)
    # and the graph ranks pairs like the true shortest paths do
    r = np.corrcoef(np.argsort(np.argsort(cells[ok])), np.argsort(np.argsort(bfs[ok])))[0, 1]
    assert r > 0.9


def test_bad_edges_value_names_the_choices():
    with pytest.raises(ValueError, match="edges='graph'.*critic.*data"):
        AgentConfig(edges="graph")


def test_graph_selector_never_hands_back_the_state_the_agent_stands_on():
    # A chain of bank states 3 steps apart: none but the agent's own within reach 2.
    bank = jnp.stack([jnp.arange(11.0), jnp.zeros(11)], -1)
    hops = np.abs(np.arange(11)[:, None] - np.arange(11)[None]).astype(np.float32) * 3.0
    pick = agent.graph_selector(None, bank, hops, reach=2.0, progress=0.5, snap_scale=1.0,
                                commit=100.0)
    z, zg = bank[0], bank[10]
    assert int(pick(z, zg)[1]) == 1  # the reach stretches to the next state on the way
    # hysteresis lets go of a previous subgoal once it is reached
    assert int(pick(z, zg, jnp.int32(0))[1]) == 1
    # and the goal within (stretched) reach is the goal itself
    assert int(pick(bank[9], zg)[1]) == -1


def test_graph_selector_aims_past_a_banned_subgoal():
    # A chain of bank states 1.5 steps apart; the goal is the last one.
    bank = jnp.stack([jnp.arange(11.0) * 10, jnp.zeros(11)], -1)
    hops = np.abs(np.arange(11)[:, None] - np.arange(11)[None]).astype(np.float32) * 1.5
    pick = agent.graph_selector(None, bank, hops, reach=2.0, progress=0.5, snap_scale=1.0,
                                ban_radius=1.0)
    z, zg = bank[0], bank[10]
    _, idx, _, togo = pick(z, zg)
    assert int(idx) == 1 and float(togo) == pytest.approx(15.0, abs=0.01)
    assert int(pick(z, zg, None, jnp.int32(-1))[1]) == 1  # -1: no ban
    # The next state banned (the agent got stuck short of it): the reach stretches to the
    # first state past the ban that still makes progress.
    assert int(pick(z, zg, None, jnp.int32(1))[1]) == 2
    assert int(pick(z, zg, None, jnp.int32(3))[1]) == 1  # a ban out of reach changes nothing


def test_agent_that_makes_no_progress_bans_its_subgoal_and_picks_another(rooms):
    task, st, bank, _, scale = rooms
    cfg = dataclasses.replace(HIER, reach=2.0, replan=1, patience=3, ban_steps=5)
    policy = agent.hierarchical(task, st, bank, config=cfg, scale=scale)
    dist = agent.bank_graph(st, bank)
    state = task.env.reset(jax.random.key(0))

    def step(a, _):  # the world never moves: the agent is stuck wherever it aims
        a, _ = policy.step(a, state)
        return a, (a.subgoal_idx, a.ban_idx, a.ban_left, a.stuck)

    _, (idx, ban, left, stuck) = jax.jit(
        lambda: jax.lax.scan(step, policy.init(jax.random.key(1), state), None, 12))()
    idx, ban, left, stuck = map(np.asarray, (idx, ban, left, stuck))
    fired = np.where(left == cfg.ban_steps)[0]
    assert len(fired) >= 1 and idx[fired[0] - 1] >= 0
    t = fired[0]
    assert ban[t] == idx[t - 1] and stuck[t] == 0  # the subgoal it was stuck on is banned
    # ... and the new subgoal lies outside the ban (or is the goal itself)
    assert idx[t] == -1 or dist[idx[t], ban[t]] > 1.5
    assert stuck[t - 1] == cfg.patience
