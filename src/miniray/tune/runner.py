"""The trial actor: runs one trial at a time in a thread and streams its reports to the driver.

    driver (controller.py)                      TrialRunner actor (one per slot, reused)
    start(spec, run) ─────────────────────────► new TrialSession, trial thread runs the trainable
    poll(run, limit) ─────────────────────────► waits: trial blocked at a sync point, finished, or
                ◄── {"results": [...], "state"}  the oldest buffered report is batch_s old
    stop(run)   ──────────────────────────────► the trial's next report raises _StopTrial; join

Sync points.  ``limit`` is the last training_iteration the trial may reach before it must wait for
the driver: a report with ``training_iteration >= limit`` blocks the trial thread until the next
``poll`` raises the limit or ``stop`` ends the trial.  FIFO with a dict ``stop`` never blocks (the
dict is checked here, per report); ASHA blocks only at its rungs; other schedulers at every report.
So a 1 ms step costs a buffer append, not a round trip.

Threads: the actor is threaded (max_concurrency), so start/poll/stop may overlap and each names
its run; a trial's own ``miniray.get`` then never waits behind a blocked poll.  One trial thread
runs the user's code.  The
session (buffer, limit, flags) is shared between them under one Condition.  Class trainables
(``Trainable`` or any class with ``train()``/``step()``, ``save_checkpoint``, ``load_checkpoint``)
run as a loop of ``train()`` calls reporting each result, saving checkpoints into the trial dir.
"""
from __future__ import annotations

import os
import pickle
import shutil
import socket
import threading
import time
import traceback

from miniray.tune import session as session_mod
from miniray.tune.checkpoint import Checkpoint
from miniray.tune.utils import flat

INF = float("inf")
_DICT_CHECKPOINT = "_dict_checkpoint.pkl"


class _StopTrial(BaseException):
    """Raised inside the trial thread by ``report`` to end a trial the driver stopped."""


def dict_says_stop(stop: dict, result: dict) -> bool:
    """Ray's dict stopping rule: stop once any ``result[key] >= value``; nested results are read
    by their flattened keys (``"env_runners/episode_return_mean"``)."""
    result = flat(result)
    for key, value in stop.items():
        if key not in result:
            raise ValueError(f"RunConfig(stop={{{key!r}: {value!r}}}): the trial reported no "
                             f"metric {key!r}. It reported: {sorted(result)}. Report it with "
                             f"tune.report({{{key!r}: ...}}) or stop on one of those.")
        if result[key] >= value:
            return True
    return False


class TrialSession:
    """One trial's side of the conversation (see the module docstring)."""

    def __init__(self, spec: dict, batch_s: float, host: tuple):
        self.trial_id = spec["trial_id"]
        self.trial_name = spec["trial_name"]
        self.trial_dir = spec["trial_dir"]
        self.experiment_name = spec.get("experiment_name", "")
        self.resources = spec.get("resources", {})
        self.config = spec["config"]
        path = spec.get("restore_path")
        self.restore_checkpoint = Checkpoint(path) if path else None
        self.iteration = spec.get("start_iteration", 0)
        self.time_total = spec.get("start_time_total", 0.0)
        self.limit = INF if spec.get("limit") is None else spec["limit"]
        self.stop_dict = spec.get("stop") or None
        self.checkpoint_index = spec.get("checkpoint_index", 0)
        self.batch_s = batch_s
        self.host = host
        self.cond = threading.Condition()
        self.buffer: list[dict] = []
        self.first_at = None
        self.blocked = False
        self.finished = False
        self.stop_requested = False
        self.state = "running"
        self.error = None
        self.final_checkpoint = None
        self.reports = 0
        self.started = self.last = time.time()

    def will_block(self) -> bool:
        return self.iteration + 1 >= self.limit

    def persist(self, checkpoint: Checkpoint) -> str:
        """Copy a reported checkpoint into the trial dir (unless it is already there)."""
        if not isinstance(checkpoint, Checkpoint):
            raise TypeError("tune.report(..., checkpoint=) needs a tune.Checkpoint, e.g. "
                            f"Checkpoint.from_directory(path), got {type(checkpoint).__name__}")
        name = f"checkpoint_{self.checkpoint_index:06d}"
        self.checkpoint_index += 1
        target = os.path.join(self.trial_dir, name)
        if os.path.abspath(checkpoint.path) != os.path.abspath(target):
            if os.path.exists(target):
                shutil.rmtree(target)
            shutil.copytree(checkpoint.path, target)
        return name

    def report(self, metrics: dict, checkpoint=None) -> None:
        if self.stop_requested:
            raise _StopTrial
        now = time.time()
        self.iteration += 1
        self.reports += 1
        result = dict(metrics)
        result.update(training_iteration=self.iteration, time_this_iter_s=now - self.last,
                      time_total_s=self.time_total + (now - self.started),
                      time_since_restore=now - self.started, iterations_since_restore=self.reports,
                      timestamp=int(now), trial_id=self.trial_id, pid=self.host[0],
                      hostname=self.host[1], done=False)
        self.last = now
        if checkpoint is not None:
            result["checkpoint_dir_name"] = self.persist(checkpoint)
        stop = self.stop_dict is not None and dict_says_stop(self.stop_dict, result)
        with self.cond:
            self.buffer.append(result)
            if self.first_at is None:
                self.first_at = now
            if stop:
                raise _StopTrial
            if self.iteration >= self.limit:
                self.blocked = True
                self.cond.notify_all()
                while self.blocked and not self.stop_requested:
                    self.cond.wait()
            elif len(self.buffer) == 1:
                self.cond.notify_all()
        if self.stop_requested:
            raise _StopTrial

    def wait(self, limit) -> dict:
        """The driver's poll: raise the limit, then wait for something worth sending."""
        with self.cond:
            if limit is not None:
                self.limit = INF if limit == "inf" else limit
            if self.blocked and self.iteration < self.limit:
                self.blocked = False
                self.cond.notify_all()
            while not (self.finished or self.blocked):
                if self.buffer:
                    left = self.batch_s - (time.time() - self.first_at)
                    if left <= 0:
                        break
                    self.cond.wait(left)
                else:
                    self.cond.wait(1.0)
            results, self.buffer, self.first_at = self.buffer, [], None
            state = self.state if self.finished else ("paused" if self.blocked else "running")
            return {"results": results, "state": state, "error": self.error,
                    "checkpoint": self.final_checkpoint, "checkpoint_index": self.checkpoint_index}


def _error_info(exc: BaseException) -> dict:
    try:
        pickle.loads(pickle.dumps(exc))
        kept = exc
    except Exception:
        kept = None
    return {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc(),
            "exception": kept}


def save_class_checkpoint(obj, directory: str) -> None:
    """``obj.save_checkpoint(dir)``; a returned dict is pickled into the dir (Ray's two forms)."""
    os.makedirs(directory, exist_ok=True)
    saved = obj.save_checkpoint(directory)
    if isinstance(saved, dict):
        with open(os.path.join(directory, _DICT_CHECKPOINT), "wb") as f:
            pickle.dump(saved, f)


def load_class_checkpoint(obj, directory: str) -> None:
    path = os.path.join(directory, _DICT_CHECKPOINT)
    if os.path.exists(path):
        with open(path, "rb") as f:
            obj.load_checkpoint(pickle.load(f))
    else:
        obj.load_checkpoint(directory)


def _prefetch(trainable) -> None:
    """Fetch ``with_parameters`` objects once per actor, before the trial thread needs them."""
    refs = getattr(trainable, "_tune_param_refs", None)
    if refs:
        from miniray.tune.trainable import _fetch_params

        _fetch_params(refs)


class TrialRunner:
    """The actor class (wrapped with ``miniray.remote(max_concurrency=...)`` by the controller).

    Its methods may run at once on the actor's threads (so a trial's own ``miniray.get`` never
    waits behind a poll), so each names the run it means: the driver numbers every start."""

    def __init__(self, trainable, registry_snapshot: dict | None = None, batch_s: float = 0.05):
        if registry_snapshot:
            from miniray.tune import registry

            registry.install(registry_snapshot)
        self.trainable = trainable
        self.batch_s = batch_s
        self.host = (os.getpid(), socket.gethostname())
        self.session: TrialSession | None = None
        self.thread: threading.Thread | None = None
        self.run_id = None
        self.switching = threading.Lock()        # one start or stop at a time
        self.changed = threading.Condition()     # a new run began

    def ping(self) -> int:
        return self.host[0]

    def start(self, spec: dict, run_id: int) -> str:
        with self.switching:
            if not self._stop_current():
                raise RuntimeError("the previous trial in this actor did not stop within 10 s")
            _prefetch(self.trainable)
            session = TrialSession(spec, self.batch_s, self.host)
            thread = threading.Thread(target=self._run, args=(session, spec), daemon=True,
                                      name=f"trial-{session.trial_id}")
            with self.changed:
                self.session, self.thread, self.run_id = session, thread, run_id
                self.changed.notify_all()
            thread.start()
            return session.trial_id

    def poll(self, run_id: int, limit=None) -> dict:
        deadline = time.time() + 60
        with self.changed:
            while self.run_id != run_id:
                if time.time() > deadline:
                    raise RuntimeError(f"poll({run_id}): that run never started here")
                self.changed.wait(1.0)
            session = self.session
        return session.wait(limit)

    def stop(self, run_id: int | None = None) -> bool:
        with self.switching:
            if run_id is not None and run_id != self.run_id:
                return True
            return self._stop_current()

    def _stop_current(self, timeout: float = 10.0) -> bool:
        session, thread = self.session, self.thread
        if session is None or thread is None:
            return True
        with session.cond:
            session.stop_requested = True
            session.cond.notify_all()
        thread.join(timeout)
        return not thread.is_alive()

    # ------------------------------------------------------------------ the trial thread
    def _run(self, session: TrialSession, spec: dict) -> None:
        session_mod._set_session(session)
        state, error = "done", None
        try:
            os.makedirs(session.trial_dir, exist_ok=True)
            if isinstance(self.trainable, type):
                self._run_class(session, spec)
            else:
                returned = self.trainable(session.config)
                if isinstance(returned, dict):
                    session.report(returned)
        except _StopTrial:
            pass
        except BaseException as exc:
            state, error = "error", _error_info(exc)
        with session.cond:
            session.state, session.error, session.finished = state, error, True
            session.cond.notify_all()

    def _run_class(self, session: TrialSession, spec: dict) -> None:
        cls = self.trainable
        obj = cls(config=session.config)
        if hasattr(obj, "_set_trial_info"):
            obj._set_trial_info(session)
        try:
            if session.restore_checkpoint is not None:
                load_class_checkpoint(obj, session.restore_checkpoint.path)
            frequency = spec.get("checkpoint_frequency") or 0
            at_sync = spec.get("checkpoint_at_sync", False)
            step = obj.train if hasattr(obj, "train") else obj.step
            while True:
                result = step()
                if not isinstance(result, dict):
                    raise TypeError(f"{cls.__name__}.step() must return a dict of metrics, got "
                                    f"{type(result).__name__}")
                done = bool(result.get("done"))
                next_iteration = session.iteration + 1
                checkpoint = None
                if (frequency and next_iteration % frequency == 0) or (at_sync and
                                                                      session.will_block()):
                    checkpoint = self._save(obj, session)
                try:
                    session.report(result, checkpoint)
                except _StopTrial:
                    if session.stop_requested:
                        raise
                    done = True
                if done:
                    break
            if spec.get("checkpoint_at_end"):
                name = session.persist(self._save(obj, session))
                session.final_checkpoint = name
        finally:
            stop = getattr(obj, "stop", None) or getattr(obj, "cleanup", None)
            if stop is not None:
                stop()

    def _save(self, obj, session: TrialSession) -> Checkpoint:
        directory = os.path.join(session.trial_dir, f"checkpoint_{session.checkpoint_index:06d}")
        save_class_checkpoint(obj, directory)
        return Checkpoint(directory)
