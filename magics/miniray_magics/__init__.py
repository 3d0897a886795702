"""IPython magics that draw what miniray did, inline in the notebook.

    %load_ext miniray_magics        (or %load_ext miniray)

    %%taskgraph   the DAG of what a cell submitted        ─┐
    %timeline     one Gantt row per worker and per actor   ├─ all read miniray.events only
    %memory       object store use, largest objects        │
    %dashboard    a live ipywidgets panel                 ─┘
    %tune         a Tune run's learning curves (from its ResultGrid or experiment directory)

Loading the extension only registers the magics; matplotlib, networkx, ipywidgets and miniray are
imported when a magic first runs.  ``graph_of(events)`` gives the task graph as a networkx DiGraph,
for tests and exercises.
"""
from __future__ import annotations

__all__ = ["graph_of", "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython) -> None:
    """Register the miniray magics with ``ipython`` (called by ``%load_ext``)."""
    from miniray_magics.magic import MinirayMagics
    from miniray_magics.tune import TuneMagics

    ipython.register_magics(MinirayMagics)
    ipython.register_magics(TuneMagics)


def unload_ipython_extension(ipython) -> None:
    """Stop a running dashboard and the per-cell bookkeeping (called by ``%unload_ext``)."""
    magics = ipython.magics_manager.registry.get("MinirayMagics")
    if magics is not None:
        magics.close()


def __getattr__(name: str):
    if name == "graph_of":
        from miniray_magics.graph import graph_of

        return graph_of
    raise AttributeError(f"module 'miniray_magics' has no attribute {name!r}")
