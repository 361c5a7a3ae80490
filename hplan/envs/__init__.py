"""Environments: the registry, goal-task wrappers, and hplan's own worlds.

`make(name, **kwargs)` builds a registered env; `register(name, factory)` adds one (a task
file's `env_module` is imported first, so a user registers theirs without editing hplan).
Shipped: `pointmaze` (hplan.envs.pointmaze), its physics versions `pointmaze-mjx` (a
MuJoCo/MJX ball pushed by forces) and `antmaze` (brax's ant) on the same layouts, and
`brax` (any brax.envs environment).
"""

from hplan.core import factory, import_env_module, make, register, registered

__all__ = ["factory", "import_env_module", "make", "register", "registered"]
