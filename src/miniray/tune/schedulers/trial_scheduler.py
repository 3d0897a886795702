"""The scheduler interface and FIFO (``ray.tune.schedulers.TrialScheduler`` / ``FIFOScheduler``).

    controller ──on_trial_add / on_trial_result / on_trial_complete──► scheduler
               ◄── CONTINUE | PAUSE | STOP          choose_trial_to_run() ◄── a free slot

Schedulers hold their own bookkeeping (rungs, brackets, scores) in plain dicts keyed by trial id,
and read trials only through ``trial.trial_id``, ``trial.status``, ``trial.config`` and
``trial.last_result``.  ``next_sync(trial, iteration)`` tells the runner the next
training_iteration at which the scheduler needs to see a result before the trial goes on (None:
never); by default that is every report.
"""
from __future__ import annotations

from miniray.tune.tune_config import MetricMode


class TrialScheduler(MetricMode):
    CONTINUE = "CONTINUE"
    PAUSE = "PAUSE"
    STOP = "STOP"
    NOOP = "NOOP"
    needs_metric = False
    supports_pause = False

    def check_ready(self) -> None:
        """Raise before any trial starts if the scheduler lacks its metric or mode."""
        if self.needs_metric and (not self._metric or not self._mode):
            name = type(self).__name__
            raise ValueError(f"{name} needs a metric and a mode to compare trials: pass "
                             f"metric='loss', mode='min' to tune.TuneConfig(...) or to {name}(...)")

    def score(self, result: dict):
        """The result's metric, signed so that larger is better (None if missing)."""
        value = result.get(self._metric)
        if value is None:
            return None
        return value if self._mode == "max" else -value

    def next_sync(self, trial, iteration: int):
        return iteration + 1

    def is_budget_stop(self, result: dict) -> bool:
        """True if a STOP at ``result`` only means the trial used its whole budget (max_t)."""
        return False

    def on_trial_add(self, tune_controller, trial) -> None:
        pass

    def on_trial_error(self, tune_controller, trial) -> None:
        pass

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return self.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result: dict | None) -> None:
        pass

    def on_trial_remove(self, tune_controller, trial) -> None:
        pass

    def choose_trial_to_run(self, tune_controller):
        for status in ("PENDING", "PAUSED"):
            for trial in tune_controller.get_trials():
                if trial.status == status and tune_controller.has_resources_for(trial):
                    return trial
        return None

    def debug_string(self) -> str:
        return f"Using {type(self).__name__}."


class FIFOScheduler(TrialScheduler):
    """Runs trials in the order they were made, to the end (or until ``stop``)."""

    def next_sync(self, trial, iteration):
        return None
