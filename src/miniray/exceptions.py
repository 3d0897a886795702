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

import sys


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
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    for filename, lineno, name, line in frames:
        line = line or linecache.getline(filename, lineno).strip()
        cell = _cell_name(shell, filename)   # a notebook cell reads as IPython writes it
        out.append(f"  {cell}, line {lineno}, in {name}\n" if cell else
                   f'  File "{filename}", line {lineno}, in {name}\n')
        if line:
            out.append(f"    {line}\n")
    return "".join(out) + exc_only


def _cell_name(shell, filename: str) -> str:
    """``Cell In[9]`` for a file IPython compiled a cell into, else ''."""
    try:
        kind, name = shell.compile.format_code_name(filename)
    except Exception:  # no IPython, an older one, or not a cell
        return ""
    return f"{kind} {name}"


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


class InfeasibleResourcesWarning(RuntimeWarning):
    """A call asks for more resources than any node has; it waits until such a node joins."""


def describe_resources(resources: dict) -> str:
    """``{'CPU': 2.0, 'memory': 17693193011.2}`` as ``2 CPUs and 16.5 GiB of memory``."""
    parts = []
    for name, amount in resources.items():
        if name in ("memory", "object_store_memory"):
            parts.append(f"{amount / 2**30:.1f} GiB of {name.replace('_', ' ')}")
        else:
            plural = "s" if name in ("CPU", "GPU") and amount != 1 else ""
            parts.append(f"{amount:g} {name}{plural}")
    if not parts:
        return "no resources"
    return ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]


def warn_infeasible(name: str, need: dict, total: dict, call_site: str) -> None:
    """Warn, at the user's own line, that ``name`` cannot run on this cluster as it is."""
    import warnings

    name = name.removesuffix(".__init__")   # an actor: its class
    asks = {k: v for k, v in need.items() if v > total.get(k, 0) * (1 + 1e-9)} or need
    has = {k: total.get(k, 0) for k in asks}
    knobs = ", ".join(f"{_OPTION.get(k, 'resources={' + repr(k) + ': ...}')}" for k in asks)
    message = (f"{name} asks for {describe_resources(asks)}, but this cluster has only "
               f"{describe_resources(has)}, so it waits until a node with enough joins. To run it "
               f"here, ask for less: {name}.options({knobs}), or give miniray more when you start "
               "it: miniray.init(num_cpus=..., resources={...}).")
    filename, _, line = (call_site or "?").rpartition(":")
    if not line.isdigit():
        filename, line = call_site or "?", "0"
    warnings.warn_explicit(message, InfeasibleResourcesWarning, filename or "?", int(line),
                           module="miniray")


_OPTION = {"CPU": "num_cpus=...", "GPU": "num_gpus=...", "memory": "memory=..."}

class ActorExit(SystemExit):
    """Raised by ``miniray.actor.exit_actor()``: a SystemExit, so ``except Exception`` in the
    user's method does not swallow it; the worker ends the actor on purpose."""


AsyncioActorExit = ActorExit     # Ray's name for the one raised in async actors


__all__ = [n for n in list(globals()) if n.endswith("Error") or n == "TaskError"]
