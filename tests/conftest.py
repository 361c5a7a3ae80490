import atexit
import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
os.environ.setdefault("MPLBACKEND", "Agg")


import jax  # noqa: E402
import pytest  # noqa: E402


def pytest_configure(config):
    """A fresh XLA compilation cache per test process (each xdist worker its own: jax
    writes entries unlocked). Tests rebuild the same programs from new closures, which
    the in-memory jit cache cannot recognise and this one can."""
    d = tempfile.mkdtemp(prefix="hplan-xla-cache-")
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    jax.config.update("jax_compilation_cache_dir", d)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


# A constant rate: 600 updates decayed to 0.05x left the path critic nearly flat here.
SMALL = {"wm": {"latent_dim": 8, "hidden": 64, "strides": [1, 4]},
         "train": {"steps": 600, "batch": 128, "rollout": [4, 2], "chunk": 200,
                   "lr_final": 1.0},
         "critic": {"steps": 1000, "batch": 256, "chunk": 500, "nodes": 1024}}


@pytest.fixture(scope="session")
def rooms():
    """(task, stack, data, Context): a small stack on two-rooms, trained once per run."""
    from hplan import agents as A
    from hplan import data, tasks
    from hplan.train import pipeline
    from hplan.wm.config import stack_config

    task = tasks.load("two-rooms")
    ds = data.collect(task, jax.random.key(0), episodes=512, steps=32)
    st = pipeline.train_stack(task, ds, None, stack_config(SMALL), show=False)
    return task, st, ds, A.Context(task, st, ds)
