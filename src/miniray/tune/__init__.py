"""``miniray.tune``: Ray Tune's API (2.x names) on miniray's actors.

    from miniray import tune
    tuner = tune.Tuner(train_fn, param_space={"lr": tune.loguniform(1e-4, 1e-1)},
                       tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=16))
    results = tuner.fit(); results.get_best_result().config; results.plot()

Layout: tuner.py (checks, restore) -> controller.py (the main loop) -> runner.py (the trial actor)
-> session.py (report/get_checkpoint inside a trial); search/ makes configs, schedulers/ decides
CONTINUE / PAUSE / STOP; storage.py lays out the experiment dir; progress.py and plot.py show it.
"""
_WHERE = {
    "Tuner": "tuner", "TuneConfig": "tune_config", "RunConfig": "run_config",
    "CheckpointConfig": "run_config", "FailureConfig": "run_config", "Checkpoint": "checkpoint",
    "Trainable": "trainable", "with_parameters": "trainable", "with_resources": "trainable",
    "PlacementGroupFactory": "trainable", "Result": "result_grid", "ResultGrid": "result_grid",
    "Callback": "callback", "Stopper": "stopper", "TuneError": "controller",
    "register_trainable": "registry", "register_env": "registry",
    **{name: "session" for name in ("report", "get_checkpoint", "get_context", "get_trial_dir",
                                     "get_trial_id", "get_trial_name", "get_trial_resources")},
    **{name: "search.sample" for name in ("choice", "grid_search", "lograndint", "loguniform",
                                           "qlograndint", "qloguniform", "qrandint", "qrandn",
                                           "quniform", "randint", "randn", "sample_from",
                                           "uniform")},
}
__all__ = sorted(_WHERE)


def __getattr__(name):
    """Names load on first use, so a trial's actor imports only what it runs."""
    import importlib

    if name in _WHERE:
        value = getattr(importlib.import_module(f"miniray.tune.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    if name in ("schedulers", "search", "stopper", "registry", "utils"):
        return importlib.import_module(f"miniray.tune.{name}")
    raise AttributeError(f"module 'miniray.tune' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
