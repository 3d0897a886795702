"""Gantt data from runtime events: rows per worker and per actor, bars, utilisation, critical path.

    events ──► timeline_of() ──► TimelineData ──► Timeline (rich object) ──► draw_timeline (PNG)
                                       └──► chrome_trace() ──► JSON for Perfetto / chrome://tracing

Pure: the functions take event dicts and return plain data, so they are tested with hand-built
events.  A bar runs from a task's ``started`` event to its ``finished`` event; a task still running
ends at ``now``.  Rows are one per worker (``w1``; ``node/w1`` when several nodes ran work) and one
per actor (``Counter …0002``: the class and the shortest tail of its id that tells it apart).  Bars
are named by function, a dataset's by operator (``ReadCSV->Map(f)``; a pool actor's calls by its
operator, ``MapBatches(Model)``), so the legend's colours show the stages overlap.

Utilisation is busy time over ``slots × span``, where ``slots`` is the larger of the rows drawn and
the CPUs the caller says the cluster has.  The critical path is the longest chain of ObjectRef
dependencies, weighted by how long each task ran: no number of workers could finish sooner.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

import networkx as nx

from miniray_magics.figures import actor_names, natural_key
from miniray_magics.graph import display_name, graph_of, operator_of


@dataclass(frozen=True)
class Bar:
    row: str
    name: str
    label: str
    start: float
    end: float
    state: str
    task_id: str

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class TimelineData:
    rows: list[str]
    bars: list[Bar]
    t0: float
    t1: float
    slots: int
    actor_rows: set[str] = field(default_factory=set)
    critical: list[Bar] = field(default_factory=list)

    @property
    def span(self) -> float:
        return max(0.0, self.t1 - self.t0)

    @property
    def busy(self) -> float:
        return sum(bar.duration for bar in self.bars)

    @property
    def utilisation(self) -> float:
        return self.busy / (self.slots * self.span) if self.slots and self.span > 0 else 0.0

    @property
    def critical_seconds(self) -> float:
        return sum(bar.duration for bar in self.critical)

    def row_busy(self, row: str) -> float:
        return sum(bar.duration for bar in self.bars if bar.row == row)

    def caption(self) -> str:
        if not self.bars:
            return "no task ran in this stretch"
        workers = len(self.rows) - len(self.actor_rows)
        parts = [f"{workers} worker{'s' * (workers != 1)}"] if workers or not self.actor_rows else []
        if self.actor_rows:
            parts.append(f"{len(self.actor_rows)} actor{'s' * (len(self.actor_rows) != 1)}")
        who = ", ".join(parts)
        path = " → ".join(bar.label for bar in self.critical[:5])
        if len(self.critical) > 5:
            path += f" → … ({len(self.critical)} tasks)"
        return (f"{who} · {len(self.bars)} tasks in {self.span:.3g} s · utilisation "
                f"{self.utilisation:.0%} ({self.busy:.3g} s busy of {self.slots} × "
                f"{self.span:.3g} s) · critical path {self.critical_seconds:.3g} s: {path}")


def timeline_of(events: Iterable[dict[str, Any]], *, slots: int | None = None,
                window: tuple[float, float] | None = None, now: float | None = None
                ) -> TimelineData:
    """The Gantt chart of ``events``; ``window=(t_from, t_to)`` keeps and clips bars to it."""
    events = list(events)
    graph = graph_of(events, operators=False)
    now = now if now is not None else max((e["ts"] for e in events), default=0.0)
    nodes = {e.get("node_id") for e in events if e["kind"] == "started"}
    open_bars: dict[str, dict] = {}
    raw: list[dict] = []
    actors = actor_names({e["actor_id"]: _class_of(graph, e) for e in events
                          if e["kind"] == "started" and e.get("actor_id")})
    for event in events:
        if event["kind"] == "started":
            task = graph.nodes[event["task_id"]] if event["task_id"] in graph else None
            name = task["name"] if task else "task"
            row = actors.get(event.get("actor_id")) or _row_of(event, len(nodes) > 1)
            kind = task["kind"] if task else "task"
            raw.append(dict(row=row, name=operator_of(name, kind) or display_name(name),
                            label=task["label"] if task else event["task_id"][:8],
                            start=event["ts"], end=None, state="RUNNING",
                            task_id=event["task_id"], actor=bool(event.get("actor_id"))))
            open_bars[event["task_id"]] = raw[-1]
        elif event["kind"] == "finished" and event["task_id"] in open_bars:
            bar = open_bars.pop(event["task_id"])
            bar.update(end=event["ts"], state=event.get("state", "FINISHED"))
    bars, actor_rows = [], set()
    for bar in raw:
        end = bar["end"] if bar["end"] is not None else max(now, bar["start"])
        start = bar["start"]
        if window is not None:
            if end < window[0] or start > window[1]:
                continue
            start, end = max(start, window[0]), min(end, window[1])
        if bar.pop("actor"):
            actor_rows.add(bar["row"])
        bars.append(Bar(**{**bar, "start": start, "end": end}))
    rows = sorted({b.row for b in bars} - actor_rows, key=natural_key) + sorted(actor_rows)
    if window is not None:
        t0, t1 = window
    else:
        t0 = min((b.start for b in bars), default=0.0)
        t1 = max((b.end for b in bars), default=0.0)
    data = TimelineData(rows=rows, bars=bars, t0=t0, t1=t1,
                        slots=max(len(rows), slots or 0), actor_rows=actor_rows)
    data.critical = critical_path(graph, bars)
    return data


def _class_of(graph, started: dict) -> str:
    name = graph.nodes[started["task_id"]]["name"] if started["task_id"] in graph else ""
    return name.split(".")[0] if "." in name else "actor"


def _row_of(started: dict, several_nodes: bool) -> str:
    worker = str(started.get("worker_id"))
    return f"{str(started.get('node_id'))[:6]}/{worker}" if several_nodes else worker


def critical_path(graph: nx.DiGraph, bars: list[Bar]) -> list[Bar]:
    """The heaviest chain of dependent tasks, weighting each task by its time on the bars."""
    length: dict[str, float] = {}
    for bar in bars:
        length[bar.task_id] = length.get(bar.task_id, 0.0) + bar.duration
    last_bar = {bar.task_id: bar for bar in bars}
    best: dict[Any, tuple[float, Any]] = {}  # node -> (heaviest chain ending here, previous node)
    for node in nx.topological_sort(graph):
        before = max(((best[p][0], p) for p in graph.predecessors(node)), default=(0.0, None))
        best[node] = (before[0] + length.get(node, 0.0), before[1])
    if not best:
        return []
    node = max(best, key=lambda n: best[n][0])
    chain = []
    while node is not None:
        if node in last_bar:
            chain.append(last_bar[node])
        node = best[node][1]
    return chain[::-1]


def chrome_trace(data: TimelineData) -> list[dict[str, Any]]:
    """Chrome trace events (``ph: "X"``, microseconds), one ``tid`` per row."""
    tid = {row: i + 1 for i, row in enumerate(data.rows)}
    trace = [{"name": bar.name, "cat": "actor" if bar.row in data.actor_rows else "task",
              "ph": "X", "ts": bar.start * 1e6, "dur": bar.duration * 1e6, "pid": 1,
              "tid": tid[bar.row], "args": {"task_id": bar.task_id, "label": bar.label,
                                            "state": bar.state}} for bar in data.bars]
    trace += [{"name": "thread_name", "ph": "M", "pid": 1, "tid": i, "args": {"name": row}}
              for row, i in tid.items()]
    return trace


class Timeline:
    """A Gantt chart that shows itself as a PNG in a notebook and as text in a terminal."""

    def __init__(self, data: TimelineData, title: str = "timeline"):
        self.data = data
        self.title = title

    def _repr_png_(self) -> bytes:
        from miniray_magics.draw_timeline import render_png

        return render_png(self.data, self.title)

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(self.text())

    def text(self) -> str:
        lines = [f"{self.title}: {self.data.caption()}"]
        for row in self.data.rows:
            bars = [b for b in self.data.bars if b.row == row]
            share = self.data.row_busy(row) / self.data.span if self.data.span else 0.0
            lines.append(f"  {row:<16} {len(bars):>5} tasks  busy {share:>4.0%}")
        return "\n".join(lines)

    def save(self, filename: str) -> str:
        """``.json``: the Chrome trace; ``.png``: the picture."""
        if filename.lower().endswith(".json"):
            with open(filename, "w") as f:
                json.dump(chrome_trace(self.data), f)
            return filename
        from miniray_magics.figures import save_png

        return save_png(self._repr_png_(), filename)
