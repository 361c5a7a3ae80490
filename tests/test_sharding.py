"""Scale-out with jax.sharding: 4 forced CPU devices train the same parameters as 1 with
the same global batch, sharded evaluation gives the same episodes, checkpoints move
between device counts, and two processes (jax.distributed on localhost) train together."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

COMMON = """
import json, sys, dataclasses
import jax, jax.numpy as jnp, numpy as np
from hplan import tasks, data, sharding
from hplan.train import loop
from hplan.wm import jepa
from hplan.wm.models import WMConfig
WM = WMConfig(latent_dim=8, hidden=32, strides=(1, 4))
TC = jepa.TrainConfig(steps=200, batch=64, rollout=(4, 2), chunk=100)
task = tasks.load("two-rooms")
ds = data.collect(task, jax.random.key(0), 128, 16)

def train(devices, steps=200, state=None, ckpt=None):
    m = sharding.mesh(devices)
    model = jepa.build_model(ds.obs.shape[2:], 2, WM, 0)
    graph, opt, state0 = jepa.init_state(model, TC)
    obs, acts = sharding.replicate((ds.obs, ds.actions), m)
    chunk, data = jepa.make_chunk(graph, opt, obs, acts, WM, TC, mesh=m)
    state = sharding.replicate(state0 if state is None else state, m)
    state, _ = loop.run(state, chunk, steps, TC.chunk, ckpt, "t", show=False, data=data)
    return jax.tree.map(sharding.local, state)

def flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)]).astype(np.float64)
"""

FOUR = COMMON + """
import tempfile, pathlib
from hplan.agents import MPCConfig
from hplan.agents.true_dynamics import true_mpc
from hplan.eval.runner import evaluate
assert len(jax.devices()) == 4, jax.devices()
one, four = train(1), train(4)
out = {"max_abs_diff": float(np.abs(flat(one["params"]) - flat(four["params"])).max()),
       "scale": float(np.abs(flat(one["params"])).max())}
# the 4-device update is one SPMD program: XLA put the gradient all-reduce in it
m = sharding.mesh(4)
model = jepa.build_model(ds.obs.shape[2:], 2, WM, 0)
graph, opt, st0 = jepa.init_state(model, TC)
obs, acts = sharding.replicate((ds.obs, ds.actions), m)
fn, data = jepa.make_chunk(graph, opt, obs, acts, WM, TC, mesh=m)
hlo = jax.jit(fn).lower(sharding.replicate(st0, m), data).compile().as_text()
out["all_reduce"] = "all-reduce" in hlo
# sharded evaluation: the same episodes, batch split over 4 devices
pol = true_mpc(task, MPCConfig(horizon=8, iters=4, running=1.0, terminal=0.0))
a = evaluate(task, pol, jax.random.key(3), 8, devices=1)
b = evaluate(task, pol, jax.random.key(3), 8, devices=4)
same = lambda k: bool((np.asarray(a[k]) == np.asarray(b[k])).all())  # noqa: E731
out["eval_same"] = same("success") and same("steps_to_goal")
out["eval_success"] = float(np.asarray(b["success"]).mean())
# checkpoints: written on 4 devices, restored on 1 (and back), bit for bit
d = pathlib.Path(tempfile.mkdtemp())
half = train(4, steps=100, ckpt=d / "a")
resumed_on_1 = train(1, steps=100, ckpt=d / "a")  # nothing left to do: restores only
out["restore_4_to_1_exact"] = bool((flat(half) == flat(resumed_on_1)).all())
half1 = train(1, steps=100, ckpt=d / "b")
resumed_on_4 = train(4, steps=100, ckpt=d / "b")
out["restore_1_to_4_exact"] = bool((flat(half1) == flat(resumed_on_4)).all())
# and training on from there: 4 -> 1 equals 1 -> 1 from the same checkpoint
cont_a = train(1, steps=200, ckpt=d / "a")
import shutil; shutil.copytree(d / "a", d / "c")
cont_c = train(1, steps=200, ckpt=d / "c")
out["continue_exact"] = bool((flat(cont_a) == flat(cont_c)).all())
print(json.dumps(out))
"""


def _run(script, env_extra, tmp_path, timeout=900):
    # The script compiles each training program several times (new closures, same
    # program): a compilation cache of its own skips the repeats (40 s -> 30 s here).
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "xla-cache"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5", **env_extra}
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                       text=True, env=env, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_four_devices_equal_one_and_checkpoints_move_between_them(tmp_path):
    out = _run(FOUR, {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}, tmp_path)
    print(out)
    # The same global batch, a different reduction order. Adam moves a coordinate by up
    # to its rate per update whatever the gradient's size, so a near-zero gradient whose
    # last bit differs can move a weight by ~lr (1e-3): the tolerance is the rate.
    assert out["max_abs_diff"] < 1e-3
    assert out["all_reduce"]
    assert out["eval_same"] and out["eval_success"] > 0
    assert out["restore_4_to_1_exact"] and out["restore_1_to_4_exact"]
    assert out["continue_exact"]


TWO = """
import sys
from hplan import sharding
pid, port = int(sys.argv[1]), sys.argv[2]
sharding.init_distributed(f"localhost:{port}", 2, pid)  # before any other JAX call
""" + COMMON + """
assert jax.process_count() == 2 and len(jax.devices()) == 2
state = train(None, steps=100)
np.save(sys.argv[3], flat(state["params"]))
print(json.dumps({"pid": pid, "devices": len(jax.devices())}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


# slow (~60 s): two processes compile and train; the 4-device test covers sharding by default.
@pytest.mark.slow
def test_two_processes_train_together_and_agree(tmp_path):
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(TWO), str(i), port,
                               str(tmp_path / f"p{i}.npy")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    import numpy as np

    a, b = np.load(tmp_path / "p0.npy"), np.load(tmp_path / "p1.npy")
    np.testing.assert_array_equal(a, b)  # one program, replicated parameters


@pytest.mark.parametrize("devices", [0, 64])
def test_bad_device_counts_and_batches_are_refused(devices):
    from hplan import sharding

    with pytest.raises(ValueError, match="Fix"):
        sharding.mesh(devices)


def test_a_batch_that_does_not_divide_is_refused():
    from unittest import mock

    from hplan import sharding

    m = mock.Mock()
    m.devices.size = 3
    with pytest.raises(ValueError, match="global batch 64 does not divide over 3 devices"):
        sharding.check_batch(64, m)


def test_an_unreachable_coordinator_is_a_clear_error_not_a_hang():
    port = _free_port()  # nobody listens there
    code = ("from hplan import sharding\n"
            f"sharding.init_distributed('localhost:{port}', 2, 1, timeout_s=5)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode != 0
    assert f"could not reach the coordinator at localhost:{port} within 5s" in p.stderr
