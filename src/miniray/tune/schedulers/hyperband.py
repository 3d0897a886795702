"""Synchronous HyperBand (``HyperBandScheduler``, Li et al. 2017).

Brackets, filled in turn from the most aggressive (s = s_max) down: bracket s takes
``n0 = ceil(s_max_1 / (s + 1) * eta**s)`` trials, each first run for ``r0 = max_t * eta**-s``
iterations.  A trial reaching the bracket's milestone is PAUSED (its slot goes to another trial).
Once every live trial of a full bracket (or of the last one, when the search has no more trials to
give) has reached it, the top ``len(live) // eta`` go on to ``milestone * eta`` and the rest stop.

State: ``_brackets`` (a list of dicts: n0, milestone, live trial ids, scores at the milestone) and
``_trial_bracket`` (trial id -> bracket index).  Halving happens in ``choose_trial_to_run``, which
the controller calls whenever a slot is free, so no trial waits for a result that cannot come.
"""
from __future__ import annotations

import math

from miniray.tune.schedulers.trial_scheduler import TrialScheduler


class HyperBandScheduler(TrialScheduler):
    needs_metric = True
    supports_pause = True

    def __init__(self, time_attr: str = "training_iteration", metric: str | None = None,
                 mode: str | None = None, max_t: int = 81, reduction_factor: float = 3,
                 stop_last_trials: bool = True):
        super().__init__(metric, mode)
        if reduction_factor <= 1 or max_t < 1:
            raise ValueError("HyperBandScheduler needs max_t >= 1 and reduction_factor > 1")
        self._time_attr, self._max_t, self._eta = time_attr, max_t, reduction_factor
        self._stop_last_trials = stop_last_trials
        self._s_max_1 = int(round(math.log(max_t) / math.log(reduction_factor))) + 1
        self._brackets: list[dict] = []
        self._trial_bracket: dict[str, int] = {}
        self._trials: dict[str, object] = {}
        self.decisions: list[tuple] = []    # (bracket, milestone, kept ids, stopped ids)

    def _new_bracket(self) -> dict:
        s = self._s_max_1 - 1 - (len(self._brackets) % self._s_max_1)
        n0 = int(math.ceil(self._s_max_1 / (s + 1) * self._eta ** s))
        r0 = max(1, int(self._max_t * self._eta ** -s))
        bracket = {"s": s, "n0": n0, "milestone": r0, "live": [], "scores": {}, "added": 0}
        self._brackets.append(bracket)
        return bracket

    def on_trial_add(self, tune_controller, trial) -> None:
        bracket = self._brackets[-1] if self._brackets else None
        if bracket is None or bracket["added"] >= bracket["n0"]:
            bracket = self._new_bracket()
        bracket["live"].append(trial.trial_id)
        bracket["added"] += 1
        self._trial_bracket[trial.trial_id] = len(self._brackets) - 1
        self._trials[trial.trial_id] = trial

    def next_sync(self, trial, iteration):
        if self._time_attr != "training_iteration":
            return iteration + 1
        bracket = self._brackets[self._trial_bracket[trial.trial_id]]
        return max(iteration + 1, min(bracket["milestone"], self._max_t))

    def on_trial_result(self, tune_controller, trial, result) -> str:
        if self._time_attr not in result or self._metric not in result:
            return self.CONTINUE
        bracket = self._brackets[self._trial_bracket[trial.trial_id]]
        if trial.trial_id not in bracket["live"]:
            return self.STOP
        if result[self._time_attr] >= self._max_t and self._stop_last_trials:
            return self.STOP
        if result[self._time_attr] < bracket["milestone"]:
            return self.CONTINUE
        bracket["scores"][trial.trial_id] = self.score(result)
        return self.PAUSE

    def is_budget_stop(self, result: dict) -> bool:
        return result.get(self._time_attr, 0) >= self._max_t

    def _remove(self, trial) -> None:
        index = self._trial_bracket.get(trial.trial_id)
        if index is not None:
            bracket = self._brackets[index]
            if trial.trial_id in bracket["live"]:
                bracket["live"].remove(trial.trial_id)
            bracket["scores"].pop(trial.trial_id, None)

    def on_trial_complete(self, tune_controller, trial, result) -> None:
        self._remove(trial)

    def on_trial_error(self, tune_controller, trial) -> None:
        self._remove(trial)

    on_trial_remove = on_trial_error

    def _ready(self, bracket: dict, last: bool, tune_controller) -> bool:
        full = bracket["added"] >= bracket["n0"] or (last and tune_controller.search_finished())
        return full and bool(bracket["live"]) and all(t in bracket["scores"]
                                                      for t in bracket["live"])

    def _halve(self, index: int, bracket: dict, tune_controller) -> None:
        ranked = sorted(bracket["live"], key=lambda t: bracket["scores"][t], reverse=True)
        keep = max(1, int(len(ranked) / self._eta))
        kept, stopped = ranked[:keep], ranked[keep:]
        self.decisions.append((index, bracket["milestone"], list(kept), list(stopped)))
        bracket["live"], bracket["scores"] = kept, {}
        bracket["milestone"] = min(self._max_t, int(bracket["milestone"] * self._eta))
        for trial_id in stopped:
            tune_controller.stop_trial(self._trials[trial_id])

    def choose_trial_to_run(self, tune_controller):
        for index, bracket in enumerate(self._brackets):
            if self._ready(bracket, index == len(self._brackets) - 1, tune_controller):
                self._halve(index, bracket, tune_controller)
        for bracket in self._brackets:
            for trial_id in bracket["live"]:
                trial = self._trials[trial_id]
                if trial.status == "PENDING" or (trial.status == "PAUSED"
                                                 and trial_id not in bracket["scores"]):
                    if tune_controller.has_resources_for(trial):
                        return trial
        return None

    def debug_string(self) -> str:
        parts = [f"[s={b['s']}: {len(b['live'])} live, milestone {b['milestone']}]"
                 for b in self._brackets]
        return "Using HyperBand: " + " ".join(parts)
