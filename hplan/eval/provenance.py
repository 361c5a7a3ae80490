"""Where a result came from: the code's commit and the machine, stamped into every
benchmark JSON so that numbers can be compared (and reproduced) honestly."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import jax


def machine() -> dict:
    dev = jax.devices()[0]
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = None
    return {"platform": platform.platform(), "processor": platform.processor(),
            "cpu_cores": cores, "jax_backend": jax.default_backend(),
            "device": getattr(dev, "device_kind", str(dev)), "jax": jax.__version__}


def commit() -> str:
    """The checkout's short commit ("-dirty" with uncommitted code changes; results a
    benchmark rewrites under bench/results do not count), or "unknown" outside git."""
    here = Path(__file__).parent
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=here, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ":(top,exclude)bench/results"],
                               capture_output=True, text=True, cwd=here)
        return out + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def stamp() -> dict:
    return {"commit": commit(), "machine": machine()}
