import textwrap

import pytest

from hplan import tasks
from hplan.tasks import KeepOut, SpeedLimit

SHIPPED = ["open", "umaze", "two-rooms", "four-rooms", "medium", "large", "trap", "maze32",
           "four-rooms-staged"]


def test_all_shipped_tasks_load():
    known = tasks.available()
    assert set(SHIPPED) <= set(known)
    for name in SHIPPED:
        t = tasks.load(name)
        assert t.name == name and t.episode_length > 0


def test_random_pairs_respect_min_distance():
    t = tasks.load("large")
    s, g = t.pairs()
    idx = t.layout.cell_index()
    d = t.layout.distances()[idx[s[:, 0], s[:, 1]], idx[g[:, 0], g[:, 1]]]
    assert d.min() >= 15


def test_trap_straight_line_is_a_dead_end():
    t = tasks.load("trap")
    s, g = t.layout.start, t.layout.goal
    # Euclidean gap is 12 columns, the path round is 20.
    assert g[0] == s[0] and g[1] - s[1] == 12
    assert t.layout.distance(s, g) == 20


def test_staged_task_has_waypoints_and_guardrails():
    t = tasks.load("four-rooms-staged")
    assert t.spec.waypoints == ((2, 9), (9, 3))
    assert isinstance(t.guardrails[0], KeepOut) and isinstance(t.guardrails[1], SpeedLimit)
    assert t.env.n_targets == 3


def _write(tmp_path, body: str):
    p = tmp_path / "t.toml"
    p.write_text(textwrap.dedent(body).lstrip())
    return p


GOOD = '''
name = "mine"
layout = """
#####
#S.G#
#####
"""
episode_length = 20
'''


def test_inline_layout_task_file(tmp_path):
    t = tasks.load(_write(tmp_path, GOOD))
    assert t.layout.start == (1, 1) and t.layout.goal == (1, 3)


def test_bad_layout_inside_task_file_reports_file_line(tmp_path):
    p = _write(tmp_path, GOOD.replace("#S.G#", "#S.G"))
    with pytest.raises(ValueError, match=rf"{p}:4:5: ragged row"):
        tasks.load(p)


def test_unknown_character_in_task_layout(tmp_path):
    p = _write(tmp_path, GOOD.replace("#S.G#", "#S?G#"))
    with pytest.raises(ValueError, match=rf"{p}:4:3: unknown character '\?'"):
        tasks.load(p)


def test_negative_episode_length(tmp_path):
    p = _write(tmp_path, GOOD.replace("episode_length = 20", "episode_length = -5"))
    with pytest.raises(ValueError, match=rf"{p}:7:1: episode_length=-5 must be a positive"):
        tasks.load(p)


@pytest.mark.parametrize("key", ["start", "goal"])
def test_start_or_goal_on_wall(tmp_path, key):
    p = _write(tmp_path, GOOD + f"{key} = [0, 2]\n")
    with pytest.raises(ValueError, match=rf"{p}:8:1: {key} cell \(0, 2\) is on a wall") as e:
        tasks.load(p)
    assert "Fix: pick a '.' cell" in str(e.value)


def test_unreachable_goal_in_task(tmp_path):
    p = _write(tmp_path, GOOD.replace("#S.G#", "#S#G#"))
    with pytest.raises(ValueError, match="unreachable from start S"):
        tasks.load(p)


def test_no_free_cell_in_task(tmp_path):
    p = _write(tmp_path, GOOD.replace("#S.G#", "#####"))
    with pytest.raises(ValueError, match=rf"{p}:3:1: no free cell"):
        tasks.load(p)


def test_unknown_task_lists_known_ones():
    with pytest.raises(ValueError, match="unknown task 'nope'. Known tasks: .*two-rooms"):
        tasks.load("nope")


def test_unknown_key_and_bad_toml(tmp_path):
    with pytest.raises(ValueError, match=r":7:1: unknown key 'episode_lenght'"):
        tasks.load(_write(tmp_path, GOOD.replace("episode_length", "episode_lenght")))
    with pytest.raises(ValueError, match="not valid TOML"):
        tasks.load(_write(tmp_path, GOOD.replace("= 20", "= ")))


def test_min_distance_too_large(tmp_path):
    p = _write(tmp_path, GOOD + 'start_goal = "random"\nmin_distance = 50\n')
    with pytest.raises(ValueError, match="no start/goal pair is 50 cells apart.*longest .* is 2"):
        tasks.load(p)


def test_python_spec_builds_a_task():
    spec = tasks.TaskSpec(name="py", layout="#####\n#S.G#\n#####", episode_length=10,
                          guardrails=(KeepOut((1.5, 2.5), 0.3),))
    t = tasks.build(spec)
    assert t.layout.distance(t.layout.start, t.layout.goal) == 2
