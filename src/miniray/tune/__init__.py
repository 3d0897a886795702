"""``miniray.tune``: Ray Tune's API (2.x names) on miniray's actors.

    from miniray import tune
    tuner = tune.Tuner(train_fn, param_space={"lr": tune.loguniform(1e-4, 1e-1)},
                       tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=16))
    results = tuner.fit(); results.get_best_result().config; results.plot()

Layout: tuner.py (checks, restore) -> controller.py (the main loop) -> runner.py (the trial actor)
-> session.py (report/get_checkpoint inside a trial); search/ makes configs, schedulers/ decides
CONTINUE / PAUSE / STOP; storage.py lays out the experiment dir; progress.py and plot.py show it.
"""
from miniray.tune import registry
from miniray.tune.callback import Callback
from miniray.tune.checkpoint import Checkpoint
from miniray.tune.controller import TuneError
from miniray.tune.registry import register_env, register_trainable
from miniray.tune.result_grid import Result, ResultGrid
from miniray.tune.run_config import CheckpointConfig, FailureConfig, RunConfig
from miniray.tune.search.sample import (choice, grid_search, lograndint, loguniform, qlograndint,
                                        qloguniform, qrandint, qrandn, quniform, randint, randn,
                                        sample_from, uniform)
from miniray.tune.session import (get_checkpoint, get_context, get_trial_dir, get_trial_id,
                                  get_trial_name, get_trial_resources, report)
from miniray.tune.stopper import Stopper
from miniray.tune.trainable import (PlacementGroupFactory, Trainable, with_parameters,
                                    with_resources)
from miniray.tune.tune_config import TuneConfig
from miniray.tune.tuner import Tuner

__all__ = ["Tuner", "TuneConfig", "RunConfig", "CheckpointConfig", "FailureConfig", "report",
           "get_checkpoint", "get_context", "Checkpoint", "Trainable", "with_parameters",
           "with_resources", "PlacementGroupFactory", "Result", "ResultGrid", "Callback",
           "Stopper", "TuneError", "register_trainable", "register_env", "choice", "grid_search",
           "lograndint", "loguniform", "qlograndint", "qloguniform", "qrandint", "qrandn",
           "quniform", "randint", "randn", "sample_from", "uniform", "get_trial_dir",
           "get_trial_id", "get_trial_name", "get_trial_resources"]


def __getattr__(name):
    if name in ("schedulers", "search", "stopper"):
        import importlib

        return importlib.import_module(f"miniray.tune.{name}")
    raise AttributeError(f"module 'miniray.tune' has no attribute {name!r}")
