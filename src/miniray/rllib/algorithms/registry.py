"""Algorithm names, as ``ray.rllib.algorithms.registry``: "PPO" -> PPO (imported only when asked)."""
from __future__ import annotations

import importlib

ALGORITHMS = {"PPO": ("miniray.rllib.algorithms.ppo", "PPO"), "PG": ("miniray.rllib.algorithms.pg", "PG")}


def get_algorithm_class(name: str):
    """The Algorithm class called ``name`` ("PPO", "PG"), or None for a name we do not know."""
    where = ALGORITHMS.get(name)
    if where is None:
        return None
    return getattr(importlib.import_module(where[0]), where[1])
