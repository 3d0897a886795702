"""Exceptions, named after ``ray.exceptions``.

Two families, kept apart on purpose (STYLE 6):

* "your task failed": :class:`RayTaskError` carries the user's exception (``cause``) and the remote
  traceback trimmed to the user's frames.  At ``get`` it is raised as an instance of a class that
  subclasses both ``RayTaskError`` and the user's own exception type, so ``except ZeroDivisionError``
  works exactly as it would locally.
* "the runtime could not do it": worker crashes, dead actors, lost objects, a full store, timeouts,
  cancellation.  These say what happened and what to do.
"""
from __future__ import annotations


class RayError(Exception):
    """Base of every miniray error."""


class RayTaskError(RayError):
    """A task or actor method raised; ``cause`` is the original exception.

    ``str(err)`` shows where it ran and the remote traceback, with the user's file and line.
    """

    def __init__(self, function_name: str = "", traceback_str: str = "", cause: BaseException | None = None,
                 pid: int | None = None, ip: str = "127.0.0.1", frames=None, exc_only: str = ""):
        super().__init__(function_name, traceback_str)
        self.frames, self.exc_only = frames, exc_only
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.pid = pid
        self.ip = ip

    def __str__(self) -> str:
        where = f"{self.function_name}() (pid={self.pid}, ip={self.ip})"
        return f"{type(self.cause).__name__ if self.cause else 'Error'} in {where}\n{self.traceback_str.rstrip()}"

    def as_instanceof_cause(self) -> "RayTaskError":
        """This error as an instance of ``RayTaskError(UserType)``, a subclass of both."""
        cause = self.cause
        if cause is None or isinstance(cause, RayTaskError):
            return cause if isinstance(cause, RayTaskError) else self
        cls = _dual_class(type(cause))
        if cls is None:
            return self
        try:
            err = cls.__new__(cls)
        except TypeError:   # a class whose __new__ insists on its own arguments: raise the
            cause.add_note(str(self))   # user's own exception, with the remote traceback as a note
            return cause
        try:
            err.__dict__.update(cause.__dict__)
        except AttributeError:
            pass
        err.args = cause.args
        err.function_name, err.traceback_str, err.cause = self.function_name, self.traceback_str, cause
        err.pid, err.ip, err.frames, err.exc_only = self.pid, self.ip, self.frames, self.exc_only
        return err

    def __reduce__(self):
        return (_rebuild_task_error, (self.function_name, self.traceback_str, self.cause, self.pid, self.ip,
                                      getattr(self, "frames", None), getattr(self, "exc_only", "")))


def format_remote_traceback(frames, exc_only: str) -> str:
    """A traceback from (file, line, function, source) frames; missing source lines are looked up
    here, so a driver in a notebook shows the lines of its own cells."""
    import linecache
    out = ["Traceback (most recent call last):\n"]
    for filename, lineno, name, line in frames:
        line = line or linecache.getline(filename, lineno).strip()
        out.append(f'  File "{filename}", line {lineno}, in {name}\n')
        if line:
            out.append(f"    {line}\n")
    return "".join(out) + exc_only


def _rebuild_task_error(function_name, traceback_str, cause, pid, ip, frames=None, exc_only=""):
    if frames:
        traceback_str = format_remote_traceback(frames, exc_only)
    return RayTaskError(function_name, traceback_str, cause, pid, ip, frames, exc_only).as_instanceof_cause()


_DUAL: dict[type, type] = {}


def _dual_class(user_cls: type) -> type | None:
    if user_cls in _DUAL:
        return _DUAL[user_cls]
    body = {"__str__": RayTaskError.__str__, "__init__": RayTaskError.__init__,
            "__repr__": lambda self: f"{type(self).__name__}({self.cause!r})",
            "__reduce__": RayTaskError.__reduce__, "__module__": __name__,
            "as_instanceof_cause": RayTaskError.as_instanceof_cause}
    cls = None
    for bases in ((RayTaskError, user_cls), (user_cls, RayTaskError)):
        try:
            candidate = type(f"RayTaskError({user_cls.__name__})", bases, body)
        except TypeError:   # a final or layout-incompatible exception class
            continue
        cls = cls or candidate
        try:                # a built-in with its own __new__ (MemoryError) must come first
            candidate.__new__(candidate)
        except TypeError:
            continue
        cls = candidate
        break
    _DUAL[user_cls] = cls
    return cls


TaskError = RayTaskError


class GetTimeoutError(RayError, TimeoutError):
    """``get`` or ``wait`` ran out of time; the objects may still arrive later."""


class TaskCancelledError(RayError):
    """The task was cancelled with ``miniray.cancel`` before it produced a value."""

    def __init__(self, task_id: str = ""):
        super().__init__(task_id)
        self.task_id = task_id

    def __str__(self):
        return f"Task {self.task_id} was cancelled (miniray.cancel)."


class WorkerCrashedError(RayError):
    """The worker process running the task died, and the task's retries are used up."""


class RayActorError(RayError):
    """The actor is dead or died while running this call."""


class ActorDiedError(RayActorError):
    """The actor is dead for good: killed, crashed past ``max_restarts``, or its constructor failed."""


class ActorUnavailableError(RayActorError):
    """The actor is restarting; the call may be retried."""


class ObjectLostError(RayError):
    """An object's only copy was lost and it cannot be recomputed."""


class ObjectFreedError(ObjectLostError):
    """The object was freed while a reference to it still existed."""


class ObjectStoreFullError(RayError):
    """The object does not fit in the store even after spilling everything that can spill."""


class OutOfMemoryError(RayError):
    pass


class RaySystemError(RayError):
    """The runtime itself broke; pending work has failed."""


NODE_STOPPED = "The miniray node thread has stopped; call miniray.shutdown() and miniray.init() again."


class ObjectRefStreamEndOfStream(RayError, StopIteration):
    pass


class ActorExit(SystemExit):
    """Raised by ``miniray.actor.exit_actor()``: a SystemExit, so ``except Exception`` in the
    user's method does not swallow it; the worker ends the actor on purpose."""


AsyncioActorExit = ActorExit     # Ray's name for the one raised in async actors


__all__ = [n for n in list(globals()) if n.endswith("Error") or n == "TaskError"]
