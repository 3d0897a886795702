"""The runtime's event log: one append-only list that every picture is drawn from.

    driver .remote()/put ──► submitted / put ─┐
    node scheduler       ──► started/finished ├──► EventLog (driver process) ──► timeline()
    store                ──► stored / freed / ┘        │                           list_objects()
                             spilled / restored        └──► events(since) ──────► miniray_magics

Who writes: the runtime object in the driver process, from the driver thread (submissions, puts) and
from the node's scheduler thread (everything reported by workers and the store).  Workers never hold a
log; what happens in them reaches the node as messages and is logged there, with the worker's own
timestamps.

State owned: ``EventLog._events``, a list of plain dicts, appended under a lock and never mutated
afterwards.  Readers get copies of slices, so a reader never sees a half-written event.

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

Events hold only strings, numbers, tuples and flat dicts, so the garbage collector stops tracking
them: a long log costs nothing at each collection.

The magics and ``miniray.util.state`` read only :func:`events` and :func:`cursor`; they never reach
into the runtime.
"""
from __future__ import annotations

import threading
import time
from typing import Any

KINDS = ("submitted", "started", "finished", "put", "stored", "freed", "spilled", "restored", "copied",
         "lost", "reconstructing")
_KINDS = frozenset(KINDS)


class EventLog:
    """An append-only, thread-safe list of events, handed out as fresh dicts.  Each is kept as
    (field names, values): two tuples, the names shared by every event of the same shape, which
    the collector soon stops tracking; a tracked dict per event made every collection slower."""

    def __init__(self, max_events: int = 2_000_000):
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._max = max_events
        self._dict_fields: set = {"resources"}   # fields that were dicts, stored as pairs (a
        # submitted event's resources come as pairs already: the node emits thousands a second)
        self._schemas: dict = {}          # field-name tuple -> the one shared copy of it
        self.dropped = 0

    def emit(self, kind: str, ts: float | None = None, **fields: Any) -> None:
        if kind not in _KINDS:
            raise ValueError(f"unknown event kind {kind!r}; expected one of {KINDS}")
        names, values = tuple(fields), tuple(fields.values())
        if dict in map(type, values):    # a dict stays tracked by the collector: keep its pairs instead
            values = tuple(tuple(v.items()) if type(v) is dict else v for v in values)
            self._dict_fields.update(k for k, v in fields.items() if type(v) is dict)
        keys = self._schemas.get(names)
        if keys is None:
            keys = self._schemas[names] = ("kind", "ts", "seq") + names
        with self._lock:
            seq = len(self._events)
            if seq >= self._max:
                self.dropped += 1
                return
            self._events.append((keys, (kind, time.time() if ts is None else ts, seq) + values))

    def _append(self, fields: dict) -> None:
        keys = tuple(fields)
        self._events.append((self._schemas.setdefault(keys, keys), tuple(fields.values())))

    def extend(self, events: list[dict[str, Any]]) -> None:
        """Append events built elsewhere (already holding kind and ts), keeping their order."""
        with self._lock:
            for event in events:
                if len(self._events) >= self._max:
                    self.dropped += 1
                    continue
                event["seq"] = len(self._events)
                self._append(event)

    def since(self, seq: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            stored = self._events[seq:]
        out, as_dicts = [dict(zip(keys, values)) for keys, values in stored], self._dict_fields
        for event in out:
            for k in as_dicts.intersection(event):
                if type(event[k]) is tuple:
                    event[k] = dict(event[k])
        return out

    def __len__(self) -> int:
        return len(self._events)


def _log() -> EventLog:
    from miniray.runtime import current_runtime

    return current_runtime().events


def events(since: int = 0) -> list[dict[str, Any]]:
    """Copies of the events with ``seq >= since``, oldest first."""
    return _log().since(since)


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
        row = f"actor {s['actor_id'][:8]}" if s.get("actor_id") else s["worker_id"]
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
