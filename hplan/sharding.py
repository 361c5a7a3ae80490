"""Data parallelism with `jax.sharding`: a 1-D `data` mesh over devices (and hosts).

The training batch is sharded over the mesh, parameters and optimizer state are
replicated, and each update stays one jitted SPMD program: XLA's partitioner inserts the
gradient all-reduce. Nothing here communicates by hand. Across hosts, call
`init_distributed` first (`jax.distributed.initialize`); every process then holds the
same data and runs the same program on its own devices.
"""

from __future__ import annotations

import os
import socket
import time

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"


def init_distributed(coordinator: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None, timeout_s: int = 120) -> None:
    """`jax.distributed.initialize`, from arguments or the environment variables
    HPLAN_COORDINATOR (host:port of process 0), HPLAN_NUM_PROCESSES, HPLAN_PROCESS_ID.
    A coordinator that does not answer within `timeout_s` (HPLAN_INIT_TIMEOUT) is an
    error that names it, not a hang."""
    coordinator = coordinator or os.environ.get("HPLAN_COORDINATOR")
    num = num_processes or os.environ.get("HPLAN_NUM_PROCESSES")
    pid = process_id if process_id is not None else os.environ.get("HPLAN_PROCESS_ID")
    timeout_s = int(os.environ.get("HPLAN_INIT_TIMEOUT", timeout_s))
    if not coordinator or num is None or pid is None:
        raise ValueError("multi-host training needs the coordinator address, the process "
                         "count and this process's id. Fix: pass --coordinator HOST:PORT "
                         "--num-processes N --process-id I (or set HPLAN_COORDINATOR, "
                         "HPLAN_NUM_PROCESSES, HPLAN_PROCESS_ID)")
    if int(pid) != 0:  # XLA aborts the whole process on a missed deadline: probe first
        _wait_for(coordinator, timeout_s, f"process {pid} of {num}")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=int(num),
                               process_id=int(pid), initialization_timeout=timeout_s)


def _wait_for(coordinator: str, timeout_s: float, who: str) -> None:
    host, _, port = coordinator.rpartition(":")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=2):
                return
        except OSError as e:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{who} could not reach the coordinator at {coordinator} within "
                    f"{timeout_s:g}s ({e}). Fix: start process 0 on that host:port first, "
                    "check the address and the firewall, or raise HPLAN_INIT_TIMEOUT") from e
            time.sleep(0.5)


def mesh(devices: int | None = None) -> Mesh:
    """A 1-D `data` mesh over the first `devices` devices (default: all, every host's)."""
    all_devices = jax.devices()
    n = len(all_devices) if devices is None else devices
    if not 1 <= n <= len(all_devices):
        raise ValueError(f"devices={devices} but {len(all_devices)} are visible "
                         f"({jax.default_backend()}). Fix: ask for 1..{len(all_devices)} (on "
                         "CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N makes N)")
    return Mesh(np.array(all_devices[:n]), (AXIS,))


def check_batch(batch: int, m: Mesh, what: str = "batch") -> None:
    n = m.devices.size
    if batch % n:
        raise ValueError(f"the global {what} {batch} does not divide over {n} devices. Fix: "
                         f"use a {what} that is a multiple of {n} (per-device {what} = "
                         f"global / devices)")


def replicate(tree, m: Mesh):
    """Every leaf on every device of `m` (safe with several processes: each process
    provides its own, identical, copy)."""
    sharding = NamedSharding(m, P())

    def put(x):
        x = np.asarray(x) if not isinstance(x, jax.Array) or x.is_fully_addressable else x
        if isinstance(x, jax.Array):
            return x
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    return jax.tree.map(put, tree)


def shard_batch(x: jax.Array, m: Mesh | None) -> jax.Array:
    """Inside a jitted step: the leading (batch) axis split over the mesh."""
    if m is None:
        return x
    return jax.lax.with_sharding_constraint(x, NamedSharding(m, P(AXIS)))


def local(x):
    """A host copy of a replicated array (every process holds the whole value)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(x.addressable_shards[0].data)
    return np.asarray(x)
