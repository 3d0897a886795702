"""Real Ray's state, read as miniray's event log: for the magics and the grader on Ray.

    RayEventLog ──► ray.util.state.list_tasks(detail=True)   (tasks, their state changes and
                ├─► ray.util.state.list_objects(detail=True)  Ray's own profile spans)
                └─► ray.cluster_resources()

Every picture and every grading check in miniray reads event dicts shaped as ``miniray.events``
documents them (submitted, started, finished, put).  Ray keeps no such log, so
:class:`RayEventLog` makes one: each refresh lists Ray's tasks and objects and appends a row for
every transition not seen yet (a task's submission, its ``task:execute`` span from Ray's profile
events, the very data ``ray.timeline()`` draws, its end; a ``put`` object).  Rows are only ever
appended, so ``seq`` and ``cursor()`` mean what they mean on miniray.

What Ray does not record, the rows leave empty rather than guess: a task's ``deps`` (Ray's task
records do not list the ObjectRefs a task took) and, unless ``RAY_record_ref_creation_sites=1`` was
set before ``ray.init()``, an object's call site.  Ray reports task events about once a second, so
``wait_for`` waits up to ``settle_s`` for a burst of tasks to show up.

State owned: the synthesized log (``_log``), the keys already logged (``_seen``), the latest
object listing and the time of the last refresh.  Needs ``ray[default]`` (its dashboard serves the
state API); without it, :class:`RayStateUnavailable` says how to install it.  Imports Ray only
when asked to read it; never starts it.
"""
from __future__ import annotations

import sys
import time
from typing import Any

INLINE_LIMIT = 100 * 1024          # Ray keeps objects up to 100 KiB in the owner's memory
PUT_INDEX_FLOOR = 100_000_000      # Ray numbers put objects above its maximum task returns
KIND_OF_TYPE = {"NORMAL_TASK": "task", "ACTOR_TASK": "actor_method",
                "ACTOR_CREATION_TASK": "actor_creation"}
END_STATES = {"FINISHED": "FINISHED", "FAILED": "FAILED"}
NEEDS_DEFAULT = ("reading Ray's state API needs Ray's dashboard: pip install 'ray[default]', "
                 "then restart and call ray.init() again")


class RayStateUnavailable(RuntimeError):
    """Ray runs, but its state API cannot be read (no ``ray[default]``, or no dashboard)."""


def ray_running() -> bool:
    """True when ``ray`` is imported and initialized (never imports Ray itself)."""
    ray = sys.modules.get("ray")
    try:
        return bool(ray is not None and ray.is_initialized())
    except Exception:
        return False


def _gcs_address() -> str | None:
    """The GCS address of the Ray cluster this process is connected to (None: let Ray look)."""
    try:
        return sys.modules["ray"].get_runtime_context().gcs_address
    except Exception:  # noqa: BLE001 - an older Ray, or not connected: Ray's own lookup
        return None


def is_put_object(object_id: str) -> bool:
    """Ray's ObjectID is the task id (24 bytes) and a little-endian 4-byte index."""
    try:
        return int.from_bytes(bytes.fromhex(object_id[-8:]), "little") > PUT_INDEX_FLOOR
    except ValueError:
        return False


class RayEventLog:
    """miniray-shaped events made from a running Ray's public state API (module docstring)."""

    engine = "ray"
    settle_s = 2.5           # Ray flushes task events about once a second
    refresh_s = 0.2          # at most one listing of Ray's state per this many seconds

    def __init__(self):
        self._log: list[dict[str, Any]] = []
        self._seen: set[tuple] = set()
        self._last = 0.0
        self._objects: list[dict[str, Any]] = []

    def initialized(self) -> bool:
        return ray_running()

    def cursor(self) -> int:
        self._refresh()
        return len(self._log)

    def events(self, since: int = 0) -> list[dict[str, Any]]:
        self._refresh()
        return [dict(e) for e in self._log[since:]]

    def list_objects(self) -> list[dict[str, Any]]:
        self._refresh(force=True)
        return [dict(o) for o in self._objects]

    def memory_summary(self) -> dict[str, Any]:
        import ray

        objects = self.list_objects()
        capacity = int(ray.cluster_resources().get("object_store_memory", 0) or 0)
        used = sum(o["object_size"] for o in objects if o["location"] == "shared_memory")
        node = {"node_id": "ray", "capacity": capacity, "used": used, "spilled": 0}
        return {"nodes": [node], "capacity": capacity, "used": used, "spilled": 0,
                "num_objects": len(objects)}

    def num_cpus(self) -> int:
        import ray

        return int(ray.cluster_resources().get("CPU", 0) or 0)

    def wait_for(self, since: int, timeout: float | None = None, min_wait: float = 1.1) -> None:
        """Until every task logged since ``since`` has ended and nothing new came in the last
        look, or ``timeout`` (``settle_s``).  Waits at least ``min_wait``: Ray's flush interval."""
        began = time.monotonic()
        deadline = began + (self.settle_s if timeout is None else timeout)
        count = -1
        while time.monotonic() < deadline:
            self._refresh(force=True)
            rows = self._log[since:]
            started = {e["task_id"] for e in rows if e["kind"] == "submitted"}
            ended = {e["task_id"] for e in rows if e["kind"] == "finished"}
            quiet = len(self._log) == count
            if started <= ended and quiet and time.monotonic() - began >= min_wait:
                return
            count = len(self._log)
            time.sleep(0.25)

    # -- making the log ---------------------------------------------------------------------
    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.refresh_s:
            return
        self._last = now
        if not ray_running():
            return
        try:
            from ray.util.state import list_objects, list_tasks
            # The cluster this driver is connected to, named: without an address Ray's state API
            # guesses by scanning the machine for GCS processes, and refuses when it finds several.
            where = {"address": _gcs_address(), "detail": True, "limit": 10_000,
                     "raise_on_missing_output": False}
            tasks = list_tasks(**where)
            objects = list_objects(**where)
        except ImportError as exc:
            raise RayStateUnavailable(f"{NEEDS_DEFAULT} ({exc})") from exc
        except Exception as exc:   # the dashboard is not running: ray.util.state's own error
            if "dashboard" in str(exc).lower() or "ray[default]" in str(exc):
                raise RayStateUnavailable(NEEDS_DEFAULT) from exc
            raise
        for task in sorted((_as_dict(t) for t in tasks), key=_first_ms):
            self._log_task(task)
        self._objects = self._log_objects([_as_dict(o) for o in objects])

    def _add(self, key: tuple, row: dict[str, Any]) -> None:
        if key in self._seen:
            return
        self._seen.add(key)
        row["seq"] = len(self._log)
        self._log.append(row)

    def _log_task(self, t: dict[str, Any]) -> None:
        kind = KIND_OF_TYPE.get(t.get("type"))
        if kind is None:                       # the driver's own task
            return
        tid, attempt = t["task_id"], t.get("attempt_number", 0)
        states = {e["state"]: e["created_ms"] / 1000 for e in t.get("events") or []}
        name = t.get("func_or_class_name") or t.get("name") or "?"
        if kind == "actor_creation" and not name.endswith("__init__"):
            name = f"{name}.__init__"
        self._add((tid, attempt, "submitted"), {
            "kind": "submitted", "ts": _first_ms(t) / 1000, "task_id": tid, "name": name,
            "type": kind, "actor_id": t.get("actor_id"), "deps": (), "returns": (),
            "call_site": "", "resources": t.get("required_resources") or {}})
        span = _execute_span(t)
        start = span[0] if span else states.get("RUNNING")
        worker = (t.get("worker_id") or "")[:8] or None
        if start is not None:
            self._add((tid, attempt, "started"), {
                "kind": "started", "ts": start, "task_id": tid, "worker_id": worker,
                "pid": t.get("worker_pid"), "node_id": t.get("node_id"), "actor_id": t.get("actor_id")})
        state = END_STATES.get(t.get("state"))
        if state is not None:
            end = span[1] if span else states.get(t["state"], start or time.time())
            self._add((tid, attempt, "finished"), {
                "kind": "finished", "ts": end, "task_id": tid, "state": state,
                "error": t.get("error_type"), "worker_id": worker, "pid": t.get("worker_pid")})

    def _log_objects(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One row per object (Ray lists one per process holding a reference)."""
        by_id: dict[str, dict[str, Any]] = {}
        for o in rows:
            oid, size = o["object_id"], int(o.get("object_size") or 0)
            if size < 0 or o.get("reference_type") == "ACTOR_HANDLE":   # a handle, not data
                continue
            site = o.get("call_site") or ""
            site = "" if site == "disabled" else site
            entry = by_id.setdefault(oid, {
                "object_id": oid, "object_size": size, "reference_type": o.get("reference_type"),
                "location": "shared_memory" if size > INLINE_LIMIT else "inline",
                "node_id": o.get("ip"), "call_site": site or "call sites off", "pid": o.get("pid"),
                "task_id": None, "state": o.get("task_status")})
            entry["object_size"] = max(entry["object_size"], size)
            if is_put_object(oid):
                self._add((oid, "put"), {
                    "kind": "put", "ts": time.time(), "object_id": oid, "size": entry["object_size"],
                    "location": entry["location"], "call_site": site, "pid": o.get("pid"),
                    "node_id": o.get("ip")})
        return list(by_id.values())


def _as_dict(record) -> dict[str, Any]:
    return dict(record) if isinstance(record, dict) else dict(vars(record))


def _first_ms(t: dict[str, Any]) -> float:
    stamps = [e["created_ms"] for e in t.get("events") or []]
    return min(stamps) if stamps else (t.get("creation_time_ms") or time.time() * 1000)


def _execute_span(t: dict[str, Any]) -> tuple[float, float] | None:
    """The ``task:execute`` span of Ray's profile events (what ``ray.timeline()`` draws), in s."""
    for e in (t.get("profiling_data") or {}).get("events") or []:
        if e.get("event_name") == "task:execute":
            return e["start_time"] / 1000, e["end_time"] / 1000
    return None
