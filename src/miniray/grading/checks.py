"""Helpers that graded tests use to check *how* a submission works, not only what it returns.

    test ──events_during(fn, *args)──► (result, the runtime events of that call)
                                           │
              tasks_named / ran_concurrently / live_objects_peak / shared_dependency

    test ──calls_in_loops(source, "get")──► lines where a get() sits inside a loop

Everything here observes: the runtime's event log (``miniray.events``, STYLE 10) and the source text
of the student's function (``ast``).  Nothing patches the runtime.  These run inside the sandbox
process, next to the submission.
"""
from __future__ import annotations

import ast
import textwrap
import time
from typing import Any, Callable


def event_log():
    """miniray's event log; or, when the submission runs on real Ray, Ray's state read as one
    (:mod:`miniray.util.ray_events`: the same rows, without dependency edges)."""
    import miniray
    from miniray import events as ev
    from miniray.util import ray_events

    if not miniray.is_initialized() and ray_events.ray_running():
        if not hasattr(event_log, "ray_log"):
            event_log.ray_log = ray_events.RayEventLog()
        return event_log.ray_log
    return ev


def events_during(fn: Callable, *args, settle_s: float = 3.0, **kwargs) -> tuple[Any, list[dict]]:
    """Call ``fn`` and return its result with the events logged meanwhile.

    Events reach the driver's log from the node asynchronously, so after the call this waits (up to
    ``settle_s``) until every task submitted during the call has its ``finished`` event.  Ray
    reports its task events about once a second: there the wait is Ray's ``settle_s``.
    """
    ev = event_log()
    start = ev.cursor()
    if hasattr(ev, "wait_for"):                      # Ray
        began = time.time()
        result = fn(*args, **kwargs)
        ev.wait_for(start)
        return result, _submitted_since(ev.events(start), began)
    result = fn(*args, **kwargs)
    deadline = time.monotonic() + settle_s
    while True:
        evs = ev.events(start)
        submitted = {e["task_id"] for e in evs if e["kind"] == "submitted" and e.get("type") != "actor_creation"}
        finished = {e["task_id"] for e in evs if e["kind"] == "finished"}
        if submitted <= finished or time.monotonic() > deadline:
            return result, evs
        time.sleep(0.02)


def _submitted_since(evs: list[dict], began: float, slack_s: float = 0.01) -> list[dict]:
    """Ray's events of tasks submitted at or after ``began`` (wall clock), and its object rows.

    Ray reports task events about once a second, so an earlier call's tasks can reach the log after
    this call's cursor was taken; their submission time says they are not this call's."""
    mine = {e["task_id"] for e in evs if e["kind"] == "submitted" and e["ts"] >= began - slack_s}
    return [e for e in evs if "task_id" not in e or e["task_id"] in mine]


def tasks_named(evs: list[dict], name: str | None = None, kind: str | None = None) -> list[dict]:
    """The ``submitted`` events, optionally only those whose function name ends with ``name``."""
    out = []
    for e in evs:
        if e["kind"] != "submitted":
            continue
        if name is not None and not (e.get("name") == name or str(e.get("name", "")).endswith("." + name)):
            continue
        if kind is not None and e.get("type") != kind:
            continue
        out.append(e)
    return out


def run_intervals(evs: list[dict]) -> list[tuple[float, float]]:
    """(start, end) of every task that started and finished in ``evs``."""
    started = {e["task_id"]: e["ts"] for e in evs if e["kind"] == "started"}
    return sorted((started[e["task_id"]], e["ts"]) for e in evs
                  if e["kind"] == "finished" and e["task_id"] in started)


def ran_concurrently(evs: list[dict]) -> bool:
    """True when at least two tasks were running at the same moment."""
    intervals = run_intervals(evs)
    return any(b[0] < a[1] for a, b in zip(intervals, intervals[1:]))


def shared_dependency(task_events: list[dict]) -> set[str]:
    """Object ids that every one of these submitted tasks depends on."""
    deps = [set(e.get("deps") or ()) for e in task_events]
    return set.intersection(*deps) if deps else set()


def live_objects_peak(evs: list[dict]) -> int:
    """The most objects created during ``evs`` that were alive at the same time (put/stored - freed)."""
    live: set[str] = set()
    peak = 0
    for e in evs:
        if e["kind"] in ("put", "stored"):
            live.add(e["object_id"])
            peak = max(peak, len(live))
        elif e["kind"] == "freed":
            live.discard(e["object_id"])
    return peak


_LOOPS = (ast.For, ast.AsyncFor, ast.While, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _called_name(call: ast.Call) -> str | None:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None


def calls_in_loops(source: str, name: str, unless: str | None = None) -> list[int]:
    """Line numbers (1-based, within ``source``) of calls to ``name`` made inside a loop body.

    A loop that also calls ``unless`` (for example ``wait``) is allowed to call ``name``: fetching
    results that ``wait`` has said are ready is the good pattern, not the slow one.
    """
    tree = ast.parse(textwrap.dedent(source))
    lines: list[int] = []

    def visit(node: ast.AST, in_loop: bool) -> None:
        if isinstance(node, _LOOPS):
            calls = {_called_name(c) for c in ast.walk(node) if isinstance(c, ast.Call)}
            allowed = unless is not None and unless in calls
            body = node.body if isinstance(node, (ast.For, ast.AsyncFor, ast.While)) else [node.elt] \
                if hasattr(node, "elt") else [node.key, node.value]
            header = [node.iter] if isinstance(node, (ast.For, ast.AsyncFor)) else \
                [g.iter for g in getattr(node, "generators", [])]
            for child in header:
                visit(child, in_loop)
            for child in body + getattr(node, "orelse", []):
                visit(child, in_loop or not allowed)
            if isinstance(node, ast.While):
                visit(node.test, in_loop or not allowed)
            return
        if isinstance(node, ast.Call) and in_loop and _called_name(node) == name:
            lines.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child, in_loop)

    visit(tree, False)
    return sorted(set(lines))


def calls(source: str, name: str) -> bool:
    """True when ``source`` calls ``name`` (as ``name(...)`` or ``x.name(...)``) anywhere."""
    tree = ast.parse(textwrap.dedent(source))
    return any(isinstance(c, ast.Call) and _called_name(c) == name for c in ast.walk(tree))
