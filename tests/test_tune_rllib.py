"""Tune runs RLlib's algorithms (issue #19 "With Tune"): nested result keys and trial resources.

RLlib reports nested results (``result["env_runners"]["episode_return_mean"]``); Ray Tune reads
them by flattened keys (``"env_runners/episode_return_mean"``) in ``stop``, ``metric``, schedulers,
``get_best_result`` and the dataframes.  An algorithm asks Tune for bundles (its main process plus
one per env runner); the trial's actor holds only the first, so its runners are not starved.
"""
from __future__ import annotations

import csv
import os
import time

import pytest

pytest.importorskip("gymnasium", reason="miniray.rllib needs gymnasium (pip install 'miniray[rl]')")

from miniray import tune  # noqa: E402
from miniray.rllib.algorithms.ppo import PPO, PPOConfig  # noqa: E402
from miniray.tune.schedulers import ASHAScheduler  # noqa: E402

RETURN = "env_runners/episode_return_mean"


def small_ppo(**runners):
    """PPO that learns CartPole in a handful of small iterations."""
    return (PPOConfig().environment("CartPole-v1")
            .env_runners(**{"num_env_runners": 1, "num_envs_per_env_runner": 4, **runners})
            .training(lr=2e-3, train_batch_size=1000, minibatch_size=250, num_epochs=8, lambda_=0.95,
                      vf_clip_param=1e6, vf_loss_coeff=0.5, model={"fcnet_hiddens": [32, 32]})
            .debugging(seed=1))


def test_tuner_by_name_stops_on_a_nested_key_and_keeps_results_nested(rt, tmp_path):
    results = tune.Tuner(
        "PPO", param_space=small_ppo().to_dict(),
        run_config=tune.RunConfig(name="ppo", storage_path=str(tmp_path), verbose=0,
                                  stop={RETURN: 150, "training_iteration": 40}),
    ).fit()
    assert results.num_errors == 0, results.errors
    result = results[0]
    returns = result.metrics_dataframe[RETURN].tolist()         # flattened, as Ray's progress.csv
    assert result.metrics["env_runners"]["episode_return_mean"] >= 150, returns
    assert result.metrics["training_iteration"] < 40, returns     # stopped by the return, not the cap
    assert all(r < 150 for r in returns[:-1])                     # ... at the first report over it
    with open(os.path.join(result.path, "progress.csv"), newline="") as f:
        assert RETURN in next(csv.reader(f))
    assert results.get_dataframe()[RETURN].iloc[0] == returns[-1]


class _Times(tune.Callback):
    def __init__(self):
        self.start, self.end = {}, {}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.start[trial.trial_id] = time.time()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.end[trial.trial_id] = time.time()


def test_two_ppo_trials_run_at_once_each_with_its_own_runner(rt, tmp_path):
    """Each trial: 0.5 CPU for its actor + 0.5 for its env runner actor = 1 CPU, so two fit on
    two CPUs.  Were the actor to hold the whole 1 CPU, the runners would never start."""
    config = small_ppo(num_cpus_per_env_runner=0.5, sample_timeout_s=20.0).resources(
        num_cpus_for_main_process=0.5).training(train_batch_size=400)
    assert PPO.default_resource_request(config).bundles == [{"CPU": 0.5}, {"CPU": 0.5}]
    times = _Times()
    results = tune.Tuner(
        PPO, param_space={**config.to_dict(), "lr": tune.grid_search([1e-3, 3e-3])},
        tune_config=tune.TuneConfig(metric=RETURN, mode="max"),
        run_config=tune.RunConfig(name="grid", storage_path=str(tmp_path), verbose=0,
                                  stop={"training_iteration": 3}, callbacks=[times]),
    ).fit()
    assert results.num_errors == 0, results.errors
    assert sorted(r.config["lr"] for r in results) == [1e-3, 3e-3]
    assert all(r.metrics["num_healthy_env_runners"] == 1 for r in results)
    (a, b) = sorted(times.start.values())
    assert b < min(times.end.values()), "the second trial should start before the first ends"
    best = results.get_best_result(metric=RETURN, mode="max")
    frame = results.get_dataframe()
    assert best.metrics["env_runners"]["episode_return_mean"] == frame[RETURN].max()
    assert best.config["lr"] == frame.loc[frame[RETURN].idxmax(), "config/lr"]
    assert results.get_best_result() is best                     # TuneConfig's nested metric


def test_an_algorithm_too_big_for_the_cluster_is_refused_before_it_starts(rt, tmp_path):
    config = small_ppo(num_env_runners=2)            # 1 CPU for the trial + 2 runners x 1 CPU
    with pytest.raises(tune.TuneError, match="num_env_runners"):
        tune.Tuner(PPO, param_space=config.to_dict(),
                   run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()


def _nested(config):
    for step in range(1, 9):
        tune.report({"eval": {"score": config["x"] * step, "tag": "ok"}, "plain": step})


def test_function_trainables_nested_metrics_for_stop_scheduler_and_best(rt, tmp_path):
    results = tune.Tuner(
        _nested, param_space={"x": tune.grid_search([1, 2, 3])},
        tune_config=tune.TuneConfig(metric="eval/score", mode="max",
                                    scheduler=ASHAScheduler(max_t=8, grace_period=2)),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0, stop={"eval/score": 20}),
    ).fit()
    assert results.num_errors == 0, results.errors
    best = results.get_best_result()
    assert best.config["x"] == 3 and best.metrics["eval"]["score"] == 21       # stopped at 21 (step 7)
    assert {"eval/score", "eval/tag", "config/x"} <= set(results.get_dataframe().columns)
    with pytest.raises(KeyError, match="eval/score"):
        results.get_best_result(metric="eval/nope", mode="max")


def test_a_nested_metric_no_trial_reports_names_the_flat_keys(rt, tmp_path):
    with pytest.raises(tune.TuneError, match="eval/score"):
        tune.Tuner(_nested, param_space={"x": 1},
                   tune_config=tune.TuneConfig(metric="eval/missing", mode="max"),
                   run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
