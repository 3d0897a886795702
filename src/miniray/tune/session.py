"""What a running trial calls: ``tune.report``, ``tune.get_checkpoint``, ``train.get_context``.

    trial thread ──report(metrics, checkpoint)──► the trial's TrialSession (runner.py) ──► buffer
                                                   └─ blocks only at the scheduler's sync points

The session of the trial running in this thread is found through a thread-local set by the runner;
threads the trainable starts itself fall back to the process's latest session.  Outside a trial these
functions raise an error that says so.
"""
from __future__ import annotations

import threading

_local = threading.local()
_latest = [None]


def _set_session(session) -> None:
    _local.session = session
    _latest[0] = session


def _get_session(what: str, required: bool = True):
    session = getattr(_local, "session", None) or _latest[0]
    if session is None and required:
        raise RuntimeError(f"{what} was called outside a Tune trial: call it inside the function "
                           "you pass to tune.Tuner(...) (the trial runs it in an actor)")
    return session


def report(metrics: dict | None = None, *, checkpoint=None, **kwargs) -> None:
    """Send this step's metrics (a dict) to Tune, with an optional ``Checkpoint``."""
    if metrics is None:
        metrics = kwargs
    elif kwargs:
        raise TypeError("tune.report takes a dict of metrics or keyword metrics, not both")
    if not isinstance(metrics, dict):
        raise TypeError(f"tune.report needs a dict of metrics, e.g. tune.report({{'loss': 0.1}}), "
                        f"got {type(metrics).__name__}")
    _get_session("tune.report()").report(metrics, checkpoint)


def get_checkpoint():
    """The checkpoint this trial should resume from (None when it starts fresh)."""
    session = _get_session("tune.get_checkpoint()")
    return session.restore_checkpoint


class TrainContext:
    """``train.get_context()``: where and what the current trial is."""

    def __init__(self, session):
        self._session = session

    def get_trial_id(self) -> str:
        return self._session.trial_id

    def get_trial_name(self) -> str:
        return self._session.trial_name

    def get_trial_dir(self) -> str:
        return self._session.trial_dir

    def get_experiment_name(self) -> str:
        return self._session.experiment_name

    def get_trial_resources(self) -> dict:
        return dict(self._session.resources)

    def get_world_size(self) -> int:
        return 1

    def get_world_rank(self) -> int:
        return 0

    def get_local_rank(self) -> int:
        return 0

    def get_node_rank(self) -> int:
        return 0

    def get_metadata(self) -> dict:
        return {}


def get_context() -> TrainContext:
    return TrainContext(_get_session("get_context()"))


def get_trial_id() -> str:
    return _get_session("get_trial_id()").trial_id


def get_trial_name() -> str:
    return _get_session("get_trial_name()").trial_name


def get_trial_dir() -> str:
    return _get_session("get_trial_dir()").trial_dir


def get_trial_resources() -> dict:
    return dict(_get_session("get_trial_resources()").resources)
