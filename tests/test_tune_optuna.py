"""OptunaSearch: Tune's space converted to Optuna's, ask-and-tell over real trials."""
from __future__ import annotations

import importlib.util

import pytest

from miniray import tune
from miniray.tune.search import ConcurrencyLimiter

HAVE_OPTUNA = importlib.util.find_spec("optuna") is not None


@pytest.mark.skipif(HAVE_OPTUNA, reason="optuna is installed")
def test_without_optuna_the_error_says_how_to_get_it():
    from miniray.tune.search.optuna import OptunaSearch

    with pytest.raises(ImportError, match="pip install optuna"):
        OptunaSearch()


@pytest.mark.skipif(not HAVE_OPTUNA, reason="optuna is not installed")
def test_optuna_search_finds_the_minimum_of_a_nested_space(rt, tmp_path):
    from miniray.tune.search.optuna import OptunaSearch

    def f(config):
        tune.report({"loss": (config["x"] - 3) ** 2 + (config["nested"]["y"] - 1) ** 2
                     + config["c"]})

    searcher = ConcurrencyLimiter(OptunaSearch(seed=0), max_concurrent=2)
    results = tune.Tuner(f, param_space={"x": tune.uniform(-10, 10), "c": tune.choice([0, 1]),
                                         "nested": {"y": tune.randint(-5, 5)}, "k": 7},
                         tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=30,
                                                     search_alg=searcher),
                         run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    best = results.get_best_result()
    assert len(results) == 30 and len(searcher.searcher.study.trials) == 30
    assert best.config["k"] == 7 and best.metrics["loss"] < 4.0
    with pytest.raises(ValueError, match="grid_search"):
        from miniray.tune.search.optuna.optuna_search import to_distributions

        to_distributions({"a": tune.grid_search([1, 2])})
