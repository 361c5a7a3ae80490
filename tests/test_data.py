import json

import jax
import numpy as np
import pytest

from hplan import data, tasks


@pytest.fixture(scope="module")
def two_rooms():
    return tasks.load("two-rooms")


def test_collect_shapes_and_stays_in_free_cells(two_rooms):
    ds = data.collect(two_rooms, jax.random.key(0), episodes=64, steps=32)
    assert ds.pos.shape == (64, 33, 2) and ds.actions.shape == (64, 32, 2)
    assert ds.obs.shape == (64, 33, 2)
    cells = np.floor(ds.pos.reshape(-1, 2)).astype(int)
    assert not two_rooms.layout.walls[cells[:, 0], cells[:, 1]].any()
    assert np.abs(ds.actions).max() <= 1.0


def test_correlated_noise_travels_further_than_uniform(two_rooms):
    def travel(policy):
        ds = data.collect(two_rooms, jax.random.key(1), episodes=256, steps=32, policy=policy)
        return np.linalg.norm(ds.pos[:, -1] - ds.pos[:, 0], axis=-1).mean()

    assert travel("correlated") > 1.5 * travel("random")


def test_coverage_reaches_every_free_cell(two_rooms):
    ds = data.collect(two_rooms, jax.random.key(0), episodes=512, steps=64)
    counts = data.coverage(two_rooms, ds)
    assert counts.sum() == ds.pos.shape[0] * ds.pos.shape[1]
    assert (counts[~two_rooms.layout.walls] > 0).all()
    assert counts[two_rooms.layout.walls].sum() == 0


def test_save_load_roundtrip_and_task_check(tmp_path, two_rooms):
    ds = data.collect(two_rooms, jax.random.key(0), episodes=8, steps=16)
    data.save(ds, tmp_path / "d")
    back = data.load(tmp_path / "d", two_rooms)
    np.testing.assert_array_equal(back.pos, ds.pos)
    np.testing.assert_array_equal(back.actions, ds.actions)
    assert back.meta["task"] == "two-rooms" and back.meta["steps"] == 16
    with pytest.raises(ValueError, match="collected on task 'two-rooms'.*not on 'large'"):
        data.load(tmp_path / "d", tasks.load("large"))


def test_load_errors(tmp_path, two_rooms):
    with pytest.raises(ValueError, match="no dataset here"):
        data.load(tmp_path / "missing")
    ds = data.collect(two_rooms, jax.random.key(0), episodes=4, steps=8)
    data.save(ds, tmp_path / "d")
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    meta["episodes"] = 5
    (tmp_path / "d" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="meta.json says 5x8 but data.npz holds 4x8"):
        data.load(tmp_path / "d")


def test_bad_collect_arguments(two_rooms):
    with pytest.raises(ValueError, match="unknown policy"):
        data.make_collect(two_rooms, 4, 4, policy="greedy")
    with pytest.raises(ValueError, match="must both be positive"):
        data.make_collect(two_rooms, 0, 4)
