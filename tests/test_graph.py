"""Bank graphs and the graph level on small synthetic graphs with known answers: routes,
cut-aware fields, and an agent stuck at a wormhole that cuts it and goes round."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hplan.agents import graph as G
from hplan.agents.graph_level import GraphLevelConfig
from hplan.agents.graph_level import graph_level as _graph_level


def graph_level(*args, **kwargs):
    """The level with its step jitted: stepped eagerly, every call re-traces its loops."""
    level = _graph_level(*args, **kwargs)
    return level._replace(step=jax.jit(level.step))


def u_graph(wormhole: bool = True):
    """A U of bank states one step apart (latent = position, 0.5 per step): down the left
    arm from L = (0, 0), along the bottom, up the right arm to R = (5, 0). With
    `wormhole`, a false 0.2-step link joins L and R straight across."""
    left = [(0.0, 0.5 * i) for i in range(11)]
    bottom = [(0.5 * i, 5.0) for i in range(1, 10)]
    right = [(5.0, 5.0 - 0.5 * i) for i in range(11)]
    pts = np.array(left + bottom + right, np.float32)
    n = len(pts)
    src, dst = np.arange(n - 1), np.arange(1, n)
    w = np.ones(n - 1, np.float32)
    if wormhole:
        src, dst, w = np.append(src, 0), np.append(dst, n - 1), np.append(w, 0.2)
    return G.build(pts, src, dst, w, n_landmarks=8, k=3), pts


def test_shortest_paths_and_landmark_field_agree_without_cuts():
    g, pts = u_graph(wormhole=False)
    n = len(pts)
    d = np.asarray(g.dist)
    np.testing.assert_allclose(d[0, n - 1], n - 1, atol=0.01)  # all the way round
    np.testing.assert_allclose(d, np.abs(np.arange(n)[:, None] - np.arange(n)[None]),
                               atol=0.01)
    no_cuts = -jnp.ones(2, jnp.int32)
    togo = np.asarray(G.field(g, no_cuts, jnp.int32(n - 1), jnp.float32(0.0), 1.0, 5.0))
    # Landmark routes may detour a little; never shorter than the true distance.
    assert np.all(togo >= d[:, n - 1] - 1e-3)
    assert np.all(togo <= d[:, n - 1] + 4.0)


def test_a_cut_reroutes_the_field_round_the_wormhole():
    g, pts = u_graph()
    n = len(pts)
    goal = n - 3  # two steps down the right arm from R
    no_cuts = -jnp.ones(2, jnp.int32)
    togo = np.asarray(G.field(g, no_cuts, jnp.int32(goal), jnp.float32(0.0), 1.0, 5.0))
    assert togo[2] < 5  # through the wormhole: L's neighbours look close to the goal
    cut = jnp.array([0, -1], jnp.int32)  # cut at L
    togo = np.asarray(G.field(g, cut, jnp.int32(goal), jnp.float32(0.0), 0.5, 5.0))
    assert togo[0] >= G.BIG  # within the cut
    # Every other state now goes round: at least its true distance along the U.
    true = np.abs(np.arange(n) - goal).astype(float)
    assert np.all(togo[2:] >= true[2:] - 1e-3)
    assert togo[2] == pytest.approx(true[2], abs=4.0)


def test_an_agent_stuck_at_a_wormhole_cuts_it_and_is_sent_round():
    g, pts = u_graph()
    n = len(pts)
    cfg = GraphLevelConfig(reach=2.0, patience=3, cut_radius=0.5)
    level = graph_level(g, scale=0.5, cfg=cfg)
    goal = jnp.asarray(pts[n - 3])  # two steps past R on the other arm
    z = jnp.asarray(pts[0])  # the agent stands at L and the world never lets it cross
    state = level.init(jax.random.key(0), goal)

    def step(s, _):
        s, sub, info = level.step(s, jax.random.key(1), z, goal)
        return s, (sub, info["idx"], info["cut"])

    _, (subs, idx, cut) = jax.jit(lambda: jax.lax.scan(step, state, None, 12))()
    subs, idx, cut = map(np.asarray, (subs, idx, cut))
    first = int(np.argmax(cut))
    # The first step sets the best distance; the first stall (step `patience`) only bans
    # the subgoal; the second, at the same place, cuts.
    assert cut.any() and first == 2 * cfg.patience + 1
    # Before the cut: a subgoal on the other arm, through the wormhole; after it: a
    # state down the left arm, the long way round.
    assert subs[0, 0] == pytest.approx(5.0)
    after = idx[first + 1:]
    assert np.all(after >= 0)
    assert np.all(pts[after, 0] == 0.0) and np.all(pts[after, 1] > 0.5)


def test_a_moving_agent_is_never_cut():
    g, pts = u_graph(wormhole=False)
    n = len(pts)
    level = graph_level(g, scale=0.5, cfg=GraphLevelConfig(patience=3))
    goal = jnp.asarray(pts[-1])
    state = level.init(jax.random.key(0), goal)
    cuts = []
    for i in range(0, n - 1):  # one bank state per control step, towards the goal
        state, sub, info = level.step(state, jax.random.key(i), jnp.asarray(pts[i]), goal)
        cuts.append(bool(info["cut"]))
        d_sub = np.abs(np.asarray(sub) - pts[i]).sum()
        assert d_sub <= 2.0 * 0.5 + 1e-3 or int(info["idx"]) == -1  # within reach
    assert not any(cuts)


def narrow_u():
    """A U whose arms' tops are 1.4 steps apart in latent space (0.5 per step) but 21
    steps apart round the bottom: the two sides of a corner where two cells touch."""
    left = [(0.0, 0.5 * i) for i in range(11)]
    bottom = [(0.7 * i / 4, 5.0) for i in range(1, 4)]
    right = [(0.7, 5.0 - 0.5 * i) for i in range(11)]
    pts = np.array(left + bottom + right, np.float32)
    n = len(pts)
    gaps = np.linalg.norm(np.diff(pts, axis=0), axis=1) / 0.5
    return G.build(pts, np.arange(n - 1), np.arange(1, n), gaps, n_landmarks=8, k=3), pts


@pytest.mark.parametrize("track", [1.5, 0.0])
def test_the_agent_is_localised_on_the_side_it_came_from(track):
    """Up the left arm to the corner point, a hair nearer the right arm's top: localised
    by continuity, the next subgoal is back down the left arm (the way round); by latent
    nearness alone it is the goal, across the corner."""
    g, pts = narrow_u()
    level = graph_level(g, scale=0.5, cfg=GraphLevelConfig(reach=2.0, track=track))
    goal = jnp.asarray(pts[-3])  # two steps down the right arm
    walk = [(0.0, 1.5), (0.0, 1.0), (0.0, 0.5), (0.1, 0.2), (0.36, 0.0)]
    step = jax.jit(level.step)
    state = level.init(jax.random.key(0), goal)
    for i, z in enumerate(walk):
        state, sub, info = step(state, jax.random.key(i), jnp.asarray(z), goal)
    idx, node = int(info["idx"]), int(info["node"])  # `node`: where it placed the agent
    if track:
        assert idx >= 0 and pts[idx, 0] == 0.0  # a state on the left arm
        assert pts[node, 0] == 0.0
    else:  # across the corner: the goal itself or a state on the right arm
        assert np.asarray(sub)[0] == pytest.approx(0.7)
        assert pts[node, 0] > 0.0


def l_graph():
    """An L of bank states one step apart (latent = position, 0.5 per step): down from
    (0, 0) to the corner (0, 5), then along to (5, 5)."""
    pts = np.array([(0.0, 0.5 * i) for i in range(11)]
                   + [(0.5 * i, 5.0) for i in range(1, 11)], np.float32)
    n = len(pts)
    return G.build(pts, np.arange(n - 1), np.arange(1, n), np.ones(n - 1, np.float32),
                   n_landmarks=8, k=3, points=pts / 0.5), pts


def l_graph_among_others():
    """`l_graph`'s L as map 1 of two, its states shuffled among a far decoy map's (map 0):
    (graph, each state's map)."""
    _, pts = l_graph()
    n = len(pts)
    both = np.concatenate([pts + 50.0, pts])
    src = np.concatenate([np.arange(n - 1), n + np.arange(n - 1)])
    perm = np.random.default_rng(0).permutation(2 * n)  # interleave the maps' states
    where = np.argsort(perm)  # old index -> new
    g = G.build(both[perm], where[src], where[src + 1], np.ones(len(src), np.float32),
                n_landmarks=8, k=3, points=both[perm] / 0.5)
    return g, np.repeat([0, 1], n)[perm]


@pytest.mark.parametrize("among_maps", [False, True])
@pytest.mark.parametrize("goal", [(5.0, 5.0), (1.0, 5.0)])
def test_line_of_sight_keeps_the_subgoal_short_of_a_corner(goal, among_maps):
    """Four steps before the corner, reach 6: without `sight` the subgoal (or the goal
    itself, 6 steps along the graph) lies round the corner, and the straight line to it
    runs 1.8 steps into the wall corner; with `sight = 0.75` it is the corner state. The
    same on one of two maps (`family`): the check reads only the episode's map's states."""
    g, groups = l_graph_among_others() if among_maps else (l_graph()[0], None)
    z, goal = jnp.asarray([0.0, 3.0]), jnp.asarray(goal)
    subs = {}
    for sight in (0.0, 0.75):
        cfg = GraphLevelConfig(reach=6.0, sight=sight, family=among_maps)
        level = graph_level(g, scale=0.5, cfg=cfg, groups=groups)
        _, sub, _ = level.step(level.init(jax.random.key(0), goal), jax.random.key(1), z,
                               goal)
        subs[sight] = np.asarray(sub)
    assert subs[0.0][0] >= 0.5 and subs[0.0][1] == pytest.approx(5.0)  # round the corner
    np.testing.assert_allclose(subs[0.75], [0.0, 5.0], atol=1e-6)  # at the corner


def test_reach_from_the_bank_keeps_a_subgoal_ahead_when_the_agent_is_off_the_bank():
    """The agent's latent is 2 steps off the L's first arm, beside (0, 1). Reach 2 counted
    from the agent is spent on that join: the subgoal is the join state itself, level 0
    is sent sideways. Counted from the bank state, the subgoal is 2 steps along."""
    g, _ = l_graph()
    z, goal = jnp.asarray([1.0, 1.0]), jnp.asarray([5.0, 5.0])
    subs = {}
    for where in ("agent", "bank"):
        level = graph_level(g, scale=0.5, cfg=GraphLevelConfig(reach=2.0, reach_from=where))
        _, sub, _ = level.step(level.init(jax.random.key(0), goal), jax.random.key(1), z,
                               goal)
        subs[where] = np.asarray(sub)
    np.testing.assert_allclose(subs["agent"], [0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(subs["bank"], [0.0, 2.0], atol=1e-6)


def test_slow_bank_states_route_but_are_no_subgoals():
    """Reach 6 from the L's start picks the state 6 steps along; marked slow (the data
    crawled there) it is passed over for the farthest fast state within reach, and the
    route to the goal still runs through it."""
    g, pts = l_graph()
    z, goal = jnp.asarray([0.0, 0.0]), jnp.asarray([5.0, 5.0])
    plain = graph_level(g, scale=0.5, cfg=GraphLevelConfig(reach=6.0, lanes=0.0))
    s0, sub, _ = plain.step(plain.init(jax.random.key(0), goal), jax.random.key(1), z, goal)
    pick = int(np.argmin(np.linalg.norm(pts - np.asarray(sub), axis=1)))
    slow = np.zeros(len(pts), bool)
    slow[pick] = True
    level = graph_level(g, scale=0.5, cfg=GraphLevelConfig(reach=6.0, lanes=0.1),
                        slow=jnp.asarray(slow))
    s, sub2, _ = level.step(level.init(jax.random.key(0), goal), jax.random.key(1), z, goal)
    np.testing.assert_allclose(np.asarray(sub2), pts[pick - 1], atol=1e-6)  # one short
    np.testing.assert_allclose(np.asarray(s.togo), np.asarray(s0.togo))  # same routes


def test_bad_graph_level_settings_name_the_fix():
    with pytest.raises(ValueError, match="cut_radius=0.*Fix"):
        GraphLevelConfig(cut_radius=0.0)
    with pytest.raises(ValueError, match="patience=-1.*Fix"):
        GraphLevelConfig(patience=-1)
    with pytest.raises(ValueError, match="relax=-1.*Fix"):
        GraphLevelConfig(relax=-1)
    with pytest.raises(ValueError, match="sight=-1.*Fix"):
        GraphLevelConfig(sight=-1.0)
    with pytest.raises(ValueError, match="lanes=1.*Fix"):
        GraphLevelConfig(lanes=1.0)
    with pytest.raises(ValueError, match="reach_from='goal'.*Fix"):
        GraphLevelConfig(reach_from="goal")


def test_a_surprised_graph_level_cuts_at_once_and_goes_round():
    g, pts = u_graph()
    n = len(pts)
    # The goal is two steps past R: a cut as wide as a door there would cut it off too.
    level = graph_level(g, scale=0.5, cfg=GraphLevelConfig(reach=2.0, patience=8,
                                                            surprise_radius=0.5))
    goal = jnp.asarray(pts[n - 3])
    z = jnp.asarray(pts[0])
    s = level.init(jax.random.key(0), goal)
    s, sub, info = level.step(s, jax.random.key(1), z, goal)
    assert sub[0] == pytest.approx(5.0) and not info["cut"]  # through the wormhole
    s, _, info = level.step(level.surprised(s), jax.random.key(2), z, goal)
    assert info["cut"]  # no stall needed: the first surprised step cuts
    s, sub, info = level.step(s, jax.random.key(3), z, goal)
    assert int(info["idx"]) >= 0 and pts[int(info["idx"]), 0] == 0.0  # down the left arm
    assert not level.step(s, jax.random.key(4), z, goal)[2]["cut"]  # once, not every step


def test_relaxation_only_adds_true_routes_and_never_crosses_a_cut():
    """A wide (surprise) cut in the middle of the U's bottom, the target at L: with
    relaxation over near states the field may gain routes the landmarks missed, but is
    never shorter than the true distance, and a state whose every way to L passes the
    cut (the U is a line) stays cut off."""
    g, pts = u_graph(wormhole=False)
    n = len(pts)
    goal = jnp.asarray(pts[0])
    z = jnp.asarray(pts[5])  # the agent on the left arm, L's side of the cut
    togo = {}
    for relax in (0, 8):
        cfg = GraphLevelConfig(reach=2.0, patience=0, relax=relax)
        level = graph_level(g, scale=0.5, cfg=cfg)
        s = level.init(jax.random.key(0), goal)
        cuts = s.cuts.at[0].set(20)  # a cut 3 steps wide, as a surprise makes
        s = s._replace(cuts=cuts, radii=s.radii.at[0].set(3.0), stale=jnp.bool_(True))
        s, _, _ = level.step(s, jax.random.key(2), z, goal)
        togo[relax], cuts, radii = np.asarray(s.togo), s.cuts, s.radii
    true = np.asarray(g.dist[:, 0])
    assert np.all(togo[8] >= true - 1e-3) and np.all(togo[8] <= togo[0] + 1e-3)
    through = np.asarray(G.passes(g, cuts, jnp.arange(n), jnp.zeros(n, jnp.int32), radii))
    assert through.any() and np.all(togo[8][through] >= G.BIG)
    assert np.all(togo[8][~through & (true < 10)] < G.BIG)  # the near side keeps its route


def test_localised_by_observation_where_the_latent_misleads():
    """The latent puts the agent at the corner point, a hair nearer the right arm's top;
    its observation (the arms 3 apart, as in the world) says it is on the left arm. Localised
    by observation, the next subgoal is down the left arm, the way round."""
    g, pts = narrow_u()
    obs = pts.copy()
    obs[pts[:, 0] > 0.6, 0] = 3.0  # the right arm, where the world has it
    cfg = GraphLevelConfig(reach=2.0, localise="observation")
    level = graph_level(g, 0.5, cfg, snapped=(jnp.asarray(obs), lambda state: state))
    goal = jnp.asarray(pts[-3])
    state = level.init(jax.random.key(0), goal)
    z, where = jnp.asarray((0.36, 0.0)), jnp.asarray((0.0, 0.1))
    _, sub, info = jax.jit(level.step)(state, jax.random.key(1), z, goal, where)
    idx = int(info["idx"])
    assert idx >= 0 and pts[idx, 0] == 0.0 and pts[idx, 1] > 0.0
    _, sub, _ = jax.jit(level.step)(state, jax.random.key(1), z, goal)  # by latent: across
    assert np.asarray(sub)[0] == pytest.approx(0.7)
    with pytest.raises(Exception, match="localise"):
        GraphLevelConfig(localise="xy")


def test_a_false_alarm_at_the_goal_moves_its_join_and_keeps_the_wormhole_cut():
    """A right cut (the wormhole at L) and then a wrong one (a false alarm at the goal
    itself): the goal joins the graph beside the wrong cut instead, the wormhole stays
    cut and the agent keeps a route to the goal that does not go back through L."""
    g, pts = u_graph()
    n = len(pts)
    level = graph_level(g, scale=0.5, cfg=GraphLevelConfig(reach=2.0, patience=0,
                                                            surprise_radius=0.5))
    goal = jnp.asarray(pts[n - 3])
    s = level.init(jax.random.key(0), goal)
    s, _, info = level.step(level.surprised(s), jax.random.key(1), jnp.asarray(pts[0]), goal)
    assert info["cut"]
    s, _, info = level.step(level.surprised(s), jax.random.key(2), goal, goal)
    assert info["cut"]
    z = jnp.asarray(pts[2])
    for k in range(3, 5):
        s, _, info = level.step(s, jax.random.key(k), z, goal)
        # Down the left arm, away from L: not back to the wormhole.
        assert int(info["idx"]) > 2, int(info["idx"])
    cuts = set(np.asarray(s.cuts).tolist())
    assert 0 in cuts
    assert float(info["togo"]) < 100.0  # a route to the goal remains


def test_a_family_level_keeps_the_agent_and_the_target_on_one_map():
    """Two maps share the plane (a third latent coordinate, 0 or 0.3, tells them apart):
    map 0 is a corridor to the goal, map 1 a stub that never reaches it. The agent on
    map 0 looks nearer a map-1 state; with `family` it is placed on the map nearest to
    both it and the target, and sent along map 0's corridor."""
    xs = np.arange(0.0, 5.01, 0.5, dtype=np.float32)
    stub = xs[xs <= 2.0]
    pts = np.concatenate([np.stack([xs, 0 * xs, 0 * xs], 1),
                          np.stack([stub, 0 * stub, 0 * stub + 0.3], 1)]).astype(np.float32)
    n0, n1 = len(xs), len(stub)
    src = np.concatenate([np.arange(n0 - 1), n0 + np.arange(n1 - 1)])
    w = np.ones(len(src), np.float32)
    g = G.build(pts, src, src + 1, w, n_landmarks=6, k=3)
    groups = np.repeat([7, 3], [n0, n1])  # map names need not be 0..K-1
    goal = jnp.asarray([4.0, 0.0, 0.0])
    z = jnp.asarray([1.0, 0.0, 0.2])  # on map 0, 0.1 from map 1's state, 0.2 from its own
    cfg = GraphLevelConfig(reach=2.0, patience=0)

    def first_subgoal(level):
        s = level.init(jax.random.key(0), goal)
        return level.step(s, jax.random.key(1), z, goal)

    s, sub, info = first_subgoal(graph_level(g, 0.5, dataclasses.replace(cfg, family=True),
                                             groups=groups))
    assert int(s.fam) == 1  # map names sorted: 3 -> 0, 7 -> 1
    i = int(info["idx"])
    assert 0 <= i < n0 and pts[i, 0] > 1.0  # ahead on map 0's corridor
    assert float(info["togo"]) == pytest.approx(3.0 / 0.5 + 0.4, abs=0.5)
    # Without it the agent is placed on map 1's stub, which has no route to the target.
    _, _, info = first_subgoal(graph_level(g, 0.5, cfg))
    assert float(info["togo"]) >= G.BIG


def test_family_needs_data_on_several_maps():
    from types import SimpleNamespace

    from hplan.agents import graph_level as GL
    from hplan.core import ConfigError

    ctx = SimpleNamespace(bank_groups=lambda size, seed=0: None)
    with pytest.raises(ConfigError, match="family"):
        GL.make(GraphLevelConfig(family=True), ctx)


def test_family_map_chosen_by_observation_where_the_latents_are_alike():
    """Two maps with the same states (a latent that dropped the map): on map 1 a door
    joins the U's arm tops, on map 0 the way is round the bottom. Only the observations
    tell the maps apart (a constant per map); chosen by them, the level routes through
    the door on map 1 (the target, straight) and round the bottom on map 0."""
    _, pts = u_graph(wormhole=False)
    n = len(pts)
    src, dst = np.arange(n - 1), np.arange(1, n)
    src = np.concatenate([src, src + n, [n]])
    dst = np.concatenate([dst, dst + n, [2 * n - 1]])  # last: the door, L to R on map 1
    w = np.ones(len(src), np.float32)  # every link one step, the door too
    both = np.concatenate([pts, pts])
    g = G.build(both, src, dst, w, n_landmarks=8, k=3)
    groups = np.repeat([0, 1], n)
    views = np.concatenate([both, 5.0 * groups[:, None]], 1).astype(np.float32)
    cfg = GraphLevelConfig(reach=2.0, family=True, family_by="observation", commit=0.0)
    level = graph_level(g, 0.5, cfg, groups=groups,
                        seen_by=(jnp.asarray(views), lambda state: state))
    z, goal = jnp.asarray(pts[0]), jnp.asarray(pts[-1])
    for fam in (0, 1):
        look = jnp.asarray([[*pts[0], 5.0 * fam], [*pts[-1], 5.0 * fam]])
        state = level.init(jax.random.key(0), goal)
        state, sub, info = level.step(state, jax.random.key(1), z, goal, {"map": look})
        assert int(state.fam) == fam
        if fam == 1:
            assert int(info["idx"]) == -1  # through the door: the target itself
        else:
            idx = int(info["idx"])
            assert idx >= 0 and pts[idx % n, 0] == 0.0 and pts[idx % n, 1] > 0.0
    with pytest.raises(Exception, match="family_by"):
        GraphLevelConfig(family=True, family_by="pixels")
    with pytest.raises(Exception, match="set family = true"):
        GraphLevelConfig(family_by="observation")


def test_bank_states_moving_against_the_route_are_no_subgoals():
    """A subgoal is a latent with a velocity. Reach 6 from the L's start picks the state 6
    steps along; where the data there was moving back towards the start (its successor is
    the state before it), the farthest state within reach moving towards the goal is
    picked instead, and the routes are the same."""
    g, pts = l_graph()
    z, goal = jnp.asarray([0.0, 0.0]), jnp.asarray([5.0, 5.0])
    n = len(pts)
    plain = graph_level(g, scale=0.5, cfg=GraphLevelConfig(reach=6.0))
    s0, sub, _ = plain.step(plain.init(jax.random.key(0), goal), jax.random.key(1), z, goal)
    pick = int(np.argmin(np.linalg.norm(pts - np.asarray(sub), axis=1)))
    succ = np.minimum(np.arange(n) + 1, n - 1)  # the data moved along the L, towards the goal
    level = graph_level(g, scale=0.5, cfg=GraphLevelConfig(reach=6.0, heading=1),
                        succ=jnp.asarray(succ))
    s, sub1, _ = level.step(level.init(jax.random.key(0), goal), jax.random.key(1), z, goal)
    np.testing.assert_allclose(np.asarray(sub1), pts[pick], atol=1e-6)  # all heading right
    succ[pick] = pick - 1
    level = graph_level(g, scale=0.5, cfg=GraphLevelConfig(reach=6.0, heading=1),
                        succ=jnp.asarray(succ))
    s, sub2, _ = level.step(level.init(jax.random.key(0), goal), jax.random.key(1), z, goal)
    np.testing.assert_allclose(np.asarray(sub2), pts[pick - 1], atol=1e-6)  # one short
    np.testing.assert_allclose(np.asarray(s.togo), np.asarray(s0.togo))  # same routes
    with pytest.raises(ValueError, match="heading=-1"):
        GraphLevelConfig(heading=-1)
