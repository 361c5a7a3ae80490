import dataclasses
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hplan import data, tasks
from hplan.train import loop as trainer
from hplan.train import pipeline
from hplan.wm import critic
from hplan.wm import jepa as wm_train
from hplan.wm.config import StackConfig
from hplan.wm.diagnostics import latent_stats, probe_r2
from hplan.wm.models import WMConfig

WM = WMConfig(latent_dim=8, hidden=64, strides=(1, 4))
TC = wm_train.TrainConfig(steps=400, batch=64, rollout=(4, 2), chunk=100)
CC = critic.CriticConfig(steps=200, batch=64, chunk=100)
CFG = StackConfig(wm=WM, train=TC, critic=CC)


@pytest.fixture(scope="module")
def task():
    return tasks.load("two-rooms")


@pytest.fixture(scope="module")
def ds(task):
    return data.collect(task, jax.random.key(0), episodes=256, steps=16)


def _train_wm(task, ds, tc, wm=WM):
    model = wm_train.build_model((2,), 2, wm, tc.seed)
    graph, opt, state = wm_train.init_state(model, tc)
    chunk, data = wm_train.make_chunk(graph, opt, jnp.asarray(ds.obs), jnp.asarray(ds.actions),
                                      wm, tc)
    state, hist = trainer.run(state, chunk, tc.steps, tc.chunk, None, "t", show=False, data=data)
    return graph, state, hist


@pytest.mark.parametrize("seed", [0, 1])
def test_collapse_without_anti_collapse_terms_and_not_with_them(task, ds, seed):
    ranks = {}
    for mode in ("none", "vicreg", "ema"):
        tc = dataclasses.replace(TC, anti_collapse=mode, seed=seed)
        graph, state, _ = _train_wm(task, ds, tc)
        z = wm_train.encode_all(graph, state["params"], ds.obs)
        ranks[mode] = latent_stats(z)
        ranks[mode]["r2"] = probe_r2(z, ds.xy)
    # Without anti-collapse terms every dimension shrinks towards a constant.
    assert ranks["none"]["collapsed"] and ranks["none"]["latent_std_max"] < 0.05
    for mode in ("vicreg", "ema"):
        assert not ranks[mode]["collapsed"], mode
        assert np.mean(ranks[mode]["latent_std"]) > 4 * ranks["none"]["latent_std_max"], mode
        assert ranks[mode]["effective_rank"] > 2 and ranks[mode]["r2"] > 0.85, mode
    assert ranks["vicreg"]["r2"] > ranks["none"]["r2"] + 0.1


def test_training_lowers_prediction_loss(task, ds):
    _, _, hist = _train_wm(task, ds, TC)
    assert hist[-1]["pred0"] < 0.5 * hist[0]["pred0"]


def test_resume_gives_the_same_parameters(tmp_path, task, ds):
    tc = dataclasses.replace(TC, steps=300)
    model = wm_train.build_model((2,), 2, WM, 0)
    graph, opt, state0 = wm_train.init_state(model, tc)
    chunk, data = wm_train.make_chunk(graph, opt, jnp.asarray(ds.obs), jnp.asarray(ds.actions),
                                      WM, tc)
    full, _ = trainer.run(state0, chunk, 300, 100, None, "full", show=False, data=data)
    # "Killed" after 100 updates: a fresh process would restart from state0 and the ckpt.
    trainer.run(state0, chunk, 100, 100, tmp_path / "ck", "part", show=False, data=data)
    resumed, _ = trainer.run(state0, chunk, 300, 100, tmp_path / "ck", "rest", show=False,
                             data=data)
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_stack_train_save_load_and_refusals(tmp_path, task, ds):
    out = tmp_path / "run"
    st = pipeline.train_stack(task, ds, out, CFG, show=False)
    assert (out / "metrics.json").is_file() and (out / "diagnostics.png").is_file()
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["probe_r2"]) == {"level0", "level1", "encoder"}
    assert {"level0", "level1", "latent_l2"} <= set(m["critic"])  # a critic per level
    assert (out / "critic0").is_dir() and (out / "critic1").is_dir()
    back = pipeline.load_stack(out, task)
    z = jnp.zeros(WM.latent_dim)
    assert float(back.critic(0)(z, z)) == pytest.approx(float(st.critic(0)(z, z)))
    # A different configuration in the same directory is refused, nothing touched.
    before = sorted(p.name for p in (out / "wm").iterdir())
    with pytest.raises(ValueError, match="already holds a run with a different configuration"):
        pipeline.train_stack(task, ds, out, dataclasses.replace(
            CFG, train=dataclasses.replace(TC, lr=5e-4)), show=False)
    assert sorted(p.name for p in (out / "wm").iterdir()) == before
    # A corrupted checkpoint is reported, not replaced.
    ckpt = out / "wm" / before[-1]
    for f in ckpt.rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="unreadable or does not match"):
        pipeline.load_stack(out, task)
    assert ckpt.exists()


def test_bad_inputs_are_caught_before_training(tmp_path, task, ds):
    with pytest.raises(ValueError, match="no dataset here"):
        data.load(tmp_path / "nowhere", task)
    with pytest.raises(ValueError, match="not on 'large'"):
        pipeline.train_stack(tasks.load("large"), ds, None, CFG, show=False)
    with pytest.raises(ValueError, match="training needs 32"):
        pipeline.train_stack(task, ds, None, dataclasses.replace(
            CFG, train=dataclasses.replace(TC, rollout=(4, 8))), show=False)
    short = dataclasses.replace(ds, actions=ds.actions[..., :1])
    with pytest.raises(ValueError, match="data actions have size 1"):
        pipeline.train_stack(task, short, None, CFG, show=False)
    with pytest.raises(ValueError, match="no trained stack here"):
        pipeline.load_stack(tmp_path / "nothing", task)
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_rate_decays_to_lr_final_and_bad_lr_final_is_refused():
    model = wm_train.build_model((2,), 2, WM, 0)
    for lr_final in (0.05, 1.0):
        tc = dataclasses.replace(TC, lr_final=lr_final)
        graph, opt, state = wm_train.init_state(model, tc)
        # One adam update on a unit gradient moves each parameter by about the rate.
        ones = jax.tree.map(jnp.ones_like, state["params"])
        update = jax.jit(lambda o, g, p, opt=opt: opt.update(g, o, p))
        upd, opt_state = None, state["opt"]
        for _ in range(tc.steps):  # advance the schedule's count to the end
            upd, opt_state = update(opt_state, ones, state["params"])
        step = float(jnp.abs(jax.tree.leaves(upd)[0]).max())
        assert step == pytest.approx(tc.lr * lr_final, rel=0.05)
    with pytest.raises(ValueError, match="lr_final=1.5"):
        dataclasses.replace(TC, lr_final=1.5)


def test_pure_train_vmaps_over_seeds(task, ds):
    """purejaxrl shape: one jitted program trains two stacks from two seeds."""
    tc = dataclasses.replace(TC, steps=60)
    train = wm_train.make_train(WM, tc, ds.obs, ds.actions)
    params, metrics = jax.jit(jax.vmap(train))(jnp.arange(2))
    assert metrics["pred0"].shape == (2, 60)
    assert np.all(np.asarray(metrics["pred0"][:, -1]) < np.asarray(metrics["pred0"][:, 0]))
    leaf = jax.tree.leaves(params)[0]
    assert leaf.shape[0] == 2 and not np.allclose(leaf[0], leaf[1])


def test_latent_variable_interface_on_slip_maze():
    spec = tasks.load("open").spec
    t = tasks.build(dataclasses.replace(spec, env_args={**spec.env_args, "slip_prob": 0.3}),
                    base_dir=tasks.TASKS_DIR)
    d = data.collect(t, jax.random.key(0), episodes=128, steps=16)
    wm = dataclasses.replace(WM, noise_dim=2)
    graph, state, hist = _train_wm(t, d, TC, wm)
    model = jax.tree.map(lambda x: x, wm_train.build_model((2,), 2, wm))
    from flax import nnx

    model = nnx.merge(graph, state["params"])
    z = model.encode(jnp.asarray(d.obs[0, 0]))
    a = jnp.array([1.0, 0.0])
    outs = [model.step(0, z, a, jnp.array(n, jnp.float32)) for n in ([0, 0], [2, -2])]
    assert outs[0].shape == z.shape and not np.allclose(outs[0], outs[1])
    assert np.isfinite(hist[-1]["loss"])


def test_inverse_head_reads_the_action_and_older_stack_keys_stay():
    from hplan.wm.config import stack_config

    cfg = stack_config({"train": {"inverse_weight": 1.0}})
    assert cfg.wm.inverse  # the head comes with the weight
    # Fields added later are left out of the key at their defaults: cached stacks stay.
    assert "inverse" not in StackConfig().to_dict()["wm"]
    assert "latent_cov_weight" not in StackConfig().to_dict()["train"]
    assert cfg.key() != StackConfig().key()
    with pytest.raises(ValueError, match="inverse head"):
        wm_train.make_loss(None, WM, dataclasses.replace(TC, inverse_weight=1.0))


def test_inverse_dynamics_term_learns_the_action(task, ds):
    from flax import nnx

    tc = dataclasses.replace(TC, inverse_weight=1.0)
    graph, state, hist = _train_wm(task, ds, tc, dataclasses.replace(WM, inverse=True))
    power = float(np.mean(np.sum(np.asarray(ds.actions) ** 2, -1)))
    # Consecutive latents of a point mass give its displacement: the action, but at walls.
    assert hist[-1]["inverse"] < 0.4 * power, (hist[-1]["inverse"], power)
    # What the actuator's `inverse_within` acts with: on transitions it never trained on,
    # the head reads the action from (z, z') with the step unit of recorded steps.
    fresh = data.collect(task, jax.random.key(5), episodes=64, steps=16)
    model = nnx.merge(graph, state["params"])
    z = wm_train.encode_all(graph, state["params"], fresh.obs)
    z0, z1 = jnp.asarray(z[:, :-1]), jnp.asarray(z[:, 1:])
    act = model.read_action(z0, z1, wm_train.step_rms(z1 - z0))
    moved = np.linalg.norm(np.asarray(fresh.xy[:, 1:] - fresh.xy[:, :-1]), axis=-1) > 0.2
    err = np.abs(np.clip(np.asarray(act), -1, 1) - np.asarray(fresh.actions)).max(-1)[moved]
    none = np.abs(np.asarray(fresh.actions)).max(-1)[moved]  # answering "no move"
    assert np.median(err) < 0.65 * np.median(none), (np.median(err), np.median(none))


def test_pixel_model_encodes_each_window_frame_once_and_trains(task, monkeypatch):
    from hplan.wm import models

    spec = task.spec
    env = tasks.build(dataclasses.replace(
        spec, env_args={**spec.env_args, "obs": "pixels", "image_size": 16}),
        base_dir=tasks.TASKS_DIR).env.unwrapped
    xy = jax.random.uniform(jax.random.key(0), (16, 9, 2), minval=1.2, maxval=7.8)
    obs = jax.vmap(jax.vmap(env.observe))(xy)  # [16, 9, 16, 16, 2] uint8 frames
    actions = jax.random.uniform(jax.random.key(1), (16, 8, 2), minval=-1, maxval=1)
    wm = dataclasses.replace(WM, pixels=True)
    tc = dataclasses.replace(TC, batch=8)
    # strides (1, 4), rollout (4, 2): level 0 sees frames 0..4, level 1 sees 0, 4, 8
    frames, pos = wm_train.window_frames(wm, tc)
    assert frames.tolist() == [0, 1, 2, 3, 4, 8]
    assert [p.tolist() for p in pos] == [[0, 1, 2, 3, 4], [0, 4, 5]]
    seen = []
    call = models.PixelEncoder.__call__
    monkeypatch.setattr(models.PixelEncoder, "__call__",
                        lambda self, x: seen.append((x.shape, x.dtype)) or call(self, x))
    graph, opt, state = wm_train.init_state(wm_train.build_model((16, 16, 2), 2, wm), tc)
    jax.eval_shape(wm_train.make_loss(graph, wm, tc), state["params"], state["params"],
                   obs[:8], actions[:8])
    assert seen == [((8, 6, 16, 16, 2), jnp.uint8)]  # one call, 6 frames, still uint8
    monkeypatch.undo()
    update = jax.jit(wm_train.make_update(graph, opt, wm, tc))
    losses = []
    for _ in range(3):
        state, m = update(state, obs, actions)
        losses.append(float(m["loss"]))
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    z = wm_train.encode_all(graph, state["params"], np.asarray(obs[:2]))
    assert z.shape == (2, 9, wm.latent_dim) and np.isfinite(z).all()
    # a frame size the 4x4 patches do not divide is zero-padded, not refused
    odd = wm_train.build_model((18, 18, 2), 2, wm)
    assert odd.encode(jnp.zeros((3, 18, 18, 2), jnp.uint8)).shape == (3, wm.latent_dim)


def test_step_floor_lifts_a_squashed_axis_and_ignores_blocked_steps():
    """A latent that is a linear image of a point mass's position with one axis squashed:
    the floor is ~0 when both axes move alike, positive when one barely moves, and its
    gradient grows the squashed axis. A blocked step (the same observation twice) adds
    nothing and no NaN."""
    rng = np.random.default_rng(0)
    pos = rng.uniform(0, 10, (64, 5, 2))
    acts = rng.uniform(-1, 1, (64, 4, 2))
    pos[:, 1:] = pos[:, :1] + 0.5 * np.cumsum(acts, 1)

    def loss(scale, p=pos, a=acts):
        return wm_train.step_floor_loss(jnp.asarray(p) * jnp.array([1.0, scale]),
                                        jnp.asarray(a), 0.5)

    assert float(loss(1.0)) < 0.002
    assert float(loss(0.05)) > 0.02
    assert float(jax.grad(loss)(0.05)) < 0  # lifting the squashed axis lowers it
    still = pos.copy()
    still[:, 2] = still[:, 1]  # blocked: pushed, did not move
    g = jax.grad(lambda s: loss(s, still))(1.0)
    assert np.isfinite(float(g))
    assert "step_floor_weight" not in StackConfig().to_dict()["train"]  # old keys stay


def test_glimpse_reads_the_frame_round_its_attention_point():
    """With attention pinned on one channel's single bright pixel, the glimpse is exactly
    the other channel's window round that pixel (zero past the frame's edge), and the
    pixel encoder with a glimpse encodes frames of any size to the latent."""
    from flax import nnx

    from hplan.wm import models

    g = models.Glimpse(2, 2, nnx.Rngs(0), maps=1)
    g.logits.kernel.value = jnp.array([[0.0], [60.0]])
    g.logits.bias.value = jnp.zeros(1)
    rng = np.random.default_rng(0)
    for r, c in [(5, 7), (0, 0), (11, 3)]:
        x = np.zeros((1, 12, 12, 2), np.float32)
        x[0, :, :, 0] = rng.random((12, 12))
        x[0, r, c, 1] = 1.0
        out = np.asarray(g(jnp.asarray(x))).reshape(2, 5, 5)
        want = np.pad(x[0, :, :, 0], 2)[r:r + 5, c:c + 5]
        np.testing.assert_allclose(out[0], want, atol=1e-5)
    wm = dataclasses.replace(WM, pixels=True, glimpse=3)
    model = wm_train.build_model((18, 18, 2), 2, wm)
    assert model.encode(jnp.zeros((3, 18, 18, 2), jnp.uint8)).shape == (3, wm.latent_dim)
    with pytest.raises(ValueError, match="glimpse"):
        WMConfig(glimpse=-1)


def test_conv3_is_a_same_padded_3x3_convolution():
    """The im2col 3x3 convolution equals lax's convolution with the same kernel."""
    from flax import nnx

    from hplan.wm import models

    conv = models.Conv3(3, 5, nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 6, 7, 3))
    kernel = conv.linear.kernel.value.reshape(3, 3, 3, 5)  # (di, dj, cin, cout)
    want = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(conv(x), want + conv.linear.bias.value, atol=1e-5)


def test_spatial_latent_is_local_and_refuses_a_wrong_size():
    """A spatial latent is the flattened feature map and a keypoint vector; the level-0
    predictor of the map at a location depends only on its 3x3 neighbourhood (so a wall
    beside the agent is in view, and nothing far away leaks in), the vector's on the
    map; a latent_dim that does not match the map is refused with the right number, and
    so is a spatial latent on a state task."""
    from hplan import tasks
    from hplan.core import ConfigError
    from hplan.train import pipeline
    from hplan.wm.config import stack_config
    from hplan.wm.models import SPATIAL_VECTOR

    d = 4 * 4 * 3 + SPATIAL_VECTOR  # the map, then the keypoint vector
    wm = WMConfig(latent_dim=d, hidden=32, strides=(1, 4), pixels=True, spatial=3)
    model = wm_train.build_model((16, 16, 2), 2, wm)
    z = model.encode(jnp.zeros((5, 16, 16, 2), jnp.uint8))
    assert z.shape == (5, d)
    z0 = jax.random.normal(jax.random.key(0), (d,))
    # the vector's step sees the map (the convolution's features where the agent is)
    jv = np.asarray(jax.jacobian(lambda v: model.step(0, v, jnp.array([0.3, -0.2]))[48:])(z0))
    assert np.abs(jv[:, :48]).max() > 0
    jac = jax.jacobian(lambda v: model.step(0, v, jnp.array([0.3, -0.2]))[:48])(z0)[:, :48]
    jac = np.abs(np.asarray(jac)).reshape(4, 4, 3, 4, 4, 3).sum((2, 5))  # [out r,c, in r,c]
    for r, c in [(0, 0), (1, 2), (3, 3)]:
        near = np.zeros((4, 4), bool)
        near[max(r - 1, 0): r + 2, max(c - 1, 0): c + 2] = True
        assert jac[r, c][near].min() > 0 and jac[r, c][~near].max() == 0
    assert model.rollout(1, z0, jnp.zeros((3, wm.macro_dim))).shape == (3, d)
    with pytest.raises(ValueError, match=f"latent_dim = {d}"):
        wm_train.build_model((16, 16, 2), 2, dataclasses.replace(wm, latent_dim=16))
    cfg = stack_config({"wm": {"spatial": 3, "latent_dim": d}})
    with pytest.raises(ConfigError, match="pixel frames"):
        pipeline.for_task(tasks.load("two-rooms"), cfg)


def test_the_keypoint_encoders_patch_sets_its_map_and_keeps_old_keys():
    """`patch` sizes the keypoint encoder's feature map; at its default (4) a stack's key
    is what it was before the field existed, so cached stacks stay valid."""
    model = wm_train.build_model((16, 16, 2), 2, dataclasses.replace(WM, pixels=True, patch=2))
    assert model.encoder.c1.patch == 2
    assert model.encode(jnp.zeros((3, 16, 16, 2), jnp.uint8)).shape == (3, WM.latent_dim)
    assert "patch" not in StackConfig().to_dict()["wm"]
    two = StackConfig(wm=dataclasses.replace(StackConfig().wm, patch=2))
    assert two.to_dict()["wm"]["patch"] == 2 and two.key() != StackConfig().key()
    with pytest.raises(ValueError, match="patch"):
        WMConfig(patch=0)


def test_step_pred_loss_is_scale_free_and_zero_for_a_perfect_model():
    """In units of the typical step: scaling the latent changes nothing (so shrinking it
    cannot pay), a perfect prediction costs 0, and predicting no move costs more than
    one step (a random walk drifts further each step)."""
    rng = np.random.default_rng(0)
    z = jnp.asarray(np.cumsum(rng.normal(size=(32, 9, 4)), 1))
    still = jnp.repeat(z[:, :1], 8, 1)
    assert float(wm_train.step_pred_loss(z[:, 1:], z)) == 0.0
    one = float(wm_train.step_pred_loss(still, z))
    assert one > 1.0
    np.testing.assert_allclose(float(wm_train.step_pred_loss(0.01 * still, 0.01 * z)), one,
                               rtol=1e-4)
    assert "step_pred_weight" not in StackConfig().to_dict()["train"]  # old keys stay


def test_split_channel_keypoints_follow_their_own_channel_only():
    """With `split_channels` the second channel's keypoints do not depend on what the
    first channel holds (a new map's walls cannot move the agent's keypoints); mixed,
    they do. Both fields keep the keys of older stacks."""
    rng = np.random.default_rng(0)
    agent = rng.random((1, 16, 16, 1))
    a = jnp.asarray(np.concatenate([rng.random((1, 16, 16, 1)), agent], -1), jnp.float32)
    b = jnp.asarray(np.concatenate([rng.random((1, 16, 16, 1)), agent], -1), jnp.float32)
    cfg = dataclasses.replace(WM, pixels=True, split_channels=True, sharp=4.0)
    enc = wm_train_model_encoder(cfg)
    la, lb = enc.keypoint_logits(a), enc.keypoint_logits(b)
    k = la.shape[-1] // 2
    np.testing.assert_allclose(la[..., k:], lb[..., k:], atol=1e-6)
    assert not np.allclose(la[..., :k], lb[..., :k])
    mixed = wm_train_model_encoder(dataclasses.replace(WM, pixels=True))
    assert not np.allclose(mixed.keypoint_logits(a), mixed.keypoint_logits(b))
    assert enc(jnp.zeros((3, 16, 16, 2), jnp.uint8)).shape == (3, WM.latent_dim)
    keys = StackConfig().to_dict()["wm"]
    assert "sharp" not in keys and "split_channels" not in keys
    with pytest.raises(ValueError, match="sharp"):
        WMConfig(sharp=-1.0)


def wm_train_model_encoder(cfg):
    return wm_train.build_model((16, 16, 2), 2, cfg).encoder
