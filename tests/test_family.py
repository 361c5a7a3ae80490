"""A family of maps, one per episode (issue 16: Two Rooms with a wall and door that move)."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hplan.core import ConfigError
from hplan.envs.pointmaze import PointMaze, make_maze, out_of_sight
from hplan.envs.pointmaze.env import MazeConfig
from hplan.envs.pointmaze.generate import corridor_mazes, two_rooms_family
from hplan.envs.pointmaze.layout import Geodesic, parse_layout
from hplan.tasks import load


@settings(max_examples=10, deadline=None)
@given(size=st.integers(9, 20), door=st.integers(1, 4), margin=st.integers(2, 4))
def test_two_rooms_family_is_every_wall_and_door(size, door, margin):
    if size < 2 * margin + 1 or door > size - 2:
        with pytest.raises(ValueError, match="Fix:"):
            two_rooms_family(size, door, margin)
        return
    fam = two_rooms_family(size, door, margin)
    assert len(fam) == (size - 2 * margin) * (size - 1 - door)
    assert len({lay.text for lay in fam}) == len(fam)
    for lay in fam:
        assert lay.shape == (size, size)
        assert (lay.distances() >= 0).all()  # one door joins the two rooms
        col = int(np.argmax(lay.walls[1:-1, 1:-1].sum(0))) + 1
        assert (~lay.walls[1:-1, col]).sum() == door


def test_out_of_sight_pairs_are_in_different_rooms():
    lay = two_rooms_family(12, 2, 3)[5]
    col = int(np.argmax(lay.walls[1:-1, 1:-1].sum(0))) + 1
    free = lay.free_cells[lay.free_cells[:, 1] != col]  # not the door's own cells
    a = np.repeat(free, len(free), 0)
    b = np.tile(free, (len(free), 1))
    hidden = out_of_sight(lay, a, b)
    same_side = (a[:, 1] < col) == (b[:, 1] < col)
    assert not (hidden & same_side).any()  # rooms are convex
    assert hidden[~same_side].mean() > 0.8  # only lines through the door see across


def family_env(obs="state"):
    return make_maze(family="two-rooms", family_args={"size": 12, "door": 2, "margin": 3},
                     start_goal="random", min_distance=4, out_of_sight=True, obs=obs,
                     image_size=24)


def test_each_episode_lives_on_its_own_map():
    env = family_env(obs="pixels")
    inner = env.unwrapped
    assert inner.n_contexts == 6 * 9
    states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), 32))
    ctx = np.asarray(states.info["context"])
    assert len(np.unique(ctx)) > 10
    for i in range(8):
        lay = inner.layouts[ctx[i]]
        frame, goal = np.asarray(states.obs[i]), np.asarray(states.info["goal_obs"][i])
        expect = np.asarray(inner._render_walls(lay.walls, 24) * 255, np.uint8)
        np.testing.assert_array_equal(frame[..., 0], expect)  # this map's wall and door
        np.testing.assert_array_equal(goal[..., 0], expect)  # the goal frame: the same map
        s, g = np.floor(states.metrics["xy"][i]), np.floor(states.info["target_xy"][i])
        assert lay.is_free(s.astype(int)) and lay.is_free(g.astype(int))
        assert out_of_sight(lay, s[None], g[None])[0]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_walls_of_the_episodes_map_stop_the_agent(seed):
    env = family_env()
    inner = env.unwrapped
    rng = np.random.default_rng(seed)
    state = env.reset(jax.random.key(seed))
    acts = jnp.asarray(rng.uniform(-1, 1, (120, 2)), jnp.float32)

    def body(s, a):
        s = env.step(s, a)
        return s, s.metrics["xy"]

    _, xy = jax.lax.scan(body, state, acts)
    lay = inner.layouts[int(state.info["context"])]
    cells = np.floor(np.asarray(xy)).astype(int)
    assert not lay.walls[cells[:, 0], cells[:, 1]].any()


def test_oracle_measures_each_episode_on_its_map():
    env = family_env()
    inner = env.unwrapped
    states = jax.vmap(env.reset)(jax.random.split(jax.random.key(1), 16))
    first = SimpleNamespace(metrics={"xy": states.metrics["xy"]},
                            info={"targets": states.info["targets"],
                                  "context": states.info["context"]})
    got = inner.oracle.optimal_steps(first)
    for i in range(16):
        geo = Geodesic(inner.layouts[int(states.info["context"][i])])
        want = geo.cells(np.asarray(states.metrics["xy"][i:i + 1]),
                         np.asarray(states.info["target_xy"][i:i + 1]))[0] / 0.5
        assert got[i] == pytest.approx(want)
    # On the first map the same points would be measured differently somewhere.
    flat = inner.oracle.geodesic(first.metrics["xy"], first.info["targets"][:, -1])
    assert not np.allclose(flat, got)


def test_bad_families_are_refused():
    a, b = parse_layout("#####\n#...#\n#####"), parse_layout("####\n#..#\n####")
    with pytest.raises(ConfigError, match="same size"):
        PointMaze([a, b])
    with pytest.raises(ConfigError, match="exactly one of layout and family"):
        make_maze(layout="#####\n#...#\n#####", family="two-rooms")
    with pytest.raises(ConfigError, match="unknown family"):
        make_maze(family="nope")
    with pytest.raises(ConfigError, match="each room needs"):
        make_maze(family="two-rooms", family_args={"size": 6})
    with pytest.raises(ConfigError, match="events on a family"):
        PointMaze(two_rooms_family(12, 2, 3)[:2],
                  MazeConfig(events=load("door-closes").env.unwrapped.config.events))


def test_shipped_two_rooms_random_task():
    task = load("two-rooms-random")
    inner = task.env.unwrapped
    assert inner.n_contexts == 104 and task.episode_length == 200
    assert inner.observation_size == (32, 32, 2)
    assert len(corridor_mazes(3, (3, 3), seed=1)) == 3


def test_data_graph_never_joins_two_maps():
    """Same position, two maps: snapped together, map A's door would open map B's wall."""
    from hplan.data.collect import collect
    from hplan.tasks import TaskSpec, build
    from hplan.wm.critic import transition_links

    spec = TaskSpec(name="fam", env="pointmaze", episode_length=50,
                    env_args={"family": "two-rooms", "start_goal": "random",
                              "family_args": {"size": 9, "door": 1, "margin": 3}})
    task = build(spec)
    ds = collect(task, jax.random.key(0), episodes=64, steps=32)
    assert ds.groups.shape == (64,)
    assert set(np.unique(ds.groups)) <= set(range(task.env.unwrapped.n_contexts))
    n, t1 = ds.obs.shape[:2]
    nodes = np.random.default_rng(0).choice(n * t1, 400, replace=False)
    node_map = np.repeat(ds.groups, t1)[nodes]
    _, mixed = transition_links(ds.obs, nodes)
    _, kept = transition_links(ds.obs, nodes, ds.groups)
    cross = lambda g: np.mean(node_map[g.tocoo().row] != node_map[g.tocoo().col])  # noqa: E731
    assert cross(mixed) > 0.1
    assert cross(kept) == 0.0


def test_an_unseen_map_of_another_size_is_refused(tmp_path, capsys):
    from hplan.cli import main

    p = tmp_path / "small.txt"
    p.write_text("#####\n#...#\n#...#\n#####\n")
    rc = main(["bench", "--task", "two-rooms-random", "--layout", str(p), "--agents",
               "flat-mpc", "--cache", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert rc == 2 and "is 4x5 cells; the task's maps are 16x16" in err and "Fix:" in err
    assert not (tmp_path / "cache").exists()  # refused before any training


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), lo=st.integers(2, 8), width=st.integers(0, 4))
def test_random_pairs_keep_to_the_distance_band(seed, lo, width):
    """HWM's medium/hard protocol: every start-goal pair lo..hi BFS cells apart, on every
    map of the family; a band no pair fits is refused with the longest distance."""
    lays = corridor_mazes(3, (3, 3), seed)
    env = make_maze(layout=[lay.text for lay in lays], start_goal="random", min_distance=lo,
                    max_distance=lo + width)
    starts = np.floor(np.asarray(env.starts)).astype(int)
    goals = np.floor(np.asarray(env.goals)).astype(int)
    for s, g, c in zip(starts, goals, np.asarray(env.contexts), strict=True):
        d = lays[c].distance(tuple(s), tuple(g))
        assert lo <= d <= lo + width
    with pytest.raises(ConfigError, match="no start/goal pair.*longest geodesic"):
        make_maze(layout=lays[0].text, start_goal="random", min_distance=90, max_distance=95)


def test_a_folder_of_layouts_is_a_family(tmp_path):
    for i, lay in enumerate(corridor_mazes(2, (3, 3), 7)):
        (tmp_path / f"m{i}.txt").write_text(lay.text)
    env = make_maze(layout=str(tmp_path), start_goal="random", min_distance=2)
    assert env.unwrapped.n_contexts == 2 and set(np.asarray(env.contexts)) == {0, 1}
    (tmp_path / "odd.txt").write_text("#####\n#...#\n#####\n")
    with pytest.raises(ConfigError, match="is 3x5 cells but .* is 7x7.*share one size"):
        make_maze(layout=str(tmp_path), start_goal="random")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no \*\.txt maps"):
        make_maze(layout=str(tmp_path / "empty"), start_goal="random")


UNSEEN = """\
#########
#...#...#
#...#...#
#.......#
#.......#
#...#...#
#...#...#
#...#...#
#########
"""


def test_a_family_stack_benches_a_map_it_never_saw(tmp_path):
    """Quick mode: a tiny stack trained on a 21-map family, then evaluated on a map
    outside it (a 2-cell door where the family's are 1 cell) without training on it."""
    import json

    from hplan.cli import main

    (tmp_path / "fam.toml").write_text(
        'name = "fam"\nenv = "pointmaze"\nepisode_length = 40\n[env_args]\n'
        'family = "two-rooms"\nfamily_args = {size = 9, door = 1, margin = 3}\n'
        'start_goal = "random"\nout_of_sight = true\n'
        '[stack.data]\nepisodes = 128\nsteps = 32\n')
    test_map = tmp_path / "unseen.txt"
    test_map.write_text(UNSEEN)
    assert UNSEEN.strip() not in {lay.text for lay in two_rooms_family(9, 1, 3)}
    out = tmp_path / "r.json"
    rc = main(["bench", "--task", str(tmp_path / "fam.toml"), "--layout", str(test_map),
               "--start", "2,1", "--goal", "6,7", "--agents",
               "flat-mpc-critic,hier-macro,hier-imagine",
               "--episodes", "2", "--train-steps", "250", "--critic-steps", "500",
               "--cache", str(tmp_path / "cache"), "--json", str(out), "--no-latency"])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["task"] == "fam@unseen" and set(res["agents"]) == {
        "flat-mpc-critic", "hier-macro", "hier-imagine"}
    for row in res["agents"].values():
        assert 0.0 <= row["spl"] <= row["success_rate"] <= 1.0
    rec = res["episode_records"]["hier-macro"][0]
    assert rec["start"] == [2.5, 1.5] and rec["goal"] == [6.5, 7.5]
    assert rec["optimal_steps"] > 0
    # Only the family's stack was trained; nothing on the test map.
    assert [d.name.split("-")[0] for d in (tmp_path / "cache").iterdir()] == ["fam"]


def test_per_map_graphs_never_cut_through_a_wall():
    """Nodes either side of a thin wall: the data graph says at least half the true
    (round through the door) distance; and one graph per map."""
    from scipy.sparse.csgraph import shortest_path

    from hplan.data.collect import collect
    from hplan.tasks import TaskSpec, build
    from hplan.wm.critic import group_graph_distances, path_links

    spec = TaskSpec(name="fam", env="pointmaze", episode_length=50,
                    env_args={"family": "two-rooms", "start_goal": "random",
                              "family_args": {"size": 9, "door": 2, "margin": 4}})
    task = build(spec)
    inner = task.env.unwrapped
    ds = collect(task, jax.random.key(1), episodes=400, steps=48)
    _, dist, _, node_at = group_graph_distances(ds.obs, ds.groups, 6 * 120, seed=0)
    assert node_at.shape == (6, 120, 2)
    assert dist.shape[0] == inner.n_contexts == 6
    step = np.percentile(np.linalg.norm(np.diff(ds.obs, axis=1), axis=-1), 95)
    cells_per_step = step / (2.0 / 9)  # obs = 2 * pos / 9 - 1
    checked = reachable = 0
    rng = np.random.default_rng(0)
    for ctx in np.unique(ds.groups):
        eps = np.flatnonzero(ds.groups == ctx)
        t1 = ds.obs.shape[1]
        nodes = rng.choice(len(eps) * t1, 120, replace=False)
        _, links = path_links(ds.obs[eps], nodes)
        d = shortest_path(links, method="D")
        pos = ds.xy[eps].reshape(-1, 2)[nodes]
        lay = inner.layouts[ctx]
        col = int(np.argmax(lay.walls[1:-1, 1:-1].sum(0))) + 1
        a, b = np.nonzero((pos[:, None, 1] < col) & (pos[None, :, 1] > col + 1)
                          & (np.abs(pos[:, None] - pos[None]).max(-1) < 2.5))
        true = inner.oracle.geodesic(pos[a], pos[b], np.full(len(a), ctx)) * 0.5  # cells
        graph = d[a, b] * cells_per_step
        checked += len(a)
        reachable += int(np.isfinite(graph).sum())
        assert np.all(graph >= 0.5 * true), (ctx, np.min(graph / true))
    assert checked > 50 and reachable > 0.3 * checked, (checked, reachable)


def off_main(src, dst, w, bank_map):
    """Bank states outside their map's largest linked component."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    m = len(bank_map)
    _, lab = connected_components(coo_matrix((w, (src, dst)), shape=(m, m)), directed=False)
    return sum(int((bank_map == g).sum() - np.bincount(lab[bank_map == g]).max())
               for g in np.unique(bank_map))


def test_path_and_state_edges_keep_to_one_map_and_measure_no_shortcut():
    """The graph level's "path" and "states" links: none joins two maps, and none is
    shorter than the straight line between its two bank states (both in the common
    full-speed step); joined wherever trajectories met, the state graph leaves fewer bank
    states off their map's main part."""
    from types import SimpleNamespace

    from hplan.agents.context import bank_index, path_edges, state_edges
    from hplan.data.collect import collect
    from hplan.tasks import TaskSpec, build

    spec = TaskSpec(name="fam", env="pointmaze", episode_length=50,
                    env_args={"family": "two-rooms", "start_goal": "random",
                              "family_args": {"size": 9, "door": 2, "margin": 4}})
    ds = collect(build(spec), jax.random.key(2), episodes=120, steps=32)
    idx = bank_index(ds, 600, seed=0)
    stack = SimpleNamespace(encode=lambda o: o)
    t1 = ds.obs.shape[1]
    bank_map = ds.groups[idx // t1]
    off = {}
    for kind, edges in (("path", path_edges), ("states", state_edges)):
        (src, dst, w), points = edges(stack, ds, idx)
        assert len(src) > 300
        assert np.all(bank_map[src] == bank_map[dst])
        straight = np.linalg.norm(points[src] - points[dst], axis=-1)
        assert np.all(w >= straight - 0.01)  # (float32 cancellation)
        assert np.median(w / np.maximum(straight, 1e-6)) < 2.0  # mostly near-straight runs
        off[kind] = off_main(src, dst, w, bank_map)
    assert off["states"] <= off["path"], off


def test_bridges_join_a_maps_islands_within_their_cap_and_never_two_maps():
    """Two clusters of bank states a step apart on map 0 and one on map 1 beside them:
    a bridge of cap 1.5 joins map 0's two (at their nearest pair), cap 0.5 leaves them,
    and map 1 is never joined to map 0."""
    from hplan.agents.context import bridged

    line = np.array([[0.0, 0.0], [0.3, 0.0], [0.6, 0.0]])
    points = np.concatenate([line, line + [1.6, 0.0], line + [0.0, 0.2]]).astype(np.float32)
    groups = np.array([0] * 6 + [1] * 3)
    src, dst = np.array([0, 1, 3, 4, 6, 7]), np.array([1, 2, 4, 5, 7, 8])
    links = (src, dst, np.full(6, 0.3, np.float32))
    s, d, w = bridged(points, links, groups, cap=1.5)
    new = sorted(zip(s[6:].tolist(), d[6:].tolist(), strict=True))
    assert {tuple(sorted(p)) for p in new} == {(2, 3)}  # 0.6 -> 1.6: one step apart
    assert np.allclose(w[6:], 1.0)
    assert np.all(groups[s] == groups[d])
    assert len(bridged(points, links, groups, cap=0.5)[0]) == 6
    # Two links out of each piece, to distinct states: a way round once one is cut.
    s, d, _ = bridged(points, links, groups, cap=1.5, each=2)
    assert {tuple(sorted(p)) for p in zip(s[6:].tolist(), d[6:].tolist(), strict=True)} \
        == {(2, 3), (2, 4), (1, 3)}


def test_bridges_skip_pairs_the_check_rules_out_unless_a_piece_has_no_other_way():
    """Map 0's two clusters are nearest at (2, 3) (1.0 apart), then (1, 3) and (2, 4)
    (1.3): with (2, 3) and (2, 4) ruled out (a wall between them, critic0 would say) the
    bridge is (1, 3);
    with every pair ruled out the piece keeps its nearest, unchecked link."""
    from hplan.agents.context import bridged

    line = np.array([[0.0, 0.0], [0.3, 0.0], [0.6, 0.0]])
    points = np.concatenate([line, line + [1.6, 0.0]]).astype(np.float32)
    groups = np.zeros(6, int)
    links = (np.array([0, 1, 3, 4]), np.array([1, 2, 4, 5]), np.full(4, 0.3, np.float32))

    def wall_at(pairs):
        def too_far(ids):
            far = np.zeros((len(ids), len(ids)), bool)
            for i, j in pairs:
                far[i, j] = far[j, i] = True
            return far
        return too_far

    s, d, w = bridged(points, links, groups, cap=1.5, too_far=wall_at([(2, 3), (2, 4)]))
    assert {tuple(sorted(p)) for p in zip(s[4:].tolist(), d[4:].tolist(), strict=True)} \
        == {(1, 3)}
    assert np.allclose(w[4:], 1.3)
    every = [(i, j) for i in range(3) for j in range(3, 6)]
    s, d, _ = bridged(points, links, groups, cap=1.5, too_far=wall_at(every))
    assert {tuple(sorted(p)) for p in zip(s[4:].tolist(), d[4:].tolist(), strict=True)} \
        == {(2, 3)}


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**16))
def test_a_spread_bank_covers_sparse_data_better_than_a_uniform_draw(seed):
    """Two maps; on each, 90 % of the data crowds into one corner of a unit square. The
    spread bank gives each map its share of the bank (by its share of the data), keeps
    the pinned states first, and leaves no data state farther from its map's nearest
    bank state than a uniform draw of the same size does."""
    from scipy.spatial import cKDTree

    from hplan.agents.context import spread_index

    rng = np.random.default_rng(seed)
    n_ep, t1 = 40, 25
    crowd = rng.random((n_ep, t1, 2)) * 0.1
    wide = rng.random((n_ep, t1, 2))
    points = np.where(rng.random((n_ep, t1, 1)) < 0.9, crowd, wide).astype(np.float32)
    groups = np.repeat([0, 1], [10, 30])  # a quarter of the data on map 0
    pinned = np.array([3, 700])
    size = 64
    idx = spread_index(points, groups, size, pinned)
    assert len(idx) == size == len(np.unique(idx))
    assert idx[:2].tolist() == [3, 700]
    owner = groups[idx // t1]
    assert abs(int((owner == 0).sum()) - size / 4) <= 1
    flat = points.reshape(-1, 2)
    uniform = rng.choice(len(flat), size, replace=False)

    def worst(ids):
        return max(cKDTree(flat[ids[groups[ids // t1] == g]]).query(
            flat[np.repeat(groups, t1) == g])[0].max() for g in (0, 1))

    assert worst(idx) <= worst(uniform) + 1e-6


def test_pieces_the_data_joins_are_joined_by_the_datas_walk_and_no_others():
    """States 0-1 and 2-3 are linked pieces; the data walks 1 -> 2 in 7 steps (longer than a
    link's span), and nothing reaches 4: one joining link (1, 2) of length 7, 4 stays
    alone."""
    from hplan.agents.context import join_pieces

    far = np.full((5, 5), np.inf)
    np.fill_diagonal(far, 0.0)
    walk = {(0, 1): 1.0, (2, 3): 1.0, (1, 2): 7.0, (0, 2): 8.0, (1, 3): 8.0, (0, 3): 9.0}
    for (a, b), d in walk.items():
        far[a, b] = far[b, a] = d
    i, j, w = join_pieces(np.array([0, 2]), np.array([1, 3]), 5, lambda: far)
    assert {tuple(sorted(p)) for p in zip(i.tolist(), j.tolist(), strict=True)} == {(1, 2)}
    assert np.allclose(w, 7.0)
    none = join_pieces(np.array([0, 1, 2]), np.array([1, 2, 3]), 4, lambda: 1 / 0)
    assert len(none[0]) == 0  # one piece: the walk's lengths are never asked for


def test_join_without_the_state_graph_is_refused():
    from hplan.agents.graph_level import GraphLevelConfig

    with pytest.raises(ConfigError, match="edges"):
        GraphLevelConfig(edges="path", join=True)
    assert GraphLevelConfig(edges="states", join=True).join
