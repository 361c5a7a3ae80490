import dataclasses
import json

import jax
import numpy as np
import pytest

from hplan import data, tasks


@pytest.fixture(scope="module")
def two_rooms():
    return tasks.load("two-rooms")


def _walls(task):
    return task.env.unwrapped.layout.walls


def test_collect_shapes_and_stays_in_free_cells(two_rooms):
    ds = data.collect(two_rooms, jax.random.key(0), episodes=64, steps=32)
    assert ds.xy.shape == (64, 33, 2) and ds.actions.shape == (64, 32, 2)
    assert ds.obs.shape == (64, 33, 2)
    cells = np.floor(ds.xy.reshape(-1, 2)).astype(int)
    assert not _walls(two_rooms)[cells[:, 0], cells[:, 1]].any()
    assert np.abs(ds.actions).max() <= 1.0
    # the observations are what the env showed, not re-derived
    obs = jax.vmap(two_rooms.env.unwrapped.observe)(ds.xy.reshape(-1, 2))
    np.testing.assert_allclose(ds.obs.reshape(-1, 2), obs, atol=1e-6)


def test_correlated_noise_travels_further_than_uniform(two_rooms):
    def travel(policy):
        ds = data.collect(two_rooms, jax.random.key(1), episodes=256, steps=32, policy=policy)
        return np.linalg.norm(ds.xy[:, -1] - ds.xy[:, 0], axis=-1).mean()

    assert travel("correlated") > 1.5 * travel("random")


def test_exploration_starts_cover_every_free_cell(two_rooms):
    ds = data.collect(two_rooms, jax.random.key(0), episodes=512, steps=64)
    cells = np.floor(ds.xy.reshape(-1, 2)).astype(int)
    counts = np.zeros(_walls(two_rooms).shape, int)
    np.add.at(counts, (cells[:, 0], cells[:, 1]), 1)
    assert (counts[~_walls(two_rooms)] > 0).all()


def test_save_load_roundtrip_and_task_check(tmp_path, two_rooms):
    ds = data.collect(two_rooms, jax.random.key(0), episodes=8, steps=16)
    data.save(ds, tmp_path / "d")
    back = data.load(tmp_path / "d", two_rooms)
    np.testing.assert_array_equal(back.xy, ds.xy)
    np.testing.assert_array_equal(back.obs, ds.obs)
    np.testing.assert_array_equal(back.actions, ds.actions)
    assert back.meta["task"] == "two-rooms" and back.meta["steps"] == 16
    with pytest.raises(ValueError, match="collected on task 'two-rooms'.*not on 'large'"):
        data.load(tmp_path / "d", tasks.load("large"))


def test_pixel_data_is_stored_as_uint8_frames_and_round_trips(tmp_path, two_rooms):
    spec = two_rooms.spec
    pix = tasks.build(dataclasses.replace(
        spec, env_args={**spec.env_args, "obs": "pixels", "image_size": 16}),
        base_dir=tasks.TASKS_DIR)
    ds = data.collect(pix, jax.random.key(0), episodes=32, steps=8)
    assert ds.obs.dtype == np.uint8 and ds.obs.shape == (32, 9, 16, 16, 2)
    data.save(ds, tmp_path / "p")
    back = data.load(tmp_path / "p", pix)
    np.testing.assert_array_equal(back.obs, ds.obs)
    # compressed: walls repeat in every frame
    assert (tmp_path / "p" / "data.npz").stat().st_size < 0.5 * ds.obs.nbytes


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
    env = two_rooms.env.unwrapped
    with pytest.raises(ValueError, match="unknown policy.*Fix"):
        data.make_collect(env, 4, 4, policy="greedy")
    with pytest.raises(ValueError, match="must both be positive"):
        data.make_collect(env, 0, 4)
