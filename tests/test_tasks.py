import textwrap

import numpy as np
import pytest

from hplan import tasks
from hplan.core import KeepOut, SpeedLimit

SHIPPED = ["open", "umaze", "two-rooms", "four-rooms", "medium", "large", "trap", "maze32",
           "four-rooms-staged"]


def test_all_shipped_tasks_load():
    known = tasks.available()
    assert set(SHIPPED) <= set(known)
    for name in SHIPPED:
        t = tasks.load(name)
        assert t.name == name and t.episode_length > 0


def _layout(t):
    return t.env.unwrapped.layout


def test_random_pairs_respect_min_distance():
    t = tasks.load("large")
    lay = _layout(t)
    s = np.floor(np.asarray(t.env.starts)).astype(int)
    g = np.floor(np.asarray(t.env.goals)).astype(int)
    idx = lay.cell_index()
    d = lay.distances()[idx[s[:, 0], s[:, 1]], idx[g[:, 0], g[:, 1]]]
    assert d.min() >= 15


def test_trap_straight_line_is_a_dead_end():
    lay = _layout(tasks.load("trap"))
    s, g = lay.start, lay.goal
    # Euclidean gap is 12 columns, the path round is 20.
    assert g[0] == s[0] and g[1] - s[1] == 12
    assert lay.distance(s, g) == 20


def test_staged_task_has_waypoints_and_guardrails():
    t = tasks.load("four-rooms-staged")
    assert t.spec.env_args["waypoints"] == [[2, 9], [9, 3]]
    assert isinstance(t.guardrails[0], KeepOut) and isinstance(t.guardrails[1], SpeedLimit)
    assert t.env.n_targets == 3


def test_same_world_same_key_other_world_other_key():
    # Starts, goals and waypoints do not change the world, so data and stacks are shared.
    assert tasks.load("four-rooms").key() == tasks.load("four-rooms-staged").key()
    assert tasks.load("four-rooms").key() != tasks.load("two-rooms").key()


def test_a_task_of_the_same_world_reuses_a_finished_stack_not_an_unfinished_one(tmp_path):
    from hplan.train import pipeline
    from hplan.wm.config import stack_config

    four, staged = tasks.load("four-rooms"), tasks.load("four-rooms-staged")
    cfg = pipeline.for_task(four)
    own = pipeline.cache_dir(four, tmp_path, cfg)
    assert own.name.startswith("four-rooms-") and not own.exists()
    # the twin's folder while it is still training is not taken: each trains its own
    own.mkdir()
    assert pipeline.cache_dir(staged, tmp_path, cfg).name.startswith("four-rooms-staged-")
    (own / "metrics.json").write_text("{}")
    assert pipeline.cache_dir(staged, tmp_path, cfg) == own
    # another seed or another stack configuration is another stack
    assert pipeline.cache_dir(staged, tmp_path, cfg.with_seed(1)) != own
    longer = stack_config({"train": {"steps": cfg.train.steps + 1}}, base=cfg)
    assert pipeline.cache_dir(staged, tmp_path, longer) != own
    assert pipeline.cache_dir(tasks.load("two-rooms"), tmp_path, cfg) != own  # other world


def _write(tmp_path, body: str):
    p = tmp_path / "t.toml"
    p.write_text(textwrap.dedent(body).lstrip())
    return p


GOOD = '''
name = "mine"
env = "pointmaze"
episode_length = 20

[env_args]
layout = """
#####
#S.G#
#####
"""
'''


def test_inline_layout_task_file(tmp_path):
    t = tasks.load(_write(tmp_path, GOOD))
    assert _layout(t).start == (1, 1) and _layout(t).goal == (1, 3)


def test_bad_layout_inside_task_file_reports_file_line(tmp_path):
    p = _write(tmp_path, GOOD.replace("#S.G#", "#S.G"))
    with pytest.raises(ValueError, match=rf"{p}:8:5: ragged row"):
        tasks.load(p)


def test_unknown_character_in_task_layout(tmp_path):
    p = _write(tmp_path, GOOD.replace("#S.G#", "#S?G#"))
    with pytest.raises(ValueError, match=rf"{p}:8:3: unknown character '\?'"):
        tasks.load(p)


def test_negative_episode_length(tmp_path):
    p = _write(tmp_path, GOOD.replace("episode_length = 20", "episode_length = -5"))
    with pytest.raises(ValueError, match=rf"{p}:3:1: episode_length=-5 must be a positive"):
        tasks.load(p)


@pytest.mark.parametrize("key", ["start", "goal"])
def test_start_or_goal_on_wall(tmp_path, key):
    p = _write(tmp_path, GOOD + f"{key} = [0, 2]\n")
    with pytest.raises(ValueError, match=rf"{p}:11:1: {key} cell \(0, 2\) is on a wall") as e:
        tasks.load(p)
    assert "Fix: pick a '.' cell" in str(e.value)


def test_unreachable_goal_in_task(tmp_path):
    p = _write(tmp_path, GOOD.replace("#S.G#", "#S#G#"))
    with pytest.raises(ValueError, match="unreachable from start S"):
        tasks.load(p)


def test_no_free_cell_in_task(tmp_path):
    p = _write(tmp_path, GOOD.replace("#S.G#", "#####"))
    with pytest.raises(ValueError, match=rf"{p}:7:1: no free cell"):
        tasks.load(p)


def test_unknown_task_lists_known_ones():
    with pytest.raises(ValueError, match="unknown task 'nope'. Known tasks: .*two-rooms"):
        tasks.load("nope")


def test_unknown_key_and_bad_toml(tmp_path):
    with pytest.raises(ValueError, match=r":3:1: unknown key 'episode_lenght'"):
        tasks.load(_write(tmp_path, GOOD.replace("episode_length", "episode_lenght")))
    with pytest.raises(ValueError, match="not valid TOML"):
        tasks.load(_write(tmp_path, GOOD.replace("= 20", "= ")))


def test_min_distance_too_large(tmp_path):
    p = _write(tmp_path, GOOD + 'start_goal = "random"\nmin_distance = 50\n')
    with pytest.raises(ValueError,
                       match="no start/goal pair of .* is 50 cells apart.*longest .* is 2"):
        tasks.load(p)


def test_python_spec_builds_a_task():
    spec = tasks.TaskSpec(name="py", env="pointmaze",
                          env_args={"layout": "#####\n#S.G#\n#####"}, episode_length=10,
                          guardrails=(KeepOut((1.5, 2.5), 0.3),))
    t = tasks.build(spec)
    assert _layout(t).distance(_layout(t).start, _layout(t).goal) == 2


def test_env_errors_name_the_file_line_and_fix(tmp_path):
    p = _write(tmp_path, GOOD.replace('env = "pointmaze"', 'env = "nomaze"'))
    with pytest.raises(ValueError, match=rf"{p}:2:1: unknown env 'nomaze'. Registered: "
                       r".*pointmaze.*Fix: .*env_module"):
        tasks.load(p)
    p = _write(tmp_path, GOOD + "layuot = 3\n")
    with pytest.raises(ValueError, match=rf"{p}:11:1: env 'pointmaze' does not take "
                       r"'layuot'. Fix: use one of: layout, start_goal"):
        tasks.load(p)
    p = _write(tmp_path, 'env_module = "no.such.module"\n' + GOOD)
    with pytest.raises(ValueError, match=rf"{p}:1:1: env_module 'no.such.module' cannot be "
                       r"imported.*Fix: put the module on PYTHONPATH"):
        tasks.load(p)
    p = _write(tmp_path, GOOD + "\n[stack.train]\nstepz = 5\n")
    with pytest.raises(ValueError, match=rf"{p}:13:1: unknown key 'stepz' in \[stack.train\]"):
        tasks.load(p)


def test_a_task_inherits_its_base_and_says_only_what_differs(tmp_path):
    """`base` + changed keys give exactly the base task with those keys changed; a base's
    layout file still means its own file from another folder, and the env key is kept."""
    large = tasks.load("large")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "v.toml").write_text('base = "large"\nepisode_length = 50\n[env_args]\n'
                                'min_distance = 10\n[stack.train]\nsteps = 123\n')
    v = tasks.load(sub / "v.toml")
    assert v.name == "v" and v.key() == large.key()  # same world; unnamed: file stem
    assert v.episode_length == 50 and v.spec.env_args["min_distance"] == 10
    assert v.spec.env_args["start_goal"] == "random"
    assert v.spec.stack["train"] == {**large.spec.stack["train"], "steps": 123}
    assert v.spec.description == large.spec.description
    # a variant of the variant, by path; layouts relative to each file's own folder
    (tmp_path / "w.toml").write_text('base = "sub/v.toml"\nname = "w"\nenv = "pointmaze-mjx"\n')
    w = tasks.load(tmp_path / "w.toml")
    assert (tmp_path / w.spec.env_args["layout"]).resolve() == \
        (tasks.TASKS_DIR / "layouts/large.txt").resolve()
    assert w.spec.env == "pointmaze-mjx" and w.episode_length == 50
    # shipped: the MJX ball tasks are their pure-JAX twins with another env
    m = tasks.load("pointmaze-mjx-maze32")
    assert m.spec.env_args == tasks.load("maze32").spec.env_args
    assert m.spec.stack == tasks.load("maze32").spec.stack


@pytest.mark.parametrize("text,match", [
    ('base = "nope"\n', r"b.toml:1:1: unknown task 'nope'"),
    ('base = "b.toml"\n', r"b.toml:1:1: .*leads back to this file"),
    ('base = 3\n', r"b.toml:1:1: base = 3 is not a name or path"),
    ('base = "large"\n[stack.train]\nstepz = 1\n', r"b.toml:3:1: unknown key 'stepz'"),
    ('base = "large"\n[env_args]\nmin_distanse = 1\n', r"b.toml:3:1: .*does not take"),
])
def test_bad_task_base_names_the_line(tmp_path, text, match):
    (tmp_path / "b.toml").write_text(text)
    with pytest.raises(ValueError, match=match):
        tasks.load(tmp_path / "b.toml")
