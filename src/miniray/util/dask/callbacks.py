"""Callback hooks for Dask on miniray: watch each Dask task as a miniray task.

    driver thread (get_async's loop)            waiter threads (one per task in flight)
    ─────────────────────────────────           ──────────────────────────────────────
    on_start(graph)
    ... Dask's pretask(key) ...
    submit ──► on_submit(key, ref)  ───────────► miniray.wait([ref]) ──► on_finish(key, ref)
    ... Dask's posttask(key, ref) ...  ◄────────  (the Future completes)
    on_end(failed)

A :class:`MinirayDaskCallback` is a ``dask.callbacks.Callback``, so it is switched on the Dask way:
``with MyCallback(): x.compute(scheduler=miniray_dask_get)``, ``cb.register()``, or
``miniray_dask_get(dsk, keys, callbacks=[cb])``.  Plain Dask callbacks (``ProgressBar``,
``Profiler``, ``Callback(pretask=...)``) work too: their ``pretask`` runs as the task is handed to
miniray and their ``posttask`` once it finished, with the task's **ObjectRef** as ``result`` (the
value stays in the store; ``miniray.get(result)`` reads it).

``on_finish`` runs in a waiter thread, not the driver's main thread: keep it short and thread-safe.
It also runs for a task that failed; ``miniray.get(ref)`` would raise its error.

State owned: none beyond what a subclass keeps.
"""
from __future__ import annotations

from dask.callbacks import Callback


class MinirayDaskCallback(Callback):
    """Subclass and override any of ``on_start``, ``on_submit``, ``on_finish``, ``on_end``.

    >>> class Count(MinirayDaskCallback):
    ...     def __init__(self):
    ...         self.submitted = []
    ...     def on_submit(self, key, ref):
    ...         self.submitted.append(key)
    """

    def on_start(self, graph) -> None:
        """Before anything runs; ``graph`` is the Dask graph (a dict of task specs)."""

    def on_submit(self, key, ref) -> None:
        """The Dask task ``key`` became the miniray task that will produce ``ref``."""

    def on_finish(self, key, ref) -> None:
        """The miniray task for ``key`` finished (or failed); called from a waiter thread."""

    def on_end(self, failed: bool) -> None:
        """The computation ended; ``failed`` when a task or the scheduler raised."""

    # Dask's hook names, which dask.callbacks.Callback._callback collects.
    def _start(self, dsk) -> None:
        self.on_start(dsk)

    def _finish(self, dsk, state, failed) -> None:
        self.on_end(failed)


def miniray_hooks(callbacks) -> list[MinirayDaskCallback]:
    """The MinirayDaskCallback objects among Dask callback tuples (bound methods) or objects."""
    found: list[MinirayDaskCallback] = []
    for cb in callbacks or ():
        owners = [cb] if isinstance(cb, Callback) else [getattr(f, "__self__", None) for f in cb]
        for owner in owners:
            if isinstance(owner, MinirayDaskCallback) and owner not in found:
                found.append(owner)
    return found
