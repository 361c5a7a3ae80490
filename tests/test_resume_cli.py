"""Kill `hplan train` with SIGKILL mid-run, re-run the same command: bit-identical result."""

import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from hplan import tasks
from hplan.train import pipeline


def _cmd(out, data):
    return [sys.executable, "-m", "hplan.cli", "train", "--task", "two-rooms", "--data",
            str(data), "--train-steps", "1500", "--critic-steps", "500", "--out", str(out)]


@pytest.mark.slow
def test_killed_and_resumed_training_equals_uninterrupted(tmp_path):
    data = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "hplan.cli", "collect", "--task", "two-rooms",
                    "--episodes", "512", "--out", str(data)], check=True, capture_output=True)
    subprocess.run(_cmd(tmp_path / "a", data), check=True, capture_output=True)
    proc = subprocess.Popen(_cmd(tmp_path / "b", data), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        wm = tmp_path / "b" / "wm"
        ckpts = list(wm.glob("[0-9]*")) if wm.exists() else []
        if any(int(p.name) >= 500 for p in ckpts):
            break
        time.sleep(0.5)
    proc.kill()
    proc.wait()
    assert not (tmp_path / "b" / "metrics.json").exists(), "run finished before the kill"
    subprocess.run(_cmd(tmp_path / "b", data), check=True, capture_output=True)
    task = tasks.load("two-rooms")
    a, b = pipeline.load_stack(tmp_path / "a", task), pipeline.load_stack(tmp_path / "b", task)
    for x, y in zip(jax.tree.leaves((a.wm_params, a.critic_params)),
                    jax.tree.leaves((b.wm_params, b.critic_params)), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
