"""The public functions: they check their arguments, then hand off to the one runtime object.

Local mode (``init()`` with no address) starts a Node thread in this process, an object-store arena in
``/dev/shm`` and one worker process per CPU (boot.py builds it).  Nothing here keeps state of its own:
``refs._current`` is the runtime, reached through ``current_runtime()``, which starts a local one on
first use, as Ray does.
"""
from __future__ import annotations

import atexit
import os

from miniray import exceptions as exc
from miniray import refs as _refs
from miniray import tracebacks
from miniray.refs import ObjectRef
from miniray.runtime import call_site

INLINE_MAX = 100 * 1024


class RuntimeInfo(dict):
    """What ``init()`` returns: a dict of addresses, also usable as a context manager."""

    def __enter__(self):
        return self

    def __exit__(self, *a):
        shutdown()


def current_runtime(auto_init: bool = True):
    """The runtime of this process; the first use with no ``init()`` starts a local one, as Ray does."""
    rt = _refs._current
    if rt is None:
        if not auto_init:
            raise RuntimeError("miniray is not running: call miniray.init() first.")
        init()
        rt = _refs._current
    return rt


# -- start and stop --------------------------------------------------------------------------------
def init(address=None, *, num_cpus=None, num_gpus=None, resources=None, object_store_memory=None,
         ignore_reinit_error=False, namespace=None, runtime_env=None, include_dashboard=None,
         log_to_driver=True, logging_level=None, job_config=None, local_mode=False, storage=None,
         _inline_max=INLINE_MAX, **unsupported):
    """Start a local runtime, or connect to a cluster's head (``address``); returns its addresses.
    ``runtime_env={"env_vars": ...}`` (or ``job_config=JobConfig(runtime_env=...)``) reaches every
    task and actor of this job; a task's own ``runtime_env`` option adds to it.  ``local_mode=True``
    runs every call inline in this process, in order (a debug mode; Ray 2.60 removed it).
    ``storage`` (a directory or ``file://`` URI, as Ray 2.47's) is where libraries keep durable state:
    workflows default to it; it is exported as ``$MINIRAY_STORAGE`` so workers see it too."""
    if unsupported:
        raise TypeError(f"init() got unexpected argument(s) {sorted(unsupported)}.")
    if storage is not None:
        if not isinstance(storage, (str, os.PathLike)):
            raise TypeError(f"init(storage={storage!r}): give a directory such as '/tmp/ray_storage' "
                            "or a 'file://' URI.")
        os.environ["MINIRAY_STORAGE"] = os.fspath(storage)
    tracebacks.install()      # uncaught errors show the user's frames, not the runtime's
    if job_config is not None:
        from miniray.job_config import JobConfig
        if not isinstance(job_config, JobConfig):
            raise TypeError(f"init(job_config=...) takes a miniray.job_config.JobConfig, got "
                            f"{type(job_config).__name__}.")
        namespace = namespace or job_config.ray_namespace
        runtime_env = {**job_config.runtime_env, **(runtime_env or {})}
    from miniray.options import check_options
    check_options({"runtime_env": runtime_env}, {"runtime_env"}, "init()")
    job_env = dict((runtime_env or {}).get("env_vars") or {})
    if _refs._current is not None:
        if ignore_reinit_error:
            return _info(_refs._current)
        raise RuntimeError("miniray.init() was already called in this process. Call miniray.shutdown() "
                           "first, or pass ignore_reinit_error=True to reuse the running runtime.")
    for name, v in (("num_cpus", num_cpus), ("num_gpus", num_gpus)):
        if v is not None and (not isinstance(v, (int, float)) or v < 0):
            raise ValueError(f"init({name}={v!r}): give a number >= 0.")
    if resources is not None and not isinstance(resources, dict):
        raise TypeError("init(resources=...) takes a dict such as {'teacher': 1}.")
    namespace = namespace or "default"
    address = address or os.environ.get("MINIRAY_ADDRESS") or None
    if local_mode:                # debug mode: every call inline in this thread (local_mode.py)
        from miniray.local_mode import LocalModeRuntime
        runtime = LocalModeRuntime(num_cpus=num_cpus, num_gpus=num_gpus, resources=resources,
                                   namespace=namespace, inline_max=_inline_max, job_env=job_env)
    elif address not in (None, "local"):
        from miniray.cluster.client import connect
        runtime = connect(address, namespace=namespace, job_env=job_env)
    else:
        from miniray import boot
        runtime = boot.local_driver(num_cpus=num_cpus, num_gpus=num_gpus, resources=resources,
                                    object_store_memory=object_store_memory, inline_max=_inline_max,
                                    namespace=namespace, job_env=job_env)
    _refs.set_current(runtime)
    atexit.register(_shutdown_at_exit)
    return _info(runtime)


def _info(runtime) -> RuntimeInfo:
    return RuntimeInfo(node_id=runtime.node_id, session_dir=runtime.session_dir, address=runtime.address,
                       node_ip_address=runtime.node_ip, namespace=runtime.namespace)


def shutdown() -> None:
    """Stop the runtime: workers exit, shared memory and the session directory are removed."""
    runtime = _refs._current
    if runtime is None:
        return
    _refs.set_current(None)
    runtime.close()


def _shutdown_at_exit():
    try:
        shutdown()
    except Exception:
        pass


def is_initialized() -> bool:
    return _refs._current is not None


# -- objects ------------------------------------------------------------------------------------------
def _check_refs(refs, what):
    single = isinstance(refs, ObjectRef)
    if single:
        return [refs], True
    if isinstance(refs, (list, tuple)) and all(issubclass(t, ObjectRef) for t in set(map(type, refs))):
        return list(refs), False
    bad = refs if not isinstance(refs, (list, tuple)) else next(r for r in refs if not isinstance(r, ObjectRef))
    raise ValueError(f"{what}() expects an ObjectRef or a list of ObjectRefs, got {type(bad).__name__} "
                     f"{bad!r:.60}. Pass the refs returned by .remote() or miniray.put().")


def get(object_refs, *, timeout=None, progress=False):
    """The value(s) of one ObjectRef or a list of them; raises the task's error if it failed."""
    if type(object_refs).__name__ == "ObjectRefGenerator":
        return object_refs      # as Ray: a streaming generator is its own value; iterate it for refs
    refs, single = _check_refs(object_refs, "get")
    if timeout is not None and timeout < 0:
        raise ValueError("get(timeout=...) must be >= 0 or None.")
    rt = current_runtime()
    if progress and not single:
        from miniray.progress import track
        track(refs, wait, timeout=timeout)
    try:
        values = rt.get([r._id for r in refs], timeout)
    except KeyboardInterrupt:
        raise tracebacks.interrupted(f"miniray.get() of {len(refs)} object(s)") from None
    return values[0] if single else values


def put(value, **_):
    """Store a value in the object store; returns its ObjectRef."""
    return current_runtime().put(value, call_site())


def wait(object_refs, *, num_returns=1, timeout=None, fetch_local=True):
    """``(ready, not_ready)``: returns once ``num_returns`` refs are ready or ``timeout`` passed."""
    if isinstance(object_refs, ObjectRef):
        raise TypeError("wait() expects a list of ObjectRefs; wrap a single ref in a list: wait([ref]).")
    object_refs = list(object_refs)
    if any(type(r).__name__ == "ObjectRefGenerator" for r in object_refs):
        from miniray.generators import wait_with_generators
        return wait_with_generators(object_refs, num_returns, timeout)
    refs, _ = _check_refs(object_refs, "wait")
    if len({r._id for r in refs}) != len(refs):
        raise ValueError("wait() got the same ObjectRef twice; pass each ref once.")
    if not isinstance(num_returns, int) or num_returns < 1 or num_returns > len(refs):
        if refs or num_returns != 1:
            raise ValueError(f"wait(num_returns={num_returns!r}) must be between 1 and the number of refs "
                             f"({len(refs)}).")
    if not refs:
        return [], []
    try:
        ready_ids = set(current_runtime().wait([r._id for r in refs], num_returns, timeout))
    except KeyboardInterrupt:
        raise tracebacks.interrupted(f"miniray.wait() on {len(refs)} object(s)") from None
    ready, not_ready = [], []
    for r in refs:
        (ready if r._id in ready_ids and len(ready) < num_returns else not_ready).append(r)
    return ready, not_ready


def cancel(object_ref, *, force=False, recursive=True):
    """Cancel the task that makes ``object_ref``: pending tasks never run; running ones get
    KeyboardInterrupt (or, with force=True, their worker is killed).  ``get`` then raises
    TaskCancelledError.  ``recursive`` (the default, as Ray): the tasks a running task submitted
    are cancelled too, and theirs in turn.  A streaming generator can be cancelled too."""
    if type(object_ref).__name__ == "ObjectRefGenerator":
        object_ref = object_ref.completed()
    if not isinstance(object_ref, ObjectRef):
        raise TypeError(f"cancel() expects an ObjectRef, got {type(object_ref).__name__}.")
    current_runtime().request("cancel", object_ref._id, bool(force), bool(recursive))


# -- actors -----------------------------------------------------------------------------------------
def kill(actor, *, no_restart=True):
    """Kill an actor's process at once; its pending and later calls raise ActorDiedError."""
    from miniray.actor import ActorHandle
    if not isinstance(actor, ActorHandle):
        raise TypeError(f"kill() expects an actor handle, got {type(actor).__name__}. "
                        "To stop a task, use miniray.cancel(ref).")
    current_runtime().request("kill", actor._actor_id, bool(no_restart))


def get_actor(name, namespace=None):
    """The handle of the live actor created with ``.options(name=name)``."""
    from miniray.actor import ActorHandle
    if not isinstance(name, str) or not name:
        raise ValueError("get_actor() needs the actor's name as a non-empty string.")
    rt = current_runtime()
    state = rt.request("get_actor", name, namespace or rt.namespace)
    if state is None:
        raise ValueError(f"Failed to look up actor with name {name!r} in namespace "
                         f"{namespace or rt.namespace!r}: no live actor has that name. Create it with "
                         f"MyActor.options(name={name!r}).remote().")
    return ActorHandle(state)


# -- the cluster ---------------------------------------------------------------------------------------
def _public(res: dict) -> dict:
    return {k: v for k, v in res.items() if not k.startswith("node_id:")}


def cluster_resources() -> dict:
    total, _ = current_runtime().resources()
    return _public(total)


def available_resources() -> dict:
    _, avail = current_runtime().resources()
    return {k: v for k, v in _public(avail).items() if v > 1e-9}


def nodes() -> list:
    """One dict per node ever in the cluster: NodeID, Alive, NodeManagerAddress, Resources."""
    out = current_runtime().request("nodes")
    for n in out:
        n["Resources"] = _public(n["Resources"])
        n["alive"] = n["Alive"]
    return out


def timeline(filename=None):
    from miniray.events import timeline as _timeline
    current_runtime()           # started on first use, as every call here
    return _timeline(filename)


def get_gpu_ids() -> list:
    """The GPU ids given to the current task or actor, as ints (Ray's convention)."""
    return [int(i) for i in get_runtime_context().get_accelerator_ids().get("GPU", [])]


def get_runtime_context():
    """Ids of the current job, node, task and actor, and more (miniray/runtime_context.py)."""
    from miniray.runtime_context import RuntimeContext
    return RuntimeContext(current_runtime())


_ = exc
