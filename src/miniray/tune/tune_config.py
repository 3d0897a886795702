"""``TuneConfig``: what to optimise and how to search (``ray.tune.TuneConfig``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def check_mode(mode, where: str) -> None:
    if mode is not None and mode not in ("min", "max"):
        raise ValueError(f"{where}(mode={mode!r}): mode must be 'min' (smaller is better, e.g. a "
                         "loss) or 'max' (larger is better, e.g. an accuracy)")


class MetricMode:
    """The metric and mode a scheduler or searcher compares by; TuneConfig fills in what is unset."""

    def __init__(self, metric: str | None = None, mode: str | None = None):
        check_mode(mode, type(self).__name__)
        self._metric, self._mode = metric, mode

    @property
    def metric(self):
        return self._metric

    @property
    def mode(self):
        return self._mode

    def set_search_properties(self, metric, mode, *args, **spec) -> bool:
        if self._metric is None and metric:
            self._metric = metric
        if self._mode is None and mode:
            self._mode = mode
        return True


@dataclass
class TuneConfig:
    metric: str | None = None
    mode: str | None = None
    search_alg: Any = None
    scheduler: Any = None
    num_samples: int = 1
    max_concurrent_trials: int | None = None
    time_budget_s: float | None = None
    reuse_actors: bool | None = None
    trial_name_creator: Any = None
    trial_dirname_creator: Any = None
    chdir_to_trial_dir: Any = None

    def __post_init__(self):
        check_mode(self.mode, "TuneConfig")
        if self.metric is not None and not isinstance(self.metric, str):
            raise TypeError(f"TuneConfig(metric={self.metric!r}): give the name of a reported "
                            "metric as a string, e.g. metric='loss'")
        if not isinstance(self.num_samples, int) or self.num_samples == 0 or self.num_samples < -1:
            raise ValueError(f"TuneConfig(num_samples={self.num_samples!r}): give a positive "
                             "number of samples (or -1 to sample until time_budget_s runs out)")
        if self.max_concurrent_trials is not None and (not isinstance(self.max_concurrent_trials,
                                                                      int)
                                                       or self.max_concurrent_trials < 0):
            raise ValueError("TuneConfig(max_concurrent_trials=...): give a positive whole number")
        if self.num_samples == -1 and self.time_budget_s is None:
            raise ValueError("TuneConfig(num_samples=-1) samples forever: also set time_budget_s")
