"""The child side of a benchmark run: run one system's workloads and report each as a JSON line.

A child is started by ``harness.run_child`` as ``python <workloads file> --system S --workloads a,b
--config JSON``.  It must run under an interpreter that may lack miniray (the peers' venv), so this
module uses only the standard library and is imported by the workload files as a top-level module
(their directory is ``sys.path[0]`` when run by path).

What the child writes on stdout, one line per event, each prefixed by ``@@BENCH ``::

    {"event": "hello", "system": ..., "python": ..., "versions": {...}}
    {"event": "unavailable", "reason": "No module named 'ray'"}      # then exit 0
    {"event": "start", "workload": "init", "t": <CLOCK_MONOTONIC>}
    {"event": "result", "workload": "init", "data": {...}, "t": ...}
    {"event": "error", "workload": "chain", "error": "<traceback>", "t": ...}
    {"event": "skip", "workload": "chain", "t": ...}                  # the system has no such workload
    {"event": "mark", "name": "baseline_start", "t": ...}             # memory benchmark phases
    ... "start"/"result" for each workload, then for "shutdown" ...

``init`` always runs first and ``shutdown`` last, whatever the workload list says.  Anything else on
stdout (a library's own prints) is ignored by the parent.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback

MARK = "@@BENCH "


def emit(event: str, **fields) -> None:
    """Write one event line for the parent; ``t`` is CLOCK_MONOTONIC, comparable across processes."""
    fields = {"event": event, "t": time.monotonic(), **fields}
    sys.stdout.write(MARK + json.dumps(fields, default=str) + "\n")
    sys.stdout.flush()


def mark(name: str) -> None:
    """A phase boundary that the parent's memory sampler lines up with its samples."""
    emit("mark", name=name)


def _versions() -> dict:
    out = {}
    for name in ("numpy", "miniray", "ray", "dask", "distributed", "psutil"):
        mod = sys.modules.get(name)
        if mod is not None:
            out[name] = getattr(mod, "__version__", "?")
    return out


def _run_one(system, name: str) -> bool:
    if not hasattr(system, name):
        emit("skip", workload=name)
        return True
    emit("start", workload=name)
    try:
        data = getattr(system, name)()
    except Exception:
        emit("error", workload=name, error=traceback.format_exc(limit=8))
        return False
    emit("result", workload=name, data=data)
    return True


def serve(make_system, argv=None) -> int:
    """Parse the child's arguments, build the system (``make_system(name, config)``) and run it."""
    p = argparse.ArgumentParser()
    p.add_argument("--system", required=True)
    p.add_argument("--workloads", default="")
    p.add_argument("--config", default="{}")
    args = p.parse_args(argv)
    config = json.loads(args.config)
    try:
        system = make_system(args.system, config)
    except ImportError as e:
        emit("unavailable", reason=f"{type(e).__name__}: {e}")
        return 0
    emit("hello", system=args.system, pid=os.getpid(), python=platform.python_version(),
         executable=sys.executable,
         versions=_versions())
    if _run_one(system, "init"):
        for name in [w for w in args.workloads.split(",") if w and w not in ("init", "shutdown")]:
            _run_one(system, name)
    _run_one(system, "shutdown")
    emit("exit")
    return 0
