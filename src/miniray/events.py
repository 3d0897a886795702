"""The runtime's event log: one append-only list that every picture is drawn from.

    Node (scheduler/node.py)  ──► submitted / started / finished ─┐
    ObjectStore (store/)      ──► put / stored / freed /          ├──► EventLog ──► timeline()
                                  spilled / restored / copied     │       │
    NodeTable (a node died)   ──► lost / reconstructing          ─┘       └──► events(since), cursor()
                                                                               ──► miniray_magics
    a driver joined over TCP reads the head's log by request (runtime.py: RemoteEventLog)

Who writes: the process that holds the node (the driver in local mode, a cluster's head), from
whichever thread runs a step of the node's loop (scheduler/node.py) or the driver's own ``put``.
Workers never hold a
log; what happens in them reaches the node as messages and is logged there, with the worker's own
timestamps.

State owned: ``EventLog._events``, a list of rows, each one tuple ``(field names, kind, ts,
values...)``, appended whole (an atomic ``list.append``) and never mutated afterwards, and
``_base``, the ``seq`` of its first row: a row's ``seq`` is ``_base`` plus its index.  Readers get
fresh dicts built from a slice, so a reader never sees a half-written event.  The five events
every task makes (submitted, started, finished, stored, freed) are written by their callers as
ready-made rows (``append``, the list's own, with a ``schema``): a tiny task spends a quarter of
the driver's time on its events otherwise.  The log's cap is kept by ``trim``, which the node
calls once per step, not per event: past the cap it forgets the *oldest* tenth of the rows, so a
long session keeps showing its newest work in bounded memory, and every ``seq`` stays the same.

Every event has ``seq`` (its index in the log), ``kind`` and ``ts`` (seconds since the epoch, float).
The kinds and their fields:

``submitted``  task_id, name ("square", "Counter.increment", "Counter.__init__"), type ("task" |
               "actor_method" | "actor_creation"), actor_id (hex or None), deps (a tuple of the object
               ids the task takes: top-level refs and refs nested in its arguments), returns (a tuple
               of the object ids it will produce), call_site ("file.py:12"), resources ({"CPU": 1.0, ...})
``started``    task_id, worker_id ("w3"), pid, node_id, actor_id
``finished``   task_id, state ("FINISHED" | "FAILED" | "CANCELLED"), error (exception class name or
               None), worker_id, pid
``put``        object_id, size, location ("inline" | "shared_memory"), call_site, pid, node_id
``stored``     object_id, size, location, task_id (a task's return value reached the store)
``freed``      object_id
``spilled``    object_id, size, path
``restored``   object_id, size
``copied``     object_id, node_id, size (a reader on another node pulled a copy into its store)
``lost``       object_id, node_id (its only copy was on a node that died)
``reconstructing`` task_id, name, node_id (re-run to make again outputs lost with that node)
``workflow_step`` workflow_id, step, name, how ("ran" | "restored": read back from storage), task (the
               task that runs it, or None), deps (the step ids it takes) -- from miniray.workflow

Events hold only strings, numbers, tuples and flat dicts, so the garbage collector stops tracking
them: a long log costs nothing at each collection.

The magics and ``miniray.util.state`` read only :func:`events` and :func:`cursor`; they never reach
into the runtime.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from miniray import refs

KINDS = ("submitted", "started", "finished", "put", "stored", "freed", "spilled", "restored", "copied",
         "lost", "reconstructing", "workflow_step")
_KINDS = frozenset(KINDS)


def schema(*names: str) -> tuple:
    """The field names of a row for ``EventLog.add``: kind and ts first, then ``names``."""
    return ("kind", "ts") + names


class EventLog:
    """An append-only, thread-safe list of events, handed out as fresh dicts.  Each is kept as
    one tuple whose first item, the field names, is shared by every event of the same shape: the
    collector soon stops tracking such tuples; a tracked dict per event made every collection
    slower."""

    def __init__(self, max_events: int = 2_000_000):
        self._events: list[tuple] = []
        self._max = max_events
        self._dict_fields: set = {"resources"}   # fields that were dicts, stored as pairs (a
        # submitted event's resources come as pairs already: the node makes thousands a second)
        self._schemas: dict = {}          # field-name tuple -> the one shared schema for it
        self.dropped = 0                  # rows forgotten so far (the oldest): ``_base``
        self._base = 0
        self._lock = threading.Lock()     # ``trim`` against readers; appends need none
        self.append = self._events.append   # for hot callers: a row as ``add`` takes it; see ``trim``

    def emit(self, kind: str, ts: float | None = None, **fields: Any) -> None:
        if kind not in _KINDS:
            raise ValueError(f"unknown event kind {kind!r}; expected one of {KINDS}")
        names, values = tuple(fields), tuple(fields.values())
        if dict in map(type, values):    # a dict stays tracked by the collector: keep its pairs instead
            values = tuple(tuple(v.items()) if type(v) is dict else v for v in values)
            self._dict_fields.update(k for k, v in fields.items() if type(v) is dict)
        keys = self._schemas.get(names)
        if keys is None:
            keys = self._schemas[names] = schema(*names)
        self.add((keys, kind, time.time() if ts is None else ts) + values)

    def add(self, row: tuple) -> None:
        """Append a row: (``schema(...)``, kind, ts, values in its order)."""
        self._events.append(row)
        if len(self._events) > self._max:
            self.trim()

    def trim(self) -> None:
        """Past the cap, forget the oldest rows (a tenth of the cap more, so this runs rarely)."""
        if len(self._events) > self._max:
            with self._lock:
                drop = len(self._events) - self._max + self._max // 10
                del self._events[:drop]
                self._base += drop
                self.dropped += drop

    def since(self, seq: int = 0) -> list[dict[str, Any]]:
        """Events with ``seq`` >= ``seq``, oldest first (those already forgotten are gone)."""
        with self._lock:
            base = self._base
            stored = self._events[max(0, seq - base):]
        first = max(seq, base)
        out, as_dicts = [], self._dict_fields
        for i, row in enumerate(stored, first):
            event = dict(zip(row[0], row[1:]))
            event["seq"] = i
            for k in as_dicts.intersection(event):
                if type(event[k]) is tuple:
                    event[k] = dict(event[k])
            out.append(event)
        return out

    def __len__(self) -> int:
        """The ``seq`` the next event will get (rows forgotten included)."""
        return self._base + len(self._events)


class _NoLog:
    """No runtime is running: nothing was logged yet (the next ``init()`` starts from seq 0)."""

    def since(self, seq: int = 0) -> list:
        return []

    def __len__(self) -> int:
        return 0

    def emit(self, kind: str, **fields: Any) -> None:
        pass


def _log():
    """The log of this process's runtime: its own (local driver), the node's read by request
    (a worker, a joined driver, runtime.RemoteEventLog), or none yet."""
    rt = refs._current
    return rt.events if rt is not None else _NoLog()


def events(since: int = 0) -> list[dict[str, Any]]:
    """Copies of the events with ``seq >= since``, oldest first."""
    return _log().since(since)


def emit(kind: str, **fields: Any) -> None:
    """Log an event from a library (in a local driver; where this process keeps no log of its own, as
    in a worker or a driver joined to a cluster, or no runtime runs, nothing happens)."""
    _log().emit(kind, **fields)


def cursor() -> int:
    """The ``seq`` the next event will get: remember it before a cell, read ``events(cursor)`` after."""
    return len(_log())


def timeline(filename: str | None = None) -> list[dict[str, Any]] | None:
    """Chrome trace events (``ph: "X"``, µs) for every task that started; written to a file if named.

    One ``tid`` per worker, or per actor for actor calls, so Perfetto shows one row each.
    """
    import json

    evs = events()
    submitted = {e["task_id"]: e for e in evs if e["kind"] == "submitted"}
    started = {e["task_id"]: e for e in evs if e["kind"] == "started"}
    trace: list[dict[str, Any]] = []
    rows: dict[str, int] = {}
    for e in evs:
        if e["kind"] != "finished" or e["task_id"] not in started:
            continue
        s = started[e["task_id"]]
        sub = submitted.get(e["task_id"], {})
        row = f"actor {s['actor_id']}" if s.get("actor_id") else s["worker_id"]   # ids share a head
        tid = rows.setdefault(row, len(rows) + 1)
        trace.append({
            "name": sub.get("name", "task"), "cat": sub.get("type", "task"), "ph": "X",
            "ts": s["ts"] * 1e6, "dur": max(0.0, (e["ts"] - s["ts"]) * 1e6),
            "pid": s.get("node_id", "node")[:8], "tid": tid,
            "args": {"task_id": e["task_id"], "state": e["state"], "worker": s["worker_id"],
                     "os_pid": s.get("pid")},
        })
    for row, tid in rows.items():
        trace.append({"name": "thread_name", "ph": "M", "pid": trace[0]["pid"] if trace else "node",
                      "tid": tid, "args": {"name": row}})
    if filename is None:
        return trace
    with open(filename, "w") as f:
        json.dump(trace, f)
    return None
