"""What ``Tuner.fit()`` returns: a ``ResultGrid`` of ``Result``s (``ray.tune.ResultGrid``)."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from miniray.tune.checkpoint import Checkpoint
from miniray.tune.tune_config import check_mode
from miniray.tune.utils import flat, flat_metrics


@dataclass
class Result:
    """One trial's outcome: its last metrics, checkpoint, directory, history and error."""

    metrics: dict
    checkpoint: Checkpoint | None
    error: BaseException | None
    path: str
    best_checkpoints: list = field(default_factory=list)
    history: list = field(default_factory=list, repr=False)
    status: str = "TERMINATED"
    stopped_early: bool = False
    exploits: list = field(default_factory=list, repr=False)
    trial_id: str = ""
    filesystem: Any = None

    @property
    def config(self) -> dict:
        return self.metrics.get("config", {})

    @property
    def metrics_dataframe(self):
        import pandas as pd

        return pd.DataFrame([flat_metrics(h) for h in self.history])

    def __repr__(self):
        shown = {k: v for k, v in self.metrics.items() if k != "config"}
        keys = list(shown)[:6]
        metrics = ", ".join(f"{k}={shown[k]!r}" for k in keys)
        return (f"Result(metrics={{{metrics}{', ...' if len(shown) > 6 else ''}}}, "
                f"path={self.path!r}, checkpoint={self.checkpoint}, error={self.error!r})")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not (isinstance(value, float) and
                                                    not math.isfinite(value))


class ResultGrid:
    def __init__(self, results: list[Result], experiment_path: str, metric=None, mode=None,
                 scheduler=None):
        self._results, self.experiment_path = results, experiment_path
        self._metric, self._mode = metric, mode
        self.scheduler = scheduler

    @classmethod
    def from_trials(cls, trials, experiment_path, metric, mode, scheduler=None) -> "ResultGrid":
        results = []
        for t in trials:
            error = None
            if t.status == "ERROR" and t.error:
                exc = t.error.get("exception")
                error = exc if isinstance(exc, BaseException) else RuntimeError(
                    t.error.get("traceback") or t.error.get("message"))
            latest = t.latest_checkpoint
            metrics = {**t.last_result, "config": t.config}
            best = [(Checkpoint(t.checkpoint_path(c)), c["metrics"]) for c in t.checkpoints]
            results.append(Result(metrics=metrics,
                                  checkpoint=Checkpoint(t.checkpoint_path(latest)) if latest
                                  else None, error=error, path=t.local_path,
                                  best_checkpoints=best, history=list(t.results),
                                  status=t.status, stopped_early=t.stopped_early,
                                  exploits=list(t.exploits), trial_id=t.trial_id))
        return cls(results, experiment_path, metric, mode, scheduler)

    def __len__(self):
        return len(self._results)

    def __getitem__(self, i) -> Result:
        return self._results[i]

    def __iter__(self):
        return iter(self._results)

    @property
    def errors(self) -> list[BaseException]:
        return [r.error for r in self._results if r.error is not None]

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    @property
    def num_terminated(self) -> int:
        return sum(1 for r in self._results if r.status == "TERMINATED")

    def get_best_result(self, metric: str | None = None, mode: str | None = None,
                        scope: str = "last", filter_nan_and_inf: bool = True) -> Result:
        metric, mode = metric or self._metric, mode or self._mode
        if not metric or not mode:
            raise ValueError("get_best_result needs a metric and a mode: pass them here, e.g. "
                             "get_best_result(metric='loss', mode='min'), or to tune.TuneConfig")
        check_mode(mode, "get_best_result")
        if scope not in ("last", "all", "avg", "last-5-avg", "last-10-avg"):
            raise ValueError(f"scope={scope!r}: use 'last', 'all', 'avg', 'last-5-avg' or "
                             "'last-10-avg'")
        sign = 1 if mode == "max" else -1
        best, best_score, seen = None, None, set()
        for result in self._results:
            history = [flat(h) for h in result.history]
            values = [h[metric] for h in history if metric in h]
            seen.update(k for h in history for k in h)
            if filter_nan_and_inf:
                values = [v for v in values if _finite(v)]
            if not values:
                continue
            if scope == "last":
                score = values[-1]
            elif scope == "all":
                score = max(values) if mode == "max" else min(values)
            elif scope == "avg":
                score = sum(values) / len(values)
            else:
                n = 5 if scope == "last-5-avg" else 10
                score = sum(values[-n:]) / len(values[-n:])
            if best_score is None or sign * score > sign * best_score:
                best, best_score = result, score
        if best is None:
            if not self._results:
                raise RuntimeError("No trials ran, so there is no best result.")
            known = sorted(seen) if seen else "nothing (did every trial fail? see .errors)"
            raise KeyError(f"No trial reported the metric {metric!r}. The trials reported: "
                           f"{known}")
        return best

    def get_dataframe(self, filter_metric: str | None = None, filter_mode: str | None = None):
        import pandas as pd

        rows = []
        for result in self._results:
            row = flat_metrics(result.metrics)
            if filter_metric and result.history:
                values = [h for h in map(flat_metrics, result.history) if filter_metric in h]
                if values:
                    pick = max if filter_mode == "max" else min
                    row = pick(values, key=lambda h: h[filter_metric])
            row.update(_flatten(result.config or {}, "config/"))
            row["logdir"] = os.path.basename(result.path)
            rows.append(row)
        return pd.DataFrame(rows)

    def plot(self, metric: str | None = None, mode: str | None = None, title: str | None = None,
             figsize: tuple[float, float] | None = None):
        """Every trial's ``metric`` over training_iteration, early stops and exploits marked;
        ``figsize=(width, height)`` in inches at 100 dpi (default 7.5 × 4)."""
        from miniray.tune.plot import plot_results

        return plot_results(self, metric=metric or self._metric, mode=mode or self._mode,
                            title=title, figsize=figsize)

    def __repr__(self):
        return (f"ResultGrid<{len(self)} trials: {self.num_terminated} terminated, "
                f"{self.num_errors} errors, at {self.experiment_path}>")


def _flatten(d: dict, prefix: str) -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out
