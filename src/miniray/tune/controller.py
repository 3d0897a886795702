"""The experiment's main loop, on the driver: trials onto actors, results into decisions.

    search ──suggest──► Trial ──► scheduler.choose_trial_to_run ──► free slot? ──► actor.start
      ▲                                                                              │
      └── on_trial_result/complete ◄── scheduler decision ◄── results ◄── actor.poll ┘
                                         CONTINUE: poll again (limit = next sync point)
                                         STOP / PAUSE: actor.stop, the slot goes to the next trial

State owned (driver thread only): ``trials`` (every Trial made, in order), ``polls`` (the one
outstanding poll ObjectRef of each RUNNING trial -> that trial), ``actor_of`` (trial id -> its
actor), ``idle`` (actors free for reuse, by resources), ``used`` (resources held by running
trials).  Slots: a trial starts when its resources fit in ``cluster_resources()`` minus ``used``
and fewer than ``max_concurrent_trials`` run.  Actors are reused across trials (one process per
slot, not per trial) unless ``reuse_actors=False``.  The state is saved (throttled) on every status
change, so ``Tuner.restore`` can resume a killed driver.
"""
from __future__ import annotations

import os
import shutil
import time
import uuid
import warnings

import miniray
from miniray.tune import registry, storage
from miniray.tune.runner import TrialRunner
from miniray.tune.schedulers.trial_scheduler import TrialScheduler
from miniray.tune.search.basic_variant import get_path, walk
from miniray.tune.trainable import resources_for, total_of
from miniray.tune.trial import ERROR, PAUSED, PENDING, RUNNING, TERMINATED, Trial
from miniray.tune.utils import flat

CONTINUE, STOP, PAUSE = TrialScheduler.CONTINUE, TrialScheduler.STOP, TrialScheduler.PAUSE


class TuneError(RuntimeError):
    """The experiment could not go on (a bad setup, or fail_fast after a failure)."""


class TuneController:
    def __init__(self, trainable, trainable_name: str, param_space: dict, search, scheduler,
                 stopper, stop_dict, experiment_path: str, experiment_name: str, metric, mode,
                 num_samples: int, max_concurrent: int | None, time_budget_s, reuse_actors: bool,
                 checkpoint_config, failure_config, callbacks, reporter, state: dict | None = None):
        self.trainable, self.trainable_name = trainable, trainable_name
        self.param_space, self.search, self.scheduler = param_space, search, scheduler
        self.stopper, self.stop_dict = stopper, stop_dict
        self.experiment_path, self.experiment_name = experiment_path, experiment_name
        self.metric, self.mode, self.num_samples = metric, mode, num_samples
        self.max_concurrent = max_concurrent or 0
        self.time_budget_s, self.reuse_actors = time_budget_s, reuse_actors
        self.checkpoint_config, self.failure_config = checkpoint_config, failure_config
        self.callbacks, self.reporter = list(callbacks or []), reporter
        self.trials: list[Trial] = []
        self.experiment_id = uuid.uuid4().hex[:5]
        self.stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
        self.elapsed_before = 0.0
        if state:
            self.trials, self.experiment_id = state["trials"], state["experiment_id"]
            self.stamp, self.elapsed_before = state["stamp"], state.get("elapsed", 0.0)
        self.polls: dict = {}
        self.actor_of: dict = {}
        self.idle: list[tuple[tuple, object]] = []
        self.used: dict[str, float] = {}
        self.total = {k: v for k, v in miniray.cluster_resources().items()}
        self.search_done = False
        self.stop_all = False
        self.metric_checked = False
        self.iteration = 0
        self.started = time.time()
        self.last_save = 0.0
        self.dirty = True
        self.raise_error = None
        self.run_counter = 0
        self.unpicklable_warned = False
        self._runner_cls = miniray.remote(TrialRunner)

    # ------------------------------------------------------------- what schedulers call
    def get_trials(self) -> list[Trial]:
        return self.trials

    def search_finished(self) -> bool:
        return self.search_done

    def has_resources_for(self, trial: Trial) -> bool:
        if self.max_concurrent and len(self.polls) >= self.max_concurrent:
            return False
        return all(self.used.get(k, 0) + v <= self.total.get(k, 0) + 1e-9
                   for k, v in trial.resources.items() if v)

    def latest_checkpoint(self, trial: Trial) -> str | None:
        return trial.checkpoint_path(trial.latest_checkpoint)

    def stop_trial(self, trial: Trial) -> None:
        """End a trial at the scheduler's word, running or not (HyperBand's losers)."""
        if trial.status == RUNNING:
            self._release(trial, stop=True)
        if not trial.is_finished():
            trial.status, trial.stopped_early = TERMINATED, True
            self._completed(trial)

    def exploit(self, trial: Trial, donor: Trial, new_config: dict, checkpoint: str | None):
        """PBT: ``trial`` resumes from a copy of ``donor``'s checkpoint with ``new_config``."""
        entry = donor.latest_checkpoint
        trial.restore = None
        if checkpoint and entry and os.path.isdir(checkpoint):
            name = f"checkpoint_{trial.checkpoint_index:06d}"
            trial.checkpoint_index += 1
            shutil.copytree(checkpoint, os.path.join(trial.local_path, name), dirs_exist_ok=True)
            copied = {**entry, "name": name}
            trial.checkpoints.append(copied)
            trial.restore = copied
        trial.exploits.append({"iteration": trial.last_result.get("training_iteration", 0),
                               "donor": donor.trial_id})
        trial.config = new_config
        self.dirty = True

    # ------------------------------------------------------------- main loop
    def run(self) -> list[Trial]:
        self._check_setup()
        try:
            # Main loop
            while not self.stop_all:
                if self._out_of_time():
                    break
                self._fill_slots()
                if not self.polls:
                    break           # nothing running and nothing could start
                self._handle_ready()
                self._save()
                self.reporter.update(self)
        except BaseException:
            self._shutdown_actors()
            self._save(force=True)
            self.reporter.close(self)
            raise
        self._shutdown_actors()
        self._save(force=True)
        self.reporter.close(self)
        for callback in self.callbacks:
            callback.on_experiment_end(trials=self.trials)
        if self.raise_error is not None:
            raise self.raise_error
        return self.trials

    def _check_setup(self) -> None:
        self.scheduler.check_ready()
        for trial in self.trials:
            self._check_fits(trial.resources)
        os.makedirs(self.experiment_path, exist_ok=True)

    def _check_fits(self, resources: dict, bundles: list | None = None) -> None:
        for key, value in resources.items():
            if value and value > self.total.get(key, 0) + 1e-9:
                how = "lower it in tune.with_resources(...)"
                if bundles and len(bundles) > 1:
                    how = (f"its bundles are {bundles} (an RLlib algorithm asks for "
                           "num_cpus_for_main_process plus num_cpus_per_env_runner for each of its "
                           "num_env_runners: lower those in the config)")
                raise TuneError(f"a trial asks for {key}={value:g} but the cluster has "
                                f"{self.total.get(key, 0):g}: {how}, or start miniray with more "
                                "(miniray.init(num_cpus=...))")

    def _out_of_time(self) -> bool:
        if self.time_budget_s is None:
            return False
        if time.time() - self.started + self.elapsed_before < self.time_budget_s:
            return False
        for trial in [t for t in self.trials if t.status == RUNNING]:
            self._release(trial, stop=True)
            trial.status = TERMINATED
            self._completed(trial)
        return True

    def _fill_slots(self) -> None:
        while not self.stop_all:
            if self.max_concurrent and len(self.polls) >= self.max_concurrent:
                return
            trial = self.scheduler.choose_trial_to_run(self)
            if trial is not None:
                self._start(trial)
                continue
            if any(t.status == PENDING for t in self.trials) or not self._new_trial():
                return

    def _new_trial(self) -> bool:
        if self.search_done:
            return False
        trial_id = f"{self.experiment_id}_{len(self.trials):05d}"
        config = self.search.suggest(trial_id)
        if config == "FINISHED" or config is None:
            self.search_done = config == "FINISHED" or self.search.is_finished()
            return False
        evaluated = {}
        for path, _ in walk(self.param_space):
            try:
                evaluated["/".join(map(str, path))] = get_path(config, path)
            except (KeyError, IndexError, TypeError):
                pass
        bundles = resources_for(self.trainable, config)
        self._check_fits(total_of(bundles), bundles)
        trial = Trial(trial_id, config, len(self.trials), self.trainable_name,
                      self.experiment_path, evaluated, total_of(bundles), bundles)
        storage.write_params(trial)
        self.trials.append(trial)
        self.scheduler.on_trial_add(self, trial)
        self.dirty = True
        return True

    def _actor_for(self, resources: dict):
        key = tuple(sorted(resources.items()))
        for i, (k, actor) in enumerate(self.idle):
            if k == key:
                del self.idle[i]
                return actor
        others = {k: v for k, v in resources.items() if k not in ("CPU", "GPU")}
        return self._runner_cls.options(
            max_concurrency=4, num_cpus=resources.get("CPU", 0), num_gpus=resources.get("GPU", 0),
            resources=others or None).remote(self.trainable, registry.snapshot())

    def _limit(self, trial: Trial, iteration: int):
        limit = self.scheduler.next_sync(trial, iteration)
        if self.stopper is not None:
            limit = iteration + 1
        return "inf" if limit is None else limit

    def _start(self, trial: Trial) -> None:
        restore = trial.restore or trial.latest_checkpoint
        trial.restore = None
        start_iteration = restore["iteration"] if restore else 0
        if restore is None or trial.status == PENDING and trial.num_failures:
            trial.results = [r for r in trial.results
                             if r.get("training_iteration", 0) <= start_iteration]
        limit = self._limit(trial, start_iteration)
        class_trainable = isinstance(self.trainable, type)
        spec = {"trial_id": trial.trial_id, "trial_name": str(trial),
                "trial_dir": trial.local_path, "experiment_name": self.experiment_name,
                "config": trial.config, "resources": trial.resources,
                "restore_path": trial.checkpoint_path(restore), "start_iteration": start_iteration,
                "start_time_total": restore.get("time_total_s", 0.0) if restore else 0.0,
                "limit": None if limit == "inf" else limit, "stop": self.stop_dict,
                "checkpoint_index": trial.checkpoint_index,
                "checkpoint_frequency": self.checkpoint_config.checkpoint_frequency,
                "checkpoint_at_end": bool(self.checkpoint_config.checkpoint_at_end),
                "checkpoint_at_sync": class_trainable and self.scheduler.supports_pause}
        actor = self._actor_for(_head(trial))
        self.run_counter += 1
        actor.start.remote(spec, self.run_counter)
        self.polls[actor.poll.remote(self.run_counter, None)] = trial
        self.actor_of[trial.trial_id] = (actor, self.run_counter)
        for k, v in trial.resources.items():
            self.used[k] = self.used.get(k, 0) + v
        trial.status, trial.start_time = RUNNING, time.time()
        self.dirty = True
        for callback in self.callbacks:
            callback.on_trial_start(iteration=self.iteration, trials=self.trials, trial=trial)

    def _release(self, trial: Trial, stop: bool, broken: bool = False) -> None:
        """Take ``trial`` off its actor; the actor goes back to the pool (or is killed).  An actor
        still inside a poll for this trial is killed: its next calls would wait behind it."""
        actor, run_id = self.actor_of.pop(trial.trial_id, (None, None))
        for ref in [r for r, t in self.polls.items() if t is trial]:
            del self.polls[ref]
            broken = True
        for k, v in trial.resources.items():
            self.used[k] = self.used.get(k, 0) - v
        if actor is None:
            return
        if broken or not self.reuse_actors:
            miniray.kill(actor)
            return
        if stop:
            actor.stop.remote(run_id)
        self.idle.append((tuple(sorted(_head(trial).items())), actor))

    def _shutdown_actors(self) -> None:
        for trial in [t for t in self.trials if t.status == RUNNING]:
            actor, _ = self.actor_of.pop(trial.trial_id, (None, None))
            if actor is not None:
                miniray.kill(actor)
            if self.stop_all:
                trial.status = TERMINATED
        self.polls.clear()
        for _, actor in self.idle:
            miniray.kill(actor)
        self.idle.clear()
        self.used.clear()

    # ------------------------------------------------------------- results
    def _handle_ready(self) -> None:
        refs = list(self.polls)
        ready, _ = miniray.wait(refs, num_returns=1, timeout=1.0)
        if not ready:
            return
        more, _ = miniray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in dict.fromkeys(ready + more):
            trial = self.polls.get(ref)
            if trial is None:
                continue
            try:
                reply = miniray.get(ref)
            except Exception as exc:       # the actor died, or the runner broke
                self._failed(trial, {"type": type(exc).__name__, "message": str(exc),
                                     "traceback": str(exc), "exception": exc}, broken=True)
                continue
            del self.polls[ref]
            self._on_reply(trial, reply)

    def _on_reply(self, trial: Trial, reply: dict) -> None:
        decision = CONTINUE
        results = reply["results"]
        for i, result in enumerate(results):
            decision = self._on_result(trial, result)
            if decision != CONTINUE or self.stop_all:
                results = results[:i + 1]
                break
        storage.append_results(trial, results)
        trial.checkpoint_index = max(trial.checkpoint_index, reply["checkpoint_index"])
        if reply.get("checkpoint"):
            self._add_checkpoint(trial, reply["checkpoint"], trial.last_result)
        state = reply["state"]
        if decision == STOP or (self.stop_all and state != "error"):
            self._release(trial, stop=state != "done")
            trial.status = TERMINATED
            trial.stopped_early = (decision == STOP and state != "done"
                                   and not self.scheduler.is_budget_stop(trial.last_result))
            self._completed(trial)
        elif decision == PAUSE:
            self._release(trial, stop=True)
            trial.status = PAUSED
            self.dirty = True
        elif state == "done":
            self._release(trial, stop=False)
            if not trial.results and (self.metric or self.scheduler.needs_metric):
                self._failed(trial, _never_reported(self.trainable_name), released=True)
                return
            trial.status = TERMINATED
            self._completed(trial)
        elif state == "error":
            self._failed(trial, reply["error"])
        else:
            actor, run_id = self.actor_of[trial.trial_id]
            iteration = trial.last_result.get("training_iteration", 0)
            self.polls[actor.poll.remote(run_id, self._limit(trial, iteration))] = trial

    def _on_result(self, trial: Trial, result: dict) -> str:
        self.iteration += 1
        flat_result = flat(result)     # schedulers, searchers and the metric read "a/b" keys
        if not self.metric_checked and self.metric:
            self.metric_checked = True
            if self.metric not in flat_result:
                self.stop_all = True
                self.raise_error = TuneError(
                    f"metric={self.metric!r} is not in the results trial {trial} reported: "
                    f"{sorted(k for k in flat_result if k not in _AUTO)}. Report it with "
                    f"tune.report({{{self.metric!r}: value}}), or set TuneConfig(metric=...) to "
                    "one of those.")
                return STOP
        trial.results.append(result)
        trial.last_result = result
        if "checkpoint_dir_name" in result:
            self._add_checkpoint(trial, result["checkpoint_dir_name"], result)
        self.search.on_trial_result(trial.trial_id, flat_result)
        for callback in self.callbacks:
            callback.on_trial_result(iteration=self.iteration, trials=self.trials, trial=trial,
                                     result=result)
        stopped = False
        if self.stopper is not None:
            stopped = bool(self.stopper(trial.trial_id, result))
            self.stop_all = self.stop_all or self.stopper.stop_all()
        decision = self.scheduler.on_trial_result(self, trial, flat_result)   # it sees every result
        if stopped or decision == STOP:
            return STOP
        return PAUSE if decision == PAUSE else CONTINUE

    def _add_checkpoint(self, trial: Trial, name: str, result: dict) -> None:
        if any(c["name"] == name for c in trial.checkpoints):
            return
        trial.checkpoints.append({"name": name, "iteration": result.get("training_iteration", 0),
                                  "time_total_s": result.get("time_total_s", 0.0),
                                  "metrics": dict(result)})
        keep = self.checkpoint_config.num_to_keep
        if keep and len(trial.checkpoints) > keep:
            attr = self.checkpoint_config.checkpoint_score_attribute
            older = trial.checkpoints[:-1]
            if attr:
                sign = 1 if self.checkpoint_config.checkpoint_score_order == "max" else -1
                older.sort(key=lambda c: sign * flat(c["metrics"]).get(attr, float("-inf")))
            drop = older[:len(trial.checkpoints) - keep]
            for entry in drop:
                trial.checkpoints.remove(entry)
                shutil.rmtree(trial.checkpoint_path(entry), ignore_errors=True)
        self.dirty = True

    def _completed(self, trial: Trial) -> None:
        last = flat(trial.last_result) or None
        self.scheduler.on_trial_complete(self, trial, last)
        self.search.on_trial_complete(trial.trial_id, last, False)
        for callback in self.callbacks:
            callback.on_trial_complete(iteration=self.iteration, trials=self.trials, trial=trial)
        self.reporter.trial_done(self, trial)
        self.dirty = True

    def _failed(self, trial: Trial, error: dict, broken: bool = False,
                released: bool = False) -> None:
        if not released:
            self._release(trial, stop=False, broken=broken)
        trial.num_failures += 1
        trial.error = error
        storage.write_error(trial, error)
        for callback in self.callbacks:
            callback.on_trial_error(iteration=self.iteration, trials=self.trials, trial=trial)
        limit = self.failure_config.max_failures
        fail_fast = self.failure_config.fail_fast
        if not fail_fast and (limit == -1 or trial.num_failures <= limit):
            trial.status = PENDING
            trial.restore = trial.latest_checkpoint
        else:
            trial.status = ERROR
            self.scheduler.on_trial_error(self, trial)
            self.search.on_trial_complete(trial.trial_id, flat(trial.last_result) or None, True)
            self.reporter.trial_done(self, trial)
        if fail_fast:
            self.stop_all = True
            if fail_fast == "raise":
                exc = error.get("exception")
                self.raise_error = exc if isinstance(exc, BaseException) else TuneError(
                    error.get("traceback") or error.get("message"))
        self.dirty = True

    # ------------------------------------------------------------- persistence
    def _save(self, force: bool = False) -> None:
        now = time.time()
        if not force and (not self.dirty or now - self.last_save < 0.5):
            return
        state = {"trials": self.trials, "experiment_id": self.experiment_id, "stamp": self.stamp,
                 "search": self.search, "scheduler": self.scheduler,
                 "search_done": self.search_done,
                 "elapsed": self.elapsed_before + now - self.started}
        try:
            storage.save_state(self.experiment_path, self.stamp, self.trials, state)
        except Exception as exc:        # a searcher or scheduler that does not pickle
            if not self.unpicklable_warned:
                self.unpicklable_warned = True
                warnings.warn(f"Tune could not save its searcher/scheduler for Tuner.restore "
                              f"({type(exc).__name__}: {exc}); a restored run will finish the "
                              "saved trials but make no new ones", RuntimeWarning, stacklevel=2)
            state.update(search=None, scheduler=None, search_done=True)
            storage.save_state(self.experiment_path, self.stamp, self.trials, state)
        self.last_save, self.dirty = now, False


_AUTO = {"training_iteration", "time_this_iter_s", "time_total_s", "time_since_restore",
         "iterations_since_restore", "timestamp", "trial_id", "pid", "hostname", "done",
         "checkpoint_dir_name"}


def _head(trial: Trial) -> dict:
    """What the trial's own actor holds: the first bundle (the rest of ``trial.resources`` stays
    free for the actors the trial starts, so they do not wait on their own trial)."""
    bundles = getattr(trial, "bundles", None)       # a trial saved before bundles existed: all
    return bundles[0] if bundles else trial.resources


def _never_reported(name: str) -> dict:
    message = (f"The trainable {name!r} finished without calling tune.report(): Tune has no "
               "metrics for it. Call tune.report({'loss': ...}) in its loop (or return a dict of "
               "final metrics).")
    return {"type": "TuneError", "message": message, "traceback": message,
            "exception": TuneError(message)}
