"""``Tuner``: check the setup, build the search and the controller, run, return a ResultGrid.

    Tuner(trainable, param_space=, tune_config=, run_config=).fit()
        ──► checks (errors before any trial starts) ──► TuneController.run() ──► ResultGrid
    Tuner.restore(path, trainable) ──► the saved trials, search and scheduler ──► .fit() goes on
"""
from __future__ import annotations

import os
import time

import miniray
from miniray.tune import registry, storage
from miniray.tune.controller import TuneController
from miniray.tune.progress import make_reporter
from miniray.tune.result_grid import ResultGrid
from miniray.tune.run_config import RunConfig, default_storage_path
from miniray.tune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler
from miniray.tune.search.basic_variant import BasicVariantGenerator
from miniray.tune.search.searcher import SearchAlgorithm, Searcher, SearcherAdapter
from miniray.tune.stopper import as_stopper
from miniray.tune.trial import ERROR, PENDING, TERMINATED
from miniray.tune.tune_config import TuneConfig


def _resolve_trainable(trainable):
    if isinstance(trainable, str):
        return registry.get_trainable_cls(trainable), trainable
    if trainable is None or not callable(trainable):
        raise TypeError(f"Tuner needs a trainable: a function config -> None that calls "
                        f"tune.report(...), a tune.Trainable class, or a registered name; got "
                        f"{trainable!r}")
    name = getattr(trainable, "__name__", type(trainable).__name__)
    return trainable, name


class Tuner:
    def __init__(self, trainable=None, *, param_space: dict | None = None,
                 tune_config: TuneConfig | None = None, run_config: RunConfig | None = None,
                 _restored: dict | None = None):
        self.trainable, self.trainable_name = _resolve_trainable(trainable)
        if param_space is None:
            param_space = {}
        if not isinstance(param_space, dict):
            raise TypeError(f"param_space must be a dict of names to values or search spaces, "
                            f"e.g. {{'lr': tune.loguniform(1e-4, 1e-1)}}; got "
                            f"{type(param_space).__name__}")
        if tune_config is not None and not isinstance(tune_config, TuneConfig):
            raise TypeError("tune_config must be a tune.TuneConfig(...)")
        if run_config is not None and not isinstance(run_config, RunConfig):
            raise TypeError("run_config must be a tune.RunConfig(...) (or miniray.train.RunConfig)")
        self.param_space = param_space
        self.tune_config = tune_config or TuneConfig()
        self.run_config = run_config or RunConfig()
        self._restored = _restored
        self._results: ResultGrid | None = None
        scheduler = self.tune_config.scheduler
        if scheduler is not None and not isinstance(scheduler, TrialScheduler):
            raise TypeError("TuneConfig(scheduler=...) needs a scheduler from "
                            "miniray.tune.schedulers, e.g. ASHAScheduler()")
        search = self.tune_config.search_alg
        if search is not None and not isinstance(search, SearchAlgorithm):
            raise TypeError("TuneConfig(search_alg=...) needs a search algorithm from "
                            "miniray.tune.search, e.g. BasicVariantGenerator() or OptunaSearch()")

    # ----------------------------------------------------------------- paths
    @property
    def experiment_path(self) -> str:
        if self._restored:
            return self._restored["path"]
        storage_path = os.path.expanduser(self.run_config.storage_path or default_storage_path())
        name = self.run_config.name or f"{self.trainable_name}_{time.strftime('%Y-%m-%d_%H-%M-%S')}"
        self.run_config.name = name
        return os.path.join(os.path.abspath(storage_path), name)

    # ----------------------------------------------------------------- run
    def fit(self) -> ResultGrid:
        tc, rc = self.tune_config, self.run_config
        metric, mode = tc.metric, tc.mode
        scheduler = tc.scheduler or FIFOScheduler()
        scheduler.set_search_properties(metric, mode)
        metric = metric or scheduler.metric
        mode = mode or scheduler.mode
        scheduler.check_ready()
        if metric and not mode:
            raise ValueError(f"TuneConfig(metric={metric!r}) needs mode='min' or mode='max' too")
        search = tc.search_alg or BasicVariantGenerator()
        if isinstance(search, Searcher):
            search = SearcherAdapter(search)
        state = None
        path = self.experiment_path
        if self._restored:
            state = self._restored["state"]
            search = state["search"] or search           # None: it could not be pickled
            scheduler = state["scheduler"] or scheduler
        else:
            search.set_search_properties(metric, mode, self.param_space,
                                         num_samples=tc.num_samples)
            self._save_tuner(path)
        if not miniray.is_initialized():
            miniray.init()
        stop_dict, stopper = as_stopper(rc.stop)
        reuse = True if tc.reuse_actors is None else bool(tc.reuse_actors)
        checkpoint_config = rc.checkpoint_config
        if checkpoint_config.checkpoint_at_end is None:
            checkpoint_config.checkpoint_at_end = isinstance(self.trainable, type) and bool(
                checkpoint_config.checkpoint_frequency)
        verbose = 2 if rc.verbose is None else rc.verbose
        controller = TuneController(
            self.trainable, self.trainable_name, self.param_space, search, scheduler, stopper,
            stop_dict, path, os.path.basename(path), metric, mode, tc.num_samples,
            tc.max_concurrent_trials, tc.time_budget_s, reuse, checkpoint_config,
            rc.failure_config, rc.callbacks, make_reporter(verbose, metric, mode,
                                                           rc.progress_reporter), state)
        if state:
            controller.search_done = state.get("search_done", False)
        trials = controller.run()
        self._results = ResultGrid.from_trials(trials, path, metric, mode, scheduler)
        return self._results

    def get_results(self) -> ResultGrid:
        if self._results is None:
            raise RuntimeError("get_results() before fit(): call tuner.fit() first")
        return self._results

    def _save_tuner(self, path: str) -> None:
        import dataclasses
        import warnings

        state = {"param_space": self.param_space, "tune_config": self.tune_config,
                 "run_config": self.run_config, "trainable_name": self.trainable_name}
        try:
            storage.save_tuner(path, state)
        except Exception as exc:      # keep going; restore then needs what could not be saved
            warnings.warn(f"Tuner settings could not be pickled for Tuner.restore "
                          f"({type(exc).__name__}: {exc}); saving them without the search "
                          "algorithm, scheduler and callbacks", RuntimeWarning, stacklevel=3)
            state["tune_config"] = dataclasses.replace(self.tune_config, search_alg=None,
                                                       scheduler=None)
            state["run_config"] = dataclasses.replace(self.run_config, callbacks=None)
            storage.save_tuner(path, state)

    # ----------------------------------------------------------------- restore
    @classmethod
    def can_restore(cls, path: str | os.PathLike) -> bool:
        path = os.path.expanduser(os.fspath(path))
        return (os.path.exists(os.path.join(path, "tuner.pkl"))
                and storage.latest_state_file(path) is not None)

    @classmethod
    def restore(cls, path: str | os.PathLike, trainable=None, resume_unfinished: bool = True,
                resume_errored: bool = False, restart_errored: bool = False,
                param_space: dict | None = None, **_) -> "Tuner":
        """Go on with the experiment saved at ``path`` (finished trials are not run again)."""
        path = os.path.abspath(os.path.expanduser(os.fspath(path)))
        if not cls.can_restore(path):
            raise ValueError(f"Tuner.restore({path!r}): no experiment to restore there (it needs "
                             "tuner.pkl and experiment_state-*.json, which Tuner.fit() writes)")
        if trainable is None:
            raise TypeError("Tuner.restore(path, trainable=...): pass the trainable again (the "
                            "same function or class the experiment ran)")
        saved = storage.load_tuner(path)
        state = storage.load_state(path)
        for trial in state["trials"]:
            _prepare(trial, resume_unfinished, resume_errored, restart_errored)
        tuner = cls(trainable, param_space=param_space or saved["param_space"],
                    tune_config=saved["tune_config"], run_config=saved["run_config"],
                    _restored={"path": path, "state": state})
        return tuner


def _prepare(trial, resume_unfinished: bool, resume_errored: bool, restart_errored: bool):
    """Decide where a saved trial goes on from, trusting the files over the saved state."""
    if trial.status == TERMINATED:
        return
    if trial.status == ERROR:
        if restart_errored:
            trial.status, trial.checkpoints, trial.results, trial.last_result = PENDING, [], [], {}
            trial.num_failures, trial.error, trial.restore = 0, None, None
            return
        if not resume_errored:
            return
        trial.num_failures, trial.error = 0, None
    if not resume_unfinished and trial.status != ERROR:
        trial.status = TERMINATED
        return
    rows = storage.read_results(trial.local_path)
    checkpoints = {c["name"]: c for c in trial.checkpoints}
    for row in rows:
        name = row.get("checkpoint_dir_name")
        if name and name not in checkpoints:
            checkpoints[name] = {"name": name, "iteration": row.get("training_iteration", 0),
                                 "time_total_s": row.get("time_total_s", 0.0), "metrics": row}
    existing = [c for c in checkpoints.values()
                if os.path.isdir(os.path.join(trial.local_path, c["name"]))]
    existing.sort(key=lambda c: c["name"])
    trial.checkpoints = existing
    if existing:
        trial.checkpoint_index = max(trial.checkpoint_index,
                                     int(existing[-1]["name"].rsplit("_", 1)[-1]) + 1)
    upto = existing[-1]["iteration"] if existing else 0
    trial.results = [r for r in (rows or trial.results) if r.get("training_iteration", 0) <= upto]
    trial.last_result = trial.results[-1] if trial.results else {}
    _truncate_result_file(trial, upto)
    trial.restore = existing[-1] if existing else None
    trial.status = PENDING


def _truncate_result_file(trial, upto: int) -> None:
    """Drop the rows a killed run wrote after the checkpoint the trial now resumes from."""
    import json

    path = os.path.join(trial.local_path, "result.json")
    if not os.path.exists(path):
        return
    keep = []
    with open(path) as f:
        for line in f:
            try:
                if json.loads(line).get("training_iteration", 0) <= upto:
                    keep.append(line)
            except ValueError:
                break
    storage.atomic_write(path, "".join(keep).encode())
    csv_path = os.path.join(trial.local_path, "progress.csv")
    if os.path.exists(csv_path):
        os.remove(csv_path)
    rows = [json.loads(line) for line in keep]
    for row in rows:
        row.pop("config", None)
    if rows:
        storage.append_csv(trial.local_path, rows)
