"""A trial as the driver sees it: config, status, results so far, checkpoints, failures.

Statuses: PENDING (not started, or waiting to be retried), RUNNING (in an actor), PAUSED (stopped
by the scheduler, to resume from its checkpoint), TERMINATED (done, or stopped), ERROR (failed more
often than FailureConfig allows).  Plain attributes only, so a whole experiment pickles for
``Tuner.restore``.
"""
from __future__ import annotations

import os
import re
import time

PENDING, RUNNING, PAUSED, TERMINATED, ERROR = "PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR"


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 16 else text[:16]


def experiment_tag(index: int, evaluated: dict) -> str:
    params = ",".join(f"{k}={_short(v)}" for k, v in evaluated.items())
    return f"{index}_{params}" if params else str(index)


class Trial:
    def __init__(self, trial_id: str, config: dict, index: int, trainable_name: str,
                 experiment_path: str, evaluated: dict, resources: dict,
                 bundles: list[dict] | None = None):
        self.trial_id = trial_id
        self.config = config
        self.index = index
        self.trainable_name = trainable_name
        self.evaluated_params = evaluated
        self.experiment_tag = experiment_tag(index, evaluated)
        date = time.strftime("%Y-%m-%d_%H-%M-%S")
        dirname = f"{trainable_name}_{trial_id}_{self.experiment_tag}"[:110] + f"_{date}"
        self.dirname = re.sub(r"[^\w.,=+\-]", "_", dirname)
        self.local_path = os.path.join(experiment_path, self.dirname)
        self.resources = resources                  # the sum: what Tune counts against the cluster
        self.bundles = bundles or [resources]       # the first is the trial actor's own
        self.status = PENDING
        self.last_result: dict = {}
        self.results: list[dict] = []
        self.num_failures = 0
        self.error: dict | None = None
        self.checkpoints: list[dict] = []   # {"name", "iteration", "time_total_s", "metrics"}
        self.checkpoint_index = 0
        self.restore: dict | None = None    # what the next start resumes from (PBT, retries)
        self.stopped_early = False
        self.exploits: list[dict] = []
        self.start_time: float | None = None

    def __str__(self) -> str:
        return f"{self.trainable_name}_{self.trial_id}"

    __repr__ = __str__

    @property
    def path(self) -> str:
        return self.local_path

    @property
    def latest_checkpoint(self) -> dict | None:
        return self.checkpoints[-1] if self.checkpoints else None

    def checkpoint_path(self, entry: dict | None) -> str | None:
        return os.path.join(self.local_path, entry["name"]) if entry else None

    def is_finished(self) -> bool:
        return self.status in (TERMINATED, ERROR)
