"""Dask on miniray: run Dask collections (array, bag, dataframe, delayed) as miniray tasks.

    import miniray
    from miniray.util.dask import miniray_dask_get, enable_dask_on_miniray

    x.compute(scheduler=miniray_dask_get)        # one computation
    enable_dask_on_miniray()                     # every computation, until disable_dask_on_miniray()

Each Dask task becomes one miniray task named after its Dask key; its dependencies travel as
ObjectRefs, so intermediate arrays and frames live once in the shared-memory store and tasks read
them zero-copy.  Dask still decides *what* to run next (``dask.local.get_async`` and ``dask.order``);
miniray decides *where*, and owns the data.  See :mod:`miniray.util.dask.scheduler` for the data flow
and :mod:`miniray.util.dask.callbacks` for the hooks.

State owned here: only the stack of Dask configurations that ``enable_dask_on_miniray`` replaced,
so that ``disable_dask_on_miniray`` can put each one back.
"""
from __future__ import annotations

import dask

from miniray.util.dask.callbacks import MinirayDaskCallback
from miniray.util.dask.scheduler import miniray_dask_get

__all__ = ["miniray_dask_get", "MinirayDaskCallback", "enable_dask_on_miniray",
           "disable_dask_on_miniray"]

_saved_configs: list = []      # dask.config.set objects, innermost last; each restores its old values


def enable_dask_on_miniray(shuffle: str | None = "tasks", **config):
    """Make miniray the scheduler of every Dask computation (``dask.config.set(scheduler=...)``).

    ``shuffle="tasks"`` also makes dataframe shuffles (``set_index``, ``shuffle``, some
    ``groupby``) use task-based shuffling, whose pieces live in the object store; Dask's default
    without a distributed client ("disk") writes them to files through ``partd`` instead.  Pass
    ``shuffle=None`` to leave that setting alone.  Extra keyword arguments are set in the Dask
    config as well.  Returns the ``dask.config.set`` object, so ``with enable_dask_on_miniray():``
    also works (leaving the block restores the config; don't call disable as well).
    """
    settings = {"scheduler": miniray_dask_get, **config}
    if shuffle is not None:
        settings["dataframe.shuffle.method"] = shuffle
    saved = dask.config.set(settings)
    _saved_configs.append(saved)
    return _Enabled(saved)


def disable_dask_on_miniray() -> None:
    """Restore the Dask config as it was before the latest ``enable_dask_on_miniray()``."""
    if not _saved_configs:
        raise RuntimeError("disable_dask_on_miniray(): Dask on miniray is not enabled; call "
                           "enable_dask_on_miniray() first.")
    _saved_configs.pop().__exit__(None, None, None)


class _Enabled:
    """What ``enable_dask_on_miniray`` returns: leaving a ``with`` block restores the config."""

    def __init__(self, saved):
        self._saved = saved

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self._saved in _saved_configs:
            _saved_configs.remove(self._saved)
            self._saved.__exit__(None, None, None)
