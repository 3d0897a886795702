"""Population-based training (``PopulationBasedTraining``, Jaderberg et al. 2017).

Every ``perturbation_interval`` (in ``time_attr`` units) a trial is ranked against the population
by its latest score.  One in the bottom ``quantile_fraction`` *exploits* a random trial of the top
quantile: it is paused, takes a copy of that trial's latest checkpoint and its config, then
*explores*: each key of ``hyperparam_mutations`` is resampled (with ``resample_probability``) or
perturbed (numbers times a random one of ``perturbation_factors``, lists one step to a neighbour).
The trial then resumes from the copied checkpoint with the new config.

State: ``_state[trial_id]`` (last score, last perturbation time) and ``exploit_log``, one dict per
exploit (who copied whom, at which iterations, old and new config), also appended as JSON lines to
``pbt_global.txt`` and ``pbt_policy_<trial_id>.txt`` in the experiment dir, in Ray's format.
"""
from __future__ import annotations

import copy
import json
import math
import os
import random

from miniray.tune.schedulers.trial_scheduler import TrialScheduler
from miniray.tune.search.sample import Domain, PyRandom


def explore(config: dict, mutations: dict, resample_probability: float, factors, rng,
            custom_explore_fn=None) -> dict:
    """A perturbed copy of ``config`` (see the module docstring)."""
    new = copy.deepcopy(config)
    for key, spec in mutations.items():
        if isinstance(spec, dict):
            new[key] = explore(config.get(key, {}), spec, resample_probability, factors, rng)
            continue
        value = config.get(key)
        if isinstance(spec, (list, tuple)):
            spec = list(spec)
            if rng.random() < resample_probability or value not in spec:
                new[key] = rng.choice(spec)
            else:
                index = spec.index(value) + rng.choice([-1, 1])
                new[key] = spec[min(max(index, 0), len(spec) - 1)]
            continue
        if rng.random() < resample_probability or value is None:
            new[key] = spec._draw(PyRandom(rng)) if isinstance(spec, Domain) else spec()
        else:
            new[key] = value * rng.choice(list(factors))
            if isinstance(value, int) and not isinstance(value, bool):
                new[key] = int(round(new[key]))
    if custom_explore_fn is not None:
        new = custom_explore_fn(new)
        if not isinstance(new, dict):
            raise TypeError("custom_explore_fn must return the new config dict")
    return new


class PopulationBasedTraining(TrialScheduler):
    needs_metric = True
    supports_pause = True

    def __init__(self, time_attr: str = "time_total_s", metric: str | None = None,
                 mode: str | None = None, perturbation_interval: float = 60.0,
                 burn_in_period: float = 0.0, hyperparam_mutations: dict | None = None,
                 quantile_fraction: float = 0.25, resample_probability: float = 0.25,
                 perturbation_factors: tuple = (1.2, 0.8), custom_explore_fn=None,
                 log_config: bool = True, require_attrs: bool = True, synch: bool = False,
                 seed: int | None = None):
        super().__init__(metric, mode)
        if not hyperparam_mutations and custom_explore_fn is None:
            raise ValueError("PopulationBasedTraining needs hyperparam_mutations={...} (what to "
                             "perturb) or a custom_explore_fn")
        if not 0 <= quantile_fraction <= 0.5:
            raise ValueError(f"quantile_fraction={quantile_fraction}: must be in [0, 0.5]")
        if perturbation_interval <= 0:
            raise ValueError("perturbation_interval must be > 0")
        self._time_attr, self._interval = time_attr, perturbation_interval
        self._burn_in, self._mutations = burn_in_period, dict(hyperparam_mutations or {})
        self._quantile, self._resample = quantile_fraction, resample_probability
        self._factors, self._custom = perturbation_factors, custom_explore_fn
        self._log_config, self._require_attrs = log_config, require_attrs
        self._rng = random.Random(seed)
        self._state: dict[str, dict] = {}
        self._trials: dict[str, object] = {}
        self.exploit_log: list[dict] = []
        self.num_perturbations = 0

    def on_trial_add(self, tune_controller, trial) -> None:
        self._state[trial.trial_id] = {"score": None, "last_perturbation": 0.0}
        self._trials[trial.trial_id] = trial

    def next_sync(self, trial, iteration):
        if self._time_attr != "training_iteration":
            return iteration + 1
        state = self._state[trial.trial_id]
        point = state["last_perturbation"] + self._interval
        point = max(point, self._burn_in)
        return max(iteration + 1, int(math.ceil(point)))

    def on_trial_result(self, tune_controller, trial, result) -> str:
        if self._time_attr not in result or self._metric not in result:
            if self._require_attrs:
                missing = [a for a in (self._time_attr, self._metric) if a not in result]
                raise ValueError(f"PopulationBasedTraining needs {missing} in every result; the "
                                 f"trial reported {sorted(result)}")
            return self.CONTINUE
        state = self._state[trial.trial_id]
        time = result[self._time_attr]
        state["score"] = self.score(result)
        if time < self._burn_in or time - state["last_perturbation"] < self._interval:
            return self.CONTINUE
        state["last_perturbation"] = time
        lower, upper = self._quantiles()
        if trial.trial_id in lower and upper:
            donor = self._trials[self._rng.choice(upper)]
            if self._exploit(tune_controller, trial, donor):
                return self.PAUSE
        return self.CONTINUE

    def _quantiles(self):
        scored = [t for t, s in self._state.items() if s["score"] is not None
                  and self._trials[t].status in ("RUNNING", "PAUSED", "PENDING")]
        if len(scored) <= 1:
            return [], []
        scored.sort(key=lambda t: self._state[t]["score"])
        n = int(math.ceil(len(scored) * self._quantile))
        if n > len(scored) / 2:
            n = int(math.floor(len(scored) / 2))
        return scored[:n], scored[-n:] if n else []

    def _exploit(self, tune_controller, trial, donor) -> bool:
        checkpoint = tune_controller.latest_checkpoint(donor)
        new_config = explore(donor.config, self._mutations, self._resample, self._factors,
                             self._rng, self._custom)
        entry = {"trial_id": trial.trial_id, "donor_id": donor.trial_id,
                 "iteration": trial.last_result.get("training_iteration", 0),
                 "donor_iteration": donor.last_result.get("training_iteration", 0),
                 "old_config": copy.deepcopy(trial.config), "donor_config": donor.config,
                 "new_config": new_config, "checkpoint": checkpoint}
        self.exploit_log.append(entry)
        self.num_perturbations += 1
        tune_controller.exploit(trial, donor, new_config, checkpoint)
        if self._log_config:
            self._write_log(tune_controller, trial, donor, entry)
        return True

    def _write_log(self, tune_controller, trial, donor, entry) -> None:
        policy = [trial.experiment_tag, donor.experiment_tag, entry["iteration"],
                  entry["donor_iteration"], donor.config, entry["new_config"]]
        line = json.dumps(policy, default=repr)
        root = tune_controller.experiment_path
        for name in ("pbt_global.txt", f"pbt_policy_{trial.trial_id}.txt"):
            with open(os.path.join(root, name), "a") as f:
                f.write(line + "\n")

    def debug_string(self) -> str:
        return f"PopulationBasedTraining: {self.num_perturbations} perturbs"


PBT = PopulationBasedTraining
