"""``MedianStoppingRule``: stop a trial whose best score so far is below the median of the other
trials' running means at the same time (Golovin et al., Vizier, 2017).

State: every result of every trial (``_results[trial_id]``) and the trials already stopped.  At a
result at time t past ``grace_period``, the other trials that have reached t are compared by the
mean of their scores up to t; with fewer than ``min_samples_required`` of them the trial goes on.
"""
from __future__ import annotations

from collections import defaultdict

from miniray.tune.schedulers.trial_scheduler import TrialScheduler


class MedianStoppingRule(TrialScheduler):
    needs_metric = True

    def __init__(self, time_attr: str = "time_total_s", metric: str | None = None,
                 mode: str | None = None, grace_period: float = 60.0,
                 min_samples_required: int = 3, min_time_slice: float = 0,
                 hard_stop: bool = True):
        super().__init__(metric, mode)
        self._time_attr, self._grace_period = time_attr, grace_period
        self._min_samples_required, self._hard_stop = min_samples_required, hard_stop
        self._results: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self._stopped: set[str] = set()

    def on_trial_result(self, tune_controller, trial, result) -> str:
        if self._time_attr not in result or self._metric not in result:
            return self.CONTINUE
        if trial.trial_id in self._stopped:
            return self.STOP
        time = result[self._time_attr]
        self._results[trial.trial_id].append((time, self.score(result)))
        if time < self._grace_period:
            return self.CONTINUE
        others = [t for t, rows in self._results.items()
                  if t != trial.trial_id and rows and rows[-1][0] >= time]
        if len(others) < self._min_samples_required:
            return self.CONTINUE
        median = self._median([self._running_mean(t, time) for t in others])
        best = max(score for _, score in self._results[trial.trial_id])
        if best < median:
            self._stopped.add(trial.trial_id)
            return self.STOP if self._hard_stop else self.PAUSE
        return self.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result) -> None:
        if result and self._time_attr in result and self._metric in result:
            rows = self._results[trial.trial_id]
            if not rows or rows[-1][0] != result[self._time_attr]:
                rows.append((result[self._time_attr], self.score(result)))

    def _running_mean(self, trial_id: str, time: float) -> float:
        scores = [s for t, s in self._results[trial_id] if t <= time]
        return sum(scores) / len(scores) if scores else float("-inf")

    @staticmethod
    def _median(values: list[float]) -> float:
        values = sorted(values)
        n = len(values)
        return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2

    def debug_string(self) -> str:
        return f"Using MedianStoppingRule: num_stopped={len(self._stopped)}."
