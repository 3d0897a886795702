"""``RunConfig``, ``CheckpointConfig`` and ``FailureConfig`` (``ray.train`` / ``ray.tune`` names)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

DEFAULT_STORAGE = os.path.join("~", "miniray_results")


def default_storage_path() -> str:
    return os.path.expanduser(os.environ.get("MINIRAY_RESULTS_DIR", DEFAULT_STORAGE))


@dataclass
class CheckpointConfig:
    """How many checkpoints to keep and which: the best by ``checkpoint_score_attribute``."""

    num_to_keep: int | None = None
    checkpoint_score_attribute: str | None = None
    checkpoint_score_order: str = "max"
    checkpoint_frequency: int = 0
    checkpoint_at_end: bool | None = None

    def __post_init__(self):
        if self.num_to_keep is not None and (not isinstance(self.num_to_keep, int)
                                             or self.num_to_keep < 1):
            raise ValueError(f"CheckpointConfig(num_to_keep={self.num_to_keep!r}): keep at least "
                             "1 checkpoint, or None to keep all")
        if self.checkpoint_score_order not in ("min", "max"):
            raise ValueError("CheckpointConfig(checkpoint_score_order=...) must be 'min' or 'max'")


@dataclass
class FailureConfig:
    """Retry a failed trial up to ``max_failures`` times (-1: forever) from its last checkpoint;
    ``fail_fast=True`` ends the whole run at the first failure ("raise": re-raise it)."""

    max_failures: int = 0
    fail_fast: bool | str = False

    def __post_init__(self):
        if not isinstance(self.max_failures, int) or self.max_failures < -1:
            raise ValueError("FailureConfig(max_failures=...): a whole number >= 0, or -1 to retry "
                             "forever")
        if self.fail_fast not in (True, False, "raise"):
            raise ValueError("FailureConfig(fail_fast=...): True, False or 'raise'")


@dataclass
class RunConfig:
    name: str | None = None
    storage_path: str | None = None
    stop: Any = None
    checkpoint_config: CheckpointConfig = field(default_factory=CheckpointConfig)
    failure_config: FailureConfig = field(default_factory=FailureConfig)
    verbose: int | None = None
    callbacks: list | None = None
    progress_reporter: Any = None
    log_to_file: Any = False
    sync_config: Any = None
    storage_filesystem: Any = None

    def __post_init__(self):
        if self.checkpoint_config is None:
            self.checkpoint_config = CheckpointConfig()
        if self.failure_config is None:
            self.failure_config = FailureConfig()
        stop = self.stop
        if stop is not None and not (isinstance(stop, dict) or callable(stop)):
            raise TypeError("RunConfig(stop=...): a dict like {'training_iteration': 10}, a "
                            "function (trial_id, result) -> bool, or a tune.Stopper")
        if self.verbose is not None and self.verbose not in (0, 1, 2, 3):
            raise ValueError("RunConfig(verbose=...): 0 (silent), 1 (status), 2 (table, the "
                             "default) or 3 (table and each trial's end)")
