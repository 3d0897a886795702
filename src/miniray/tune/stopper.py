"""Stoppers: when a trial (or the whole experiment) has done enough (``ray.tune.stopper``).

A Stopper is called on the driver with each result: ``stopper(trial_id, result) -> bool`` ends that
trial; ``stop_all() -> bool`` ends the experiment.  A plain dict ``stop`` is checked in the trial's
actor instead (runner.py), so it costs no round trip per report.
"""
from __future__ import annotations

import time
from collections import defaultdict, deque


class Stopper:
    def __call__(self, trial_id: str, result: dict) -> bool:
        raise NotImplementedError

    def stop_all(self) -> bool:
        return False


class FunctionStopper(Stopper):
    def __init__(self, function):
        self._fn = function

    def __call__(self, trial_id, result):
        return bool(self._fn(trial_id, result))


class MaximumIterationStopper(Stopper):
    def __init__(self, max_iter: int):
        self._max_iter = max_iter

    def __call__(self, trial_id, result):
        return result.get("training_iteration", 0) >= self._max_iter


class TimeoutStopper(Stopper):
    """Stop everything ``timeout`` seconds after the first result."""

    def __init__(self, timeout: float):
        self._timeout = getattr(timeout, "total_seconds", lambda: timeout)()
        self._start = None

    def __call__(self, trial_id, result):
        if self._start is None:
            self._start = time.time()
        return False

    def stop_all(self):
        return self._start is not None and time.time() - self._start >= self._timeout


class CombinedStopper(Stopper):
    def __init__(self, *stoppers: Stopper):
        self._stoppers = stoppers

    def __call__(self, trial_id, result):
        return any([s(trial_id, result) for s in self._stoppers])

    def stop_all(self):
        return any(s.stop_all() for s in self._stoppers)


class TrialPlateauStopper(Stopper):
    """Stop a trial whose ``metric`` has varied by at most ``std`` over its last ``num_results``."""

    def __init__(self, metric: str, std: float = 0.01, num_results: int = 4, grace_period: int = 4,
                 metric_threshold: float | None = None, mode: str | None = None):
        self._metric, self._std, self._n, self._grace = metric, std, num_results, grace_period
        self._threshold, self._mode = metric_threshold, mode
        self._seen = defaultdict(int)
        self._window = defaultdict(lambda: deque(maxlen=num_results))

    def __call__(self, trial_id, result):
        import statistics

        value = result.get(self._metric)
        if value is None:
            return False
        self._seen[trial_id] += 1
        self._window[trial_id].append(value)
        if self._seen[trial_id] < self._grace or len(self._window[trial_id]) < self._n:
            return False
        if self._threshold is not None and self._mode:
            if (self._mode == "min" and value > self._threshold) or \
                    (self._mode == "max" and value < self._threshold):
                return False
        return statistics.pstdev(self._window[trial_id]) <= self._std


def as_stopper(stop):
    """RunConfig.stop as (dict for the actor or None, Stopper for the driver or None)."""
    if stop is None:
        return None, None
    if isinstance(stop, dict):
        return dict(stop), None
    if isinstance(stop, Stopper):
        return None, stop
    return None, FunctionStopper(stop)
