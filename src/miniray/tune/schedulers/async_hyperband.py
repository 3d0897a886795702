"""ASHA: asynchronous successive halving (``AsyncHyperBandScheduler``, alias ``ASHAScheduler``).

State: brackets, each a list of rungs ``(milestone, {trial_id: score})`` from the highest milestone
down.  Milestones are ``grace_period * reduction_factor**k`` (k counted by the bracket) up to max_t.
When a trial first reaches a milestone, the rung's cutoff is the ``1 - 1/reduction_factor`` quantile
of the scores recorded there so far; a trial below it stops, otherwise it continues and its score is
recorded.  A trial reaching ``max_t`` stops.  No trial ever waits for another (asynchronous), so
the runner only has to pause a trial at its next milestone (``next_sync``).
"""
from __future__ import annotations

import math

from miniray.tune.schedulers.trial_scheduler import TrialScheduler


class _Bracket:
    def __init__(self, min_t: float, max_t: float, reduction_factor: float, s: int):
        self.rf = reduction_factor
        max_rungs = int(math.log(max_t / min_t) / math.log(reduction_factor) + 1)
        self.rungs = [(min_t * reduction_factor ** (k + s), {})
                      for k in reversed(range(max_rungs - s))]

    def cutoff(self, recorded: dict):
        values = sorted(v for v in recorded.values() if v == v)      # numpy's nanpercentile
        if not values:
            return None
        pos = (1 - 1 / self.rf) * (len(values) - 1)
        low = int(math.floor(pos))
        high = min(low + 1, len(values) - 1)
        return values[low] + (values[high] - values[low]) * (pos - low)

    def on_result(self, trial_id: str, cur_iter: float, cur_rew) -> str:
        action = TrialScheduler.CONTINUE
        for milestone, recorded in self.rungs:
            if cur_iter < milestone or trial_id in recorded:
                continue
            cutoff = self.cutoff(recorded)
            if cutoff is not None and cur_rew is not None and cur_rew < cutoff:
                action = TrialScheduler.STOP
            if cur_rew is not None:
                recorded[trial_id] = cur_rew
            break
        return action

    def milestones(self) -> list:
        return sorted(m for m, _ in self.rungs)


class AsyncHyperBandScheduler(TrialScheduler):
    needs_metric = True

    def __init__(self, time_attr: str = "training_iteration", metric: str | None = None,
                 mode: str | None = None, max_t: float = 100, grace_period: float = 1,
                 reduction_factor: float = 4, brackets: int = 1, stop_last_trials: bool = True):
        super().__init__(metric, mode)
        if grace_period <= 0:
            raise ValueError(f"grace_period={grace_period}: must be > 0")
        if max_t <= 0 or grace_period > max_t:
            raise ValueError(f"max_t={max_t}, grace_period={grace_period}: need "
                             "0 < grace_period <= max_t")
        if reduction_factor <= 1:
            raise ValueError(f"reduction_factor={reduction_factor}: must be > 1")
        self._time_attr, self._max_t = time_attr, max_t
        self._grace_period, self._reduction_factor = grace_period, reduction_factor
        self._stop_last_trials = stop_last_trials
        self._brackets = [_Bracket(grace_period, max_t, reduction_factor, s)
                          for s in range(brackets)]
        self._trial_bracket: dict[str, int] = {}
        self._counter = 0
        self.num_stopped = 0

    def on_trial_add(self, tune_controller, trial) -> None:
        if len(self._brackets) == 1:
            self._trial_bracket[trial.trial_id] = 0
            return
        # Ray's softmax over bracket sizes, made repeatable by a counter-seeded draw.
        import random

        sizes = [len(b.rungs) for b in self._brackets]
        weights = [math.exp(s - max(sizes)) for s in sizes]
        rng = random.Random(self._counter)
        self._counter += 1
        self._trial_bracket[trial.trial_id] = rng.choices(range(len(sizes)), weights)[0]

    def next_sync(self, trial, iteration):
        if self._time_attr != "training_iteration":
            return iteration + 1
        bracket = self._brackets[self._trial_bracket.get(trial.trial_id, 0)]
        later = [m for m in bracket.milestones() + [self._max_t] if m > iteration]
        return int(math.ceil(min(later))) if later else iteration + 1

    def on_trial_result(self, tune_controller, trial, result) -> str:
        if self._time_attr not in result:
            raise ValueError(f"{type(self).__name__}(time_attr={self._time_attr!r}): the trial "
                             f"reported no {self._time_attr!r}; it reported {sorted(result)}")
        if self._metric not in result:
            return self.CONTINUE
        if result[self._time_attr] >= self._max_t and self._stop_last_trials:
            action = self.STOP
        else:
            bracket = self._brackets[self._trial_bracket.get(trial.trial_id, 0)]
            action = bracket.on_result(trial.trial_id, result[self._time_attr], self.score(result))
        if action == self.STOP and result[self._time_attr] < self._max_t:
            self.num_stopped += 1
        return action

    def is_budget_stop(self, result: dict) -> bool:
        return result.get(self._time_attr, 0) >= self._max_t

    def on_trial_complete(self, tune_controller, trial, result) -> None:
        if result and self._metric in result and self._time_attr in result:
            bracket = self._brackets[self._trial_bracket.get(trial.trial_id, 0)]
            bracket.on_result(trial.trial_id, result[self._time_attr], self.score(result))

    def debug_string(self) -> str:
        lines = [f"Using AsyncHyperBand: num_stopped={self.num_stopped}"]
        for i, bracket in enumerate(self._brackets):
            rungs = ", ".join(f"{m:g}: {len(r)}" for m, r in reversed(bracket.rungs))
            lines.append(f"Bracket {i}: rungs (milestone: trials) {rungs}")
        return "\n".join(lines)


ASHAScheduler = AsyncHyperBandScheduler
