"""A linear-quadratic control problem with a closed-form optimum: the yardstick every
planner is checked against (`tests/test_planners.py`, `bench/planners.py`)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax

from hplan.planning import costs
from hplan.planning import planners as P

H, DT = 20, 0.2
A_NP = np.array([[1.0, DT], [0.0, 1.0]])  # 1-D double integrator: (position, velocity)
B_NP = np.array([[0.5 * DT * DT], [DT]])
Q_NP, R_NP = np.diag([1.0, 0.1]), 0.1 * np.eye(1)
BOUND = 50.0  # far outside the optimum (|u*| < 5), so the problem is unconstrained


def lq_step(x, a):
    return jnp.asarray(A_NP, jnp.float32) @ x + jnp.asarray(B_NP, jnp.float32) @ a


def lq_cost(x0):
    term = costs.quadratic(jnp.asarray(Q_NP, jnp.float32), jnp.asarray(R_NP, jnp.float32))
    return costs.trajectory_cost(lq_step, x0, term)


def lq_optimum(x0):
    """Stack the horizon: x = Phi x0 + G u, cost = x'Qx + u'Ru is quadratic in u."""
    n, m = A_NP.shape[0], B_NP.shape[1]
    phi, g = np.zeros((H * n, n)), np.zeros((H * n, H * m))
    for t in range(H):
        phi[t * n:(t + 1) * n] = np.linalg.matrix_power(A_NP, t + 1)
        for s in range(t + 1):
            g[t * n:(t + 1) * n, s * m:(s + 1) * m] = np.linalg.matrix_power(A_NP, t - s) @ B_NP
    qb, rb = np.kron(np.eye(H), Q_NP), np.kron(np.eye(H), R_NP)
    u = -np.linalg.solve(g.T @ qb @ g + rb, g.T @ qb @ phi @ x0)
    x = phi @ x0 + g @ u
    return u.reshape(H, m), float(x @ qb @ x + u @ rb @ u)


def lq_x0(seed):
    rng = np.random.default_rng(seed)
    return np.array([rng.choice([-1.0, 1.0]) * rng.uniform(2, 4), 0.5 * rng.normal()])


# Iteration counts leave a >= 3x margin on seeds 0..4 (gaps measured while tuning).
LQ_CASES = {
    # lr = 1/L for this Hessian (L ~ 47, condition ~ 230): Nesterov converges linearly.
    "gradient": (lambda: P.gradient(optax.sgd(0.02, momentum=0.9, nesterov=True),
                                    -BOUND, BOUND), 200, 1e-3),
    "cem": (lambda: P.cem(1024, 64, -BOUND, BOUND, init_std=2.0, min_std=1e-4,
                          momentum=0.0), 60, 5e-2),
    "mppi": (lambda: P.mppi(1024, 0.3, -BOUND, BOUND, init_std=2.0, min_std=1e-4,
                            momentum=0.0), 100, 5e-2),
    "hybrid": (lambda: P.hybrid(P.cem(256, 32, -BOUND, BOUND, init_std=2.0),
                                P.gradient(optax.sgd(0.02, momentum=0.9, nesterov=True),
                                           -BOUND, BOUND), sample_iters=5), 205, 1e-3),
}
