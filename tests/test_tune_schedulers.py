"""Tune's search spaces and schedulers as pure state machines: hand-computed cases, no processes."""
from __future__ import annotations

import random

import pytest

from miniray import tune
from miniray.tune.schedulers import (ASHAScheduler, FIFOScheduler, HyperBandScheduler,
                                     MedianStoppingRule, PopulationBasedTraining, TrialScheduler)
from miniray.tune.schedulers.pbt import explore
from miniray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, Searcher
from miniray.tune.search.searcher import FINISHED, SearcherAdapter

CONTINUE, STOP, PAUSE = TrialScheduler.CONTINUE, TrialScheduler.STOP, TrialScheduler.PAUSE


class Trial:
    def __init__(self, trial_id, config=None):
        self.trial_id, self.config, self.status = trial_id, config or {}, "RUNNING"
        self.last_result, self.experiment_tag = {}, f"{trial_id}_tag"


class Controller:
    """The part of the controller's interface schedulers use, recorded for the test to read."""

    def __init__(self, trials, experiment_path="/nonexistent", finished=False):
        self.trials, self.experiment_path, self.finished = trials, experiment_path, finished
        self.stopped, self.exploits = [], []

    def get_trials(self):
        return self.trials

    def has_resources_for(self, trial):
        return True

    def search_finished(self):
        return self.finished

    def stop_trial(self, trial):
        self.stopped.append(trial.trial_id)
        trial.status = "TERMINATED"

    def latest_checkpoint(self, trial):
        return f"/ckpt/{trial.trial_id}"

    def exploit(self, trial, donor, new_config, checkpoint):
        self.exploits.append((trial.trial_id, donor.trial_id, new_config, checkpoint))
        trial.config = new_config


def _generate(space, num_samples=1, seed=0):
    search = BasicVariantGenerator(random_state=seed)
    search.set_search_properties("m", "max", space, num_samples=num_samples)
    out = []
    while True:
        config = search.suggest(f"t{len(out)}")
        if config == FINISHED:
            return out
        out.append(config)


def test_grid_times_samples_and_nested_spaces():
    space = {"a": tune.grid_search([1, 2]), "b": {"c": tune.grid_search(["x", "y"])},
             "u": tune.uniform(0, 1), "const": 5}
    configs = _generate(space, num_samples=3)
    assert len(configs) == 12
    points = sorted((c["a"], c["b"]["c"]) for c in configs)
    assert points == sorted([(a, c) for a in (1, 2) for c in "xy"] * 3)
    assert all(0 <= c["u"] <= 1 and c["const"] == 5 for c in configs)
    assert len({c["u"] for c in configs}) == 12


def test_every_domain_draws_in_range_and_a_seed_repeats_the_search():
    space = {"u": tune.uniform(2, 3), "q": tune.quniform(0, 1, 0.25), "lu": tune.loguniform(1e-4, 1e-1),
             "qlu": tune.qloguniform(1e-3, 1, 1e-3), "ri": tune.randint(0, 3),
             "qri": tune.qrandint(0, 10, 5), "lri": tune.lograndint(1, 1000), "rn": tune.randn(5, 0.1),
             "ch": tune.choice(["a", "b"]),
             "sf": tune.sample_from(lambda spec: spec.config.u * 10)}
    configs = _generate(space, num_samples=50, seed=7)
    for c in configs:
        assert 2 <= c["u"] <= 3 and c["q"] in (0, 0.25, 0.5, 0.75, 1.0)
        assert 1e-4 <= c["lu"] <= 1e-1 and c["ri"] in (0, 1, 2) and c["qri"] in (0, 5, 10)
        assert 1 <= c["lri"] < 1000 and isinstance(c["lri"], int) and 4 < c["rn"] < 6
        assert c["ch"] in "ab" and c["sf"] == pytest.approx(c["u"] * 10)
    assert {c["ri"] for c in configs} == {0, 1, 2}
    assert _generate(space, num_samples=50, seed=7) == configs
    assert _generate(space, num_samples=50, seed=8) != configs


def test_bad_spaces_say_what_to_do():
    with pytest.raises(ValueError, match="lower bound"):
        tune.uniform(1, 0)
    with pytest.raises(ValueError, match="> 0"):
        tune.loguniform(0, 1)
    with pytest.raises(TypeError, match="param_space must be a dict"):
        tune.Tuner(lambda c: None, param_space=[1, 2])
    with pytest.raises(ValueError, match="mode must be 'min'"):
        tune.TuneConfig(metric="loss", mode="minimize")


def test_asha_hand_computed_rungs():
    # rf=3, grace 1, max_t 9: rungs at 1, 3, 9.  The cutoff at a rung is the 66.7th percentile
    # (linear interpolation) of the scores recorded there before this trial.
    asha = ASHAScheduler(metric="score", mode="max", max_t=9, grace_period=1, reduction_factor=3)
    trials = {n: Trial(n) for n in "ABCD"}
    c = Controller(list(trials.values()))
    for t in trials.values():
        asha.on_trial_add(c, t)
    decide = lambda n, it, s: asha.on_trial_result(c, trials[n], {"training_iteration": it, "score": s})
    assert decide("A", 1, 1.0) == CONTINUE                 # rung empty
    assert decide("B", 1, 3.0) == CONTINUE                 # cutoff 1
    assert decide("C", 1, 2.0) == STOP                     # cutoff 1 + 2*(2/3) = 2.33
    assert decide("D", 1, 2.4) == CONTINUE                 # [1,2,3]: cutoff 2.33
    assert decide("A", 2, 0.0) == CONTINUE                 # not a rung
    assert decide("A", 3, 1.0) == CONTINUE                 # rung 3 empty
    assert decide("B", 3, 0.5) == STOP                     # cutoff 1 (A's)
    assert decide("D", 9, 100.0) == STOP                   # max_t reached
    assert asha.is_budget_stop({"training_iteration": 9}) and asha.num_stopped == 2
    # The runner only has to wait at the rungs (and max_t).
    assert [asha.next_sync(trials["A"], i) for i in (0, 1, 2, 3, 5, 8)] == [1, 3, 3, 9, 9, 9]
    assert FIFOScheduler().next_sync(trials["A"], 3) is None


def test_asha_needs_a_metric_before_any_trial():
    with pytest.raises(ValueError, match="needs a metric and a mode"):
        ASHAScheduler().check_ready()


def test_median_stopping_rule_hand_computed():
    rule = MedianStoppingRule(time_attr="training_iteration", metric="score", mode="max",
                              grace_period=2, min_samples_required=2)
    trials = {n: Trial(n) for n in "ABCD"}
    c = Controller(list(trials.values()))
    for name, scores in (("A", [1, 2, 3]), ("B", [2, 2, 2])):
        for it, s in enumerate(scores, 1):
            rule.on_trial_result(c, trials[name], {"training_iteration": it, "score": s})
    # At t=2 the others' running means are A (1+2)/2 = 1.5 and B 2: median 1.75.
    assert rule.on_trial_result(c, trials["C"], {"training_iteration": 1, "score": 0}) == CONTINUE
    assert rule.on_trial_result(c, trials["C"], {"training_iteration": 2, "score": 0.5}) == STOP
    assert rule.on_trial_result(c, trials["D"], {"training_iteration": 1, "score": 0}) == CONTINUE
    assert rule.on_trial_result(c, trials["D"], {"training_iteration": 2, "score": 1.8}) == CONTINUE


def test_hyperband_hand_computed_bracket():
    # max_t 9, eta 3: the first bracket takes 9 trials for 1 iteration, keeps 3 for 3, then 1.
    hb = HyperBandScheduler(metric="score", mode="max", max_t=9, reduction_factor=3)
    trials = [Trial(f"t{i}") for i in range(9)]
    c = Controller(trials)
    for t in trials:
        t.status = "PENDING"
        hb.on_trial_add(c, t)
    assert hb.next_sync(trials[0], 0) == 1
    for i, t in enumerate(trials):
        assert hb.choose_trial_to_run(c) is t
        t.status = "RUNNING"
        assert hb.on_trial_result(c, t, {"training_iteration": 1, "score": i}) == PAUSE
        t.status = "PAUSED"
    assert hb.choose_trial_to_run(c) is trials[8]         # halving: 8, 7, 6 go on, best first
    assert hb.decisions[0] == (0, 1, ["t8", "t7", "t6"], [f"t{i}" for i in range(5, -1, -1)])
    assert sorted(c.stopped) == [f"t{i}" for i in range(6)]
    assert hb.next_sync(trials[8], 1) == 3
    for i, t in ((6, trials[6]), (7, trials[7]), (8, trials[8])):
        t.status = "RUNNING"
        assert hb.on_trial_result(c, t, {"training_iteration": 2, "score": 0}) == CONTINUE
        assert hb.on_trial_result(c, t, {"training_iteration": 3, "score": -i}) == PAUSE
        t.status = "PAUSED"
    assert hb.choose_trial_to_run(c) is trials[6]         # lowest -i is best: t6 alone goes on
    assert hb.decisions[1][2:] == (["t6"], ["t7", "t8"])
    assert hb.on_trial_result(c, trials[6], {"training_iteration": 9, "score": 0}) == STOP


def test_pbt_bottom_quantile_exploits_the_top():
    pbt = PopulationBasedTraining(time_attr="training_iteration", metric="score", mode="max",
                                  perturbation_interval=2, quantile_fraction=0.25,
                                  resample_probability=0.0, log_config=False,
                                  hyperparam_mutations={"lr": tune.uniform(0, 1)}, seed=0)
    trials = [Trial(f"t{i}", {"lr": 0.1 * (i + 1)}) for i in range(4)]
    c = Controller(trials)
    for t in trials:
        pbt.on_trial_add(c, t)
    for i, t in enumerate(trials):
        t.last_result = {"training_iteration": 1, "score": i}
        assert pbt.on_trial_result(c, t, t.last_result) == CONTINUE   # before the interval
    assert pbt.next_sync(trials[0], 1) == 2
    for i, t in enumerate(trials):
        t.last_result = {"training_iteration": 2, "score": i}
    # t0 is the bottom quarter, t3 the top quarter: t0 copies t3 and perturbs lr by 1.2 or 0.8.
    assert pbt.on_trial_result(c, trials[0], trials[0].last_result) == PAUSE
    (target, donor, config, checkpoint), = c.exploits
    assert (target, donor, checkpoint) == ("t0", "t3", "/ckpt/t3")
    assert config["lr"] in (pytest.approx(0.4 * 1.2), pytest.approx(0.4 * 0.8))
    assert pbt.exploit_log[0]["donor_id"] == "t3" and pbt.exploit_log[0]["old_config"] == {"lr": 0.1}
    assert pbt.on_trial_result(c, trials[3], trials[3].last_result) == CONTINUE  # top: no exploit


def test_pbt_explore_moves_lists_to_a_neighbour_and_resamples():
    rng = random.Random(1)
    new = explore({"bs": 32, "lr": 0.5}, {"bs": [16, 32, 64]}, 0.0, (1.2, 0.8), rng)
    assert new["bs"] in (16, 64) and new["lr"] == 0.5
    new = explore({"lr": 0.5}, {"lr": tune.uniform(10, 11)}, 1.0, (1.2, 0.8), rng)
    assert 10 <= new["lr"] <= 11
    with pytest.raises(ValueError, match="hyperparam_mutations"):
        PopulationBasedTraining(metric="m", mode="max")


class Counting(Searcher):
    def __init__(self):
        super().__init__()
        self.n, self.completed = 0, []

    def suggest(self, trial_id):
        self.n += 1
        return {"x": self.n}

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.completed.append(trial_id)


def test_concurrency_limiter_and_searcher_adapter():
    limited = SearcherAdapter(ConcurrencyLimiter(Counting(), max_concurrent=2))
    limited.set_search_properties("m", "max", {"const": 1, "x": tune.uniform(0, 1)}, num_samples=5)
    assert limited.suggest("a") == {"const": 1, "x": 1}
    assert limited.suggest("b") == {"const": 1, "x": 2}
    assert limited.suggest("c") is None                 # two live: wait
    limited.on_trial_complete("a")
    assert limited.suggest("c") == {"const": 1, "x": 3}
    for name in "bc":
        limited.on_trial_complete(name)
    limited.suggest("d"), limited.suggest("e")
    assert limited.suggest("f") == FINISHED
    with pytest.raises(ValueError, match="positive whole number"):
        ConcurrencyLimiter(Counting(), max_concurrent=0)


def test_the_terminal_table_stays_compact():
    from miniray.tune.progress import text_table
    from miniray.tune.trial import Trial as RealTrial

    trials = []
    for i in range(64):
        t = RealTrial(f"t{i:02d}", {"lr": i / 64}, i, "train", "/nonexistent", {"lr": i / 64},
                      {"CPU": 1})
        t.status = "RUNNING" if i < 2 else "TERMINATED"
        t.last_result = {"loss": (i - 40) ** 2, "training_iteration": 3}
        trials.append(t)
    text = text_table(trials, "loss", "min", 12.0)
    lines = text.splitlines()
    assert len(lines) <= 15, text
    assert "2 RUNNING, 62 TERMINATED" in lines[0] and "52 more not shown" in lines[0]
    assert "best loss=0" in lines[1] and "train_t40" in lines[1]
    assert "RUNNING" in lines[3] and "RUNNING" in lines[4] and "train_t40" in lines[5]


def test_import_miniray_stays_light_and_tune_loads_on_first_use():
    import subprocess
    import sys

    code = ("import sys, miniray as ray\n"
            "heavy = [m for m in ('miniray.tune', 'miniray.train', 'pandas', 'matplotlib', 'optuna')"
            " if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "from miniray.tune.schedulers import ASHAScheduler\n"
            "from miniray.tune.search import ConcurrencyLimiter\n"
            "from miniray.tune.search.optuna import OptunaSearch\n"
            "assert ray.tune.Tuner and ray.train.RunConfig is ray.tune.RunConfig\n"
            "assert 'pandas' not in sys.modules and 'matplotlib' not in sys.modules\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
