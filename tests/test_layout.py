import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hplan.envs.pointmaze.generate import corridor_maze, dead_ends
from hplan.envs.pointmaze.layout import all_pairs_bfs, bfs, load_layout, parse_layout

UMAZE = """
#######
#S....#
#####.#
#G....#
#######
"""


def test_parse_marks_walls_start_goal():
    lay = parse_layout(UMAZE)
    assert lay.shape == (5, 7)
    assert lay.start == (1, 1) and lay.goal == (3, 1)
    assert lay.walls[0].all() and not lay.walls[1, 1:6].any()


def test_geodesic_matches_hand_computed_case():
    # S -> right 4 -> down 2 -> left 4: 10 moves, though G is 2 rows below S.
    lay = parse_layout(UMAZE)
    assert lay.distance(lay.start, lay.goal) == 10
    assert lay.distance((1, 5), (3, 5)) == 2
    assert lay.distance((1, 3), (1, 3)) == 0


def test_all_pairs_matches_single_source_bfs():
    lay = load_layout("tasks/layouts/large.txt")
    d = lay.distances()
    free = lay.free_cells
    for i in (0, 17, len(free) - 1):
        single = bfs(lay.walls, tuple(free[i]))
        np.testing.assert_array_equal(d[i], single[free[:, 0], free[:, 1]])


def test_unreachable_cells_are_minus_one():
    walls = np.array([[False, True, False]])
    d = all_pairs_bfs(walls)
    assert d[0, 1] == -1 and d[0, 0] == 0


def test_32x32_layout_parses():
    text = "\n".join(["#" * 32] + ["#" + "." * 30 + "#"] * 30 + ["#" * 32])
    lay = parse_layout(text)
    assert lay.shape == (32, 32)
    assert lay.distances().max() == 58


@pytest.mark.parametrize(
    "text, match",
    [
        ("####\n#..#\n#.#\n####", r"<string>:3:4: ragged row: 3 characters where row 1 has 4"),
        ("####\n#.x#\n####", r"<string>:2:3: unknown character 'x'"),
        ("###\n###", r"<string>:1:1: no free cell"),
        ("#####\n#S#G#\n#####", r"<string>:2:4: goal G at cell \(row 1, col 3\) is unreachable"),
        ("#####\n#SSG#\n#####", r"more than one 'S'"),
        ("", r"layout is empty"),
    ],
)
def test_bad_layouts_name_line_column_and_fix(text, match):
    with pytest.raises(ValueError, match=match) as e:
        parse_layout(text)
    assert "Fix:" in str(e.value)


def test_missing_layout_file():
    with pytest.raises(ValueError, match="layout file not found"):
        load_layout("no/such/file.txt")


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), r=st.integers(1, 8), c=st.integers(2, 8),
       loops=st.floats(0.0, 0.3))
def test_corridor_mazes_are_connected_sized_and_have_dead_ends(seed, r, c, loops):
    lay = corridor_maze(np.random.default_rng(seed), (r, c), loops)
    assert lay.shape == (2 * r + 1, 2 * c + 1)
    assert lay.walls[0].all() and lay.walls[-1].all()  # a wall border
    assert lay.walls[:, 0].all() and lay.walls[:, -1].all()
    assert (lay.distances() >= 0).all()  # every free cell reaches every other
    assert dead_ends(lay) >= 2
    # every corridor junction (odd, odd) is free: the maze spans the whole grid
    assert not lay.walls[1::2, 1::2].any()


def test_corridor_maze_bad_sizes_name_the_fix():
    with pytest.raises(ValueError, match="at least 2 rooms"):
        corridor_maze(np.random.default_rng(0), (1, 1))
    with pytest.raises(ValueError, match="loops=2.*in \\[0, 1\\]"):
        corridor_maze(np.random.default_rng(0), (3, 3), loops=2)


def test_corridor_maze_loops_open_walls_between_rooms_only():
    lay = corridor_maze(np.random.default_rng(3), (6, 6), loops=1.0, min_dead_ends=0)
    assert lay.walls[0::2, 0::2].all()  # every pillar stands: corridors, not open halls
    assert not lay.walls[1:-1:2, 2:-1:2].any() and not lay.walls[2:-1:2, 1:-1:2].any()
