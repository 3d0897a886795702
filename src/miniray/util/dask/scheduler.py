"""``miniray_dask_get``: a Dask scheduler whose tasks are miniray tasks.

    driver, main thread                                     miniray workers
    ───────────────────                                     ───────────────
    dsk ─► convert_legacy_graph ─► task specs (Task, Alias, DataNode)
           DataNode values ─► miniray.put (once each, in the store)
    dask.local.get_async(submit, ...)      # Dask's own loop: order, ready list, callbacks, release
      │ submit(batch): per Dask task ──► _run_dask_task.options(name=str(key)).remote(task, keys, *refs)
      │                                    task({key: value, ...}) ◄─ refs resolved zero-copy
      │   Future ◄── waiter thread: miniray.wait([ref]) ──► result (key, ref)
      ▼ cache[key] = ref; refs dropped (del cache[dep]) once every dependent has finished
    nested refs of the wanted keys ─► miniray.get (or returned as they are: miniray_persist=True)

Dask's scheduling seam is ``get_async(submit, num_workers, dsk, keys)``: it keeps its state in plain
dicts (ready, waiting, running, cache) and hands each ready task to ``submit`` as
``batch_execute_tasks(items)``.  Here ``submit`` does not call that function: it unpacks each item
(key, task spec, the values of its dependencies) and starts one miniray task per Dask task, passing
the dependencies' ObjectRefs as top-level arguments, so the runtime resolves them and counts them as
pending arguments.  The Future it returns completes once the miniray task has finished, so Dask's
callbacks, its release of data and its bound on tasks in flight (``num_workers``, default twice the
CPUs) mean what they mean locally.  What Dask calls the result of a task is its ObjectRef.

An ``Alias`` (a key that names another key) is resolved in the driver: it yields the same ref, no
task and no copy.  Errors: the failing miniray task stores the user's exception; dependents fail with
it too, and fetching the results raises it, as ``RayTaskError(YourError)`` naming the Dask key (the
task's name).  A wanted key missing from the graph raises KeyError before anything runs.

Threads: the caller's (get_async's loop, submission, callbacks' pretask/posttask) and a small pool
of waiter threads, each blocked in ``miniray.wait`` on one task.  State owned: per call only (the
waiter pool and the hooks); the data is owned by the object store.
"""
from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor

from dask._task_spec import Alias, DataNode, convert_legacy_graph
from dask.callbacks import Callback, normalize_callback
from dask.core import flatten
from dask.local import get_async

import miniray
from miniray import exceptions
from miniray.refs import ObjectRef
from miniray.util.dask.callbacks import miniray_hooks


@miniray.remote
def _run_dask_task(task, keys, *values):
    """Worker side: call the task spec with its dependencies' values (refs already resolved)."""
    return task(dict(zip(keys, values)))


def key_name(key) -> str:
    """The miniray task name of a Dask key: the key itself, ``('x-1a2b', 0, 1)`` as written."""
    return key if isinstance(key, str) else str(key)


class _Submitter:
    """The ``submit`` that ``get_async`` calls: Dask tasks in, miniray tasks out."""

    def __init__(self, remote_args: dict, hooks: list, num_workers: int):
        self.remote_args = dict(remote_args)
        self.hooks = hooks
        self.waiters = ThreadPoolExecutor(num_workers, thread_name_prefix="miniray-dask-wait")

    def submit(self, fn, batch) -> Future:
        """``fn`` is ``dask.local.batch_execute_tasks``; each item is (key, dumps((task, data)),
        dumps, loads, get_id, pack_exception).  Start each task now; the Future waits for them."""
        started = []
        for key, task_info, dumps, loads, _get_id, _pack in batch:
            task, data = loads(task_info)
            if isinstance(task, Alias):     # another key's value: the same ref, no task
                started.append((key, task(data), dumps, False))
            else:
                started.append((key, self.launch(key, task, data), dumps, True))
        return self.waiters.submit(self.await_batch, started)

    def launch(self, key, task, data: dict) -> ObjectRef:
        keys = tuple(data)
        options = {**self.remote_args, "name": key_name(key)}
        ref = _run_dask_task.options(**options).remote(task, keys, *(data[k] for k in keys))
        for hook in self.hooks:
            hook.on_submit(key, ref)
        return ref

    def await_batch(self, started) -> list:
        """Waiter thread: block until each task finished; report (key, (ref, worker), failed)."""
        out = []
        for key, ref, dumps, launched in started:
            if launched:
                miniray.wait([ref])
                for hook in self.hooks:
                    hook.on_finish(key, ref)
            out.append((key, dumps((ref, "miniray")), False))
        return out

    def close(self) -> None:
        self.waiters.shutdown(wait=True, cancel_futures=True)


def _graph_of(dsk) -> dict:
    """The graph as a dict of task specs, with each DataNode's value put in the store once."""
    if not isinstance(dsk, Mapping):
        dsk = dsk.__dask_graph__()
    graph = convert_legacy_graph(dict(dsk))
    for key, node in graph.items():
        if isinstance(node, DataNode) and not isinstance(node.value, ObjectRef):
            graph[key] = DataNode(key, miniray.put(node.value))
    return graph


def _check_keys(graph: dict, keys, cache) -> None:
    wanted = flatten(keys) if isinstance(keys, list) else [keys]
    for key in wanted:
        if key not in graph and key not in (cache or {}):
            raise KeyError(f"{key!r} is not a key of this Dask graph ({len(graph)} keys)")


def _collect_refs(x, out: list) -> list:
    if isinstance(x, ObjectRef):
        out.append(x)
    elif isinstance(x, (list, tuple)):
        for item in x:
            _collect_refs(item, out)
    return out


def _rebuild(x, values: dict):
    if isinstance(x, ObjectRef):
        return values[x]
    if isinstance(x, (list, tuple)):
        return type(x)(_rebuild(item, values) for item in x)
    return x


def _fetch(nested):
    """Replace every ObjectRef in a nest of tuples/lists by its value, with one ``get``.

    (Plain functions, not recursive closures: a closure that calls itself is a reference cycle,
    which would keep the refs, and so the results in the store, alive until the next gc.)"""
    refs = _collect_refs(nested, [])
    try:
        values = dict(zip(refs, miniray.get(refs)))
    except exceptions.RayTaskError as err:
        err.add_note(f"(raised by the Dask task {err.function_name})")
        raise
    return _rebuild(nested, values)


def miniray_dask_get(dsk, keys, *, miniray_remote_args: dict | None = None,
                     miniray_persist: bool = False, callbacks=None, num_workers: int | None = None,
                     **kwargs):
    """Compute ``keys`` of the Dask graph ``dsk`` on miniray; a Dask ``get`` function.

    ``x.compute(scheduler=miniray_dask_get)`` or ``dask.config.set(scheduler=miniray_dask_get)``.
    ``miniray_remote_args``: ``.options()`` for every task (``num_cpus``, ``resources``, ...).
    ``miniray_persist=True``: return ObjectRefs (nested like ``keys``) instead of values.
    ``callbacks``: Dask callbacks and :class:`MinirayDaskCallback` objects, besides the active ones.
    ``num_workers``: Dask tasks handed to miniray at once (default: twice the CPUs).
    Other keyword arguments go to ``dask.local.get_async``.  Results that are arrays come back as
    read-only zero-copy views of the store; copy one (``np.array(x)``) before writing to it.
    """
    if not miniray.is_initialized():
        miniray.init()
    # The active callbacks (``with cb:``, ``cb.register()``) and those passed here, together.
    callbacks = list(Callback.active) + [normalize_callback(cb) for cb in callbacks or ()]
    hooks = miniray_hooks(callbacks)
    if num_workers is None:
        num_workers = max(4, 2 * int(miniray.cluster_resources().get("CPU", 1)))
    graph = _graph_of(dsk)
    _check_keys(graph, keys, kwargs.get("cache"))
    submitter = _Submitter(miniray_remote_args or {}, hooks, num_workers)
    try:
        result = get_async(submitter.submit, num_workers, graph, keys, callbacks=callbacks,
                           **kwargs)
    finally:
        submitter.close()
    return result if miniray_persist else _fetch(result)
