"""A trained world-model stack as pure pytrees, and its diagnostics.

`Stack` holds the world model and one critic per level as (graphdef, params) pairs, plus
a linear latent -> goal-space probe (for guardrails and plots). Training, checkpoints and
files are in `hplan.train.pipeline`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hplan.wm import diagnostics as diag
from hplan.wm import jepa
from hplan.wm.models import WMConfig


@dataclasses.dataclass(frozen=True, eq=False)
class Stack:
    wm_cfg: WMConfig
    wm_graph: object
    wm_params: object
    critic_graph: object
    critic_params: tuple  # one per level (strides of wm_cfg)
    probe: tuple[np.ndarray, np.ndarray] | None
    metrics: dict
    home: str | None = None  # the directory it was saved in (side models are kept there)

    def model(self):
        return nnx.merge(self.wm_graph, self.wm_params)

    def critic(self, level: int):
        """The cost-to-go `V(z, g)` of `level` (in that level's strides); -1: the top."""
        return nnx.merge(self.critic_graph, self.critic_params[level])

    def encode(self, obs) -> np.ndarray:
        """Encode observations of any leading shape, in batches."""
        return jepa.encode_all(self.wm_graph, self.wm_params, np.asarray(obs))


def diagnose(task, data, stack: Stack, z: np.ndarray | None = None) -> dict:
    """Collapse, probes (per level, on predicted latents), prediction error per level (near
    obstacles separately where the env's oracle knows them), critic quality (oracle)."""
    wm = stack.wm_cfg
    z = stack.encode(data.obs) if z is None else z
    model = stack.model()
    oracle = task.oracle
    xy = data.xy
    m = {"task": task.name, **diag.latent_stats(z), "probe_r2": {}, "pred_error": {}}
    rng = np.random.default_rng(1)
    sel = rng.permutation(data.n_episodes)[:2048]
    for level, stride in enumerate(wm.strides):
        k = max(1, min(data.n_steps // stride, 8 if level == 0 else 4))
        zt = z[sel, : k * stride + 1 : stride]
        acts = data.actions[sel, : k * stride].reshape(len(sel), k, stride, -1)
        if level == 0:
            u = acts[:, :, 0]
        else:
            u = np.asarray(jax.jit(model.macros[level - 1])(jnp.asarray(acts)))
        roll = lambda z0, a, level=level: model.rollout(level, z0, a)  # noqa: E731
        pred = np.asarray(jax.jit(jax.vmap(roll))(jnp.asarray(zt[:, 0]), jnp.asarray(u)))
        err = diag.prediction_error(pred, zt)
        row = {"stride": stride, "horizon_steps": [stride * (j + 1) for j in range(k)],
               "all": err.mean(0).tolist()}
        if oracle is not None and xy is not None:
            near = oracle.near_obstacle(xy[sel, 0])
            row.update({k: err[w].mean(0).tolist() for k, w in (("near_wall", near),
                                                                ("open", ~near)) if w.any()},
                       near_wall_share=float(near.mean()))
        m["pred_error"][f"level{level}"] = row
        if xy is not None:
            true = xy[sel, stride: k * stride + 1: stride]
            # A level's latent is what its predictor outputs one of its own steps ahead.
            m["probe_r2"][f"level{level}"] = diag.probe_r2(pred[:, :1], true[:, :1])
            m.setdefault("probe_r2_by_horizon", {})[f"level{level}"] = [
                diag.probe_r2(pred[:, j], true[:, j]) for j in range(k)]
    if xy is not None:
        m["probe_r2"]["encoder"] = diag.probe_r2(z, xy)
    if oracle is not None and hasattr(oracle, "critic_quality"):
        encode = jax.jit(model.encode)
        m["critic"] = {f"level{lv}": oracle.critic_quality(
            lambda a, b, c=stack.critic(lv): c(a, b), encode) for lv in range(wm.levels)}
        m["critic"]["latent_l2"] = oracle.critic_quality(diag.l2_value, encode)
    return m
