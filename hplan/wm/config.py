"""The one configuration of a world-model stack: data, world model, training, critics.

A task's `[stack]` table overrides the defaults of each part, in sub-tables named after
it; the CLI, the benchmarks and the notebook all read it through `stack_config`:

    [stack.data]      # hplan.wm.config.DataConfig: exploration episodes
    episodes = 4096
    [stack.wm]        # hplan.wm.models.WMConfig: latent size, widths, level strides
    strides = [1, 8]
    [stack.train]     # hplan.wm.jepa.TrainConfig: JEPA updates, rate, anti-collapse
    steps = 8000
    [stack.critic]    # hplan.wm.critic.CriticConfig: one critic per level
    steps = 20000
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from hplan.core import ConfigError
from hplan.wm.critic import CriticConfig
from hplan.wm.jepa import TrainConfig
from hplan.wm.models import WMConfig


@dataclasses.dataclass(frozen=True)
class DataConfig:
    episodes: int = 4096  # reward-free exploration episodes
    steps: int = 64  # actions per episode
    policy: str = "mixed"  # random | correlated | mixed


@dataclasses.dataclass(frozen=True)
class StackConfig:
    data: DataConfig = DataConfig()
    wm: WMConfig = WMConfig()
    train: TrainConfig = TrainConfig()
    critic: CriticConfig = CriticConfig()

    def to_dict(self) -> dict:
        d = json.loads(json.dumps(dataclasses.asdict(self)))
        # Fields added after stacks were cached are left out at their defaults, so the
        # key (and saved config) of every older stack stays the same.
        for part, defaults in _LATE.items():
            for k, v in defaults.items():
                if d[part].get(k) == v:
                    del d[part][k]
        return d

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()
                              ).hexdigest()[:12]

    def with_seed(self, seed: int) -> StackConfig:
        return dataclasses.replace(
            self, train=dataclasses.replace(self.train, seed=seed),
            critic=dataclasses.replace(self.critic, seed=seed))


_LATE = {"wm": {"inverse": False, "glimpse": 0, "spatial": 0, "patch": 4, "sharp": 0.0,
                "split_channels": False},
         "train": {"latent_cov_weight": 0.0, "temporal_var_weight": 0.0, "temporal_std": 0.1,
                   "step_floor_weight": 0.0, "step_floor": 0.5,
                   "step_pred_weight": 0.0}}
_PARTS = {"data": DataConfig, "wm": WMConfig, "train": TrainConfig, "critic": CriticConfig}


def _typed(cls, key: str, value: Any, where: str) -> Any:
    default = {f.name: f for f in dataclasses.fields(cls)}[key].default
    want = type(default)
    if want is tuple:
        if not isinstance(value, list | tuple) or not all(isinstance(v, int) for v in value):
            raise ConfigError(key, f"{where}.{key} = {value!r} is not a list of integers",
                              f"write {key} = [1, 8]")
        return tuple(value)
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, want) or (want is int and isinstance(value, bool)):
        raise ConfigError(key, f"{where}.{key} = {value!r} is not a {want.__name__}",
                          f"write {key} = <{want.__name__}>")
    return value


def check_overrides(table: dict) -> None:
    """Raise `ConfigError` (with the key) for anything `stack_config` would refuse."""
    stack_config(table)


def stack_config(overrides: dict | None = None, base: StackConfig | None = None) -> StackConfig:
    """`base` (default: `StackConfig()`) with a `[stack]`-style table of overrides applied."""
    cfg = base or StackConfig()
    for part, values in (overrides or {}).items():
        if part not in _PARTS:
            raise ConfigError(part, f"unknown stack section {part!r}",
                              f"use [stack.{'], [stack.'.join(_PARTS)}]")
        if not isinstance(values, dict):
            raise ConfigError(part, f"stack.{part} must be a table",
                              f"write [stack.{part}] and its keys below it")
        cls = _PARTS[part]
        fields = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in fields:
                raise ConfigError(key, f"unknown key {key!r} in [stack.{part}]",
                                  f"use one of: {', '.join(sorted(fields))}")
        typed = {k: _typed(cls, k, v, f"stack.{part}") for k, v in values.items()}
        try:
            new = dataclasses.replace(getattr(cfg, part), **typed)
        except ValueError as e:  # the part's own validation
            raise ConfigError(next(iter(typed), part), str(e).split(". Fix:")[0],
                              str(e).split("Fix: ")[-1] if "Fix:" in str(e)
                              else "see the message") from None
        cfg = dataclasses.replace(cfg, **{part: new})
    if cfg.train.inverse_weight > 0 and not cfg.wm.inverse:
        cfg = dataclasses.replace(cfg, wm=dataclasses.replace(cfg.wm, inverse=True))
    if cfg.data.steps < _span(cfg):
        raise ConfigError("steps", f"episodes of {cfg.data.steps} steps are shorter than a "
                          f"training window ({_span(cfg)})",
                          f"set [stack.data] steps >= {_span(cfg)}")
    return cfg


def _span(cfg: StackConfig) -> int:
    from hplan.wm.jepa import span

    try:
        return span(cfg.wm, cfg.train)
    except ValueError as e:
        raise ConfigError("rollout", str(e), "give one rollout length per level") from None
