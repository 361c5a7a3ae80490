"""pointmaze-mjx-large, the seed-0 stack of bench/hierarchy.py (out/cache): `diag` = held-out level-0 diagnostics (512 fresh episodes, 1/8/32-step relative latent error, position/velocity probe R2); `AGENT,AGENT` = single-episode plan time per step on 4 episodes. Run: .venv/bin/python bench/pointmaze_mjx_followup.py diag | hier-2,flat-mpc-critic"""
import importlib, json, sys, time
sys.path.insert(0, "/work/main")
import jax, jax.numpy as jnp, numpy as np
from hplan import tasks
from hplan.train import pipeline
from hplan.eval import compare
from hplan.wm import diagnostics as diag
C = importlib.import_module("hplan.data.collect")
what = sys.argv[1]
t = tasks.load("pointmaze-mjx-large")
st, ds, where = pipeline.get_stack(t, "out/cache", seed=0, show=False)
res = {"stack": str(where)}
if what == "diag":
    t0 = time.time()
    ho = C.collect(t, jax.random.key(987654), 512, 64, "mixed")  # held-out: a key training never used
    z = st.encode(ho.obs)
    model = st.model()
    K = 32
    roll = jax.jit(jax.vmap(lambda z0, a: model.rollout(0, z0, a)))
    errs = []
    for s0 in (0, 32):  # two windows per episode
        zt = z[:, s0:s0 + K + 1]
        pred = np.asarray(roll(jnp.asarray(zt[:, 0]), jnp.asarray(ho.actions[:, s0:s0 + K])))
        errs.append(diag.prediction_error(pred, zt))
    err = np.concatenate(errs).mean(0)
    res["l0_rel_err"] = {h: float(err[h - 1]) for h in (1, 8, 32)}
    res["l0_rel_err_curve"] = err.tolist()
    W, b = st.probe
    zf = z.reshape(-1, z.shape[-1]); xy = ho.xy.reshape(-1, 2)
    r = xy - (zf @ W + b)
    res["probe_r2_pos_trainprobe_heldout"] = float(1 - (r**2).sum() / ((xy - xy.mean(0))**2).sum())
    res["probe_r2_pos_fit_heldout"] = diag.probe_r2(z, ho.xy)
    vel = ho.obs[..., 2:]
    res["probe_r2_vel_fit_heldout"] = diag.probe_r2(z, vel)
    res["latent"] = {k: v for k, v in diag.latent_stats(z).items() if k != "latent_std"}
    m = st.metrics
    res["train_metrics"] = {"pred_error": m.get("pred_error"), "probe_r2": m.get("probe_r2"),
                            "critic": m.get("critic")}
    res["diag_s"] = time.time() - t0
else:
    names = what.split(",")
    agents = compare.build_agents(t, names, st, ds)
    for n in names:
        t0 = time.time()
        row, out = compare.evaluate_agent(t, agents[n], jax.random.key(0), 4, latency=True, repeats=3)
        pos = np.asarray(out["positions"]); sp = np.linalg.norm(np.diff(pos, axis=1), axis=-1)
        row["speed_cells_per_step_mean"] = float(sp.mean()); row["frac_steps_over_0.4"] = float((sp > 0.4).mean())
        row["wall_s"] = time.time() - t0
        res[n] = row
        print(n, json.dumps(row), flush=True)
print(json.dumps(res, indent=1))
from bench.common import write
print(write(f"pointmaze_mjx_large_{what.replace(',', '_')}", res))
