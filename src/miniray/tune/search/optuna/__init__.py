"""``ray.tune.search.optuna``: Optuna's samplers (TPE by default) as a Tune searcher."""
from miniray.tune.search.optuna.optuna_search import OptunaSearch

__all__ = ["OptunaSearch"]
