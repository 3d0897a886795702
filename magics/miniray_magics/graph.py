"""The task graph as data: a networkx DiGraph built from runtime events, and its collapsed form.

    events (submitted, started, finished, put) ──► graph_of() ──► TaskGraph (a networkx.DiGraph)
                                                                      │ max_nodes exceeded
                                                                      ▼
                                                                  collapse() ──► TaskGraph of groups

Pure functions only: nothing here talks to the runtime, so tests and exercises can feed hand-built
event dicts.  Drawing lives in :mod:`miniray_magics.draw_graph` and is imported only when a picture
is asked for.

Nodes are keyed by ``task_id`` (tasks, actor calls, actor creations) or by ``object_id`` (``put``
objects, and objects from outside the events that a task took as an argument).  Node attributes:

``label``     ``my_function #1``: the name and the call's number among calls of that name (from 1,
              written with ``#`` so it cannot be read as the call's argument)
``name``      function or method name as submitted (``Counter.__init__`` is labelled ``Counter(0)``)
``kind``      "task" | "actor_method" | "actor_creation" | "put" | "external"
``state``     "PENDING" | "RUNNING" | "FINISHED" | "FAILED" | "CANCELLED"; "READY" for objects
``worker``    worker id that ran it (or None); ``node``: node id (or None)
``actor``     actor id for actor calls and creations, else None
``seq``       position of the submission in the log (keeps layouts stable)
``start``/``end``  timestamps of started/finished (or None); ``error``: exception class name
``count``     1, or the number of calls a collapsed node stands for (with ``states``, a count per
              state)
Operators: a task named like a Ray Data operator (``ReadCSV->Map(add_fare)``, ``Sort(x) map``: a
capitalised name, optionally with ``(...)`` or ``[...]``, chained by ``->``, optionally followed by a
lower-case step), or a call of an actor class named so (``MapBatches(Model).__call__``), is one
block's work of that operator.  ``graph_of`` always draws such calls collapsed, one node per operator
with the count of its block tasks, whatever ``max_nodes`` says; the ``miniray.put`` objects only
those calls read (the operator's functions, an actor pool's handles) join the operator's node.

Edges run from the producer of an ObjectRef to the task that took it, with ``object_ids`` (a list)
and ``count``.
"""
from __future__ import annotations

import re

from collections import Counter, defaultdict
from typing import Any, Iterable

import networkx as nx

TASK_KINDS = ("task", "actor_method", "actor_creation")
STATES = ("FINISHED", "FAILED", "RUNNING", "PENDING", "CANCELLED", "READY", "RESTORED")


class TaskGraph(nx.DiGraph):
    """A networkx DiGraph of one stretch of work that shows itself as a PNG in a notebook."""

    def _repr_png_(self) -> bytes:
        from miniray_magics.draw_graph import render_png

        return render_png(self)

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(self.summary())

    def summary(self) -> str:
        """One line: how many calls of what, in what state."""
        calls = Counter()
        states = Counter()
        for _, data in self.nodes(data=True):
            calls[data["name"]] += data["count"]
            for state, n in data.get("states", {data["state"]: 1}).items():
                states[state] += n
        parts = ", ".join(f"{n} × {name}" for name, n in calls.most_common(6))
        more = "" if len(calls) <= 6 else f", … ({len(calls) - 6} more names)"
        state_text = ", ".join(f"{n} {s.lower()}" for s, n in states.most_common())
        return (f"TaskGraph: {self.number_of_nodes()} nodes, {self.number_of_edges()} edges"
                f" ({parts}{more}; {state_text})")


_DASK_KEY = re.compile(r"^\(?'?([A-Za-z_][\w.-]*?)(?:-[0-9a-f]{8,})?'?(?:,.*\))?$")


_OP = r"[A-Z][A-Za-z0-9]*(?:\((?:[^()]|\([^()]*\))*\)|\[[^\]]*\])?"
_OPERATOR = re.compile(rf"^{_OP}(?:->{_OP})*(?: [a-z]+)?$")
_POOL = re.compile(rf"^(?P<op>{_OP}(?:->{_OP})*)\.\w+$")


def operator_of(name: str, kind: str = "task") -> str | None:
    """The Ray Data operator a call belongs to (see the module docstring), or None."""
    if kind == "task":
        return name if _OPERATOR.match(name) else None
    m = _POOL.match(name) if kind in ("actor_method", "actor_creation") else None
    if m and ("(" in m["op"] or "[" in m["op"] or "->" in m["op"]):   # not a plain ``Counter.incr``
        return m["op"] + (" actors" if kind == "actor_creation" else "")
    return None


def display_name(name: str) -> str:
    """``Counter.__init__`` reads as ``Counter``; a Dask key such as ``('add-3f2a…', 0, 1)`` reads as
    ``add``, so the calls of one Dask operation group together; everything else keeps its name."""
    if name.endswith(".__init__"):
        return name[: -len(".__init__")]
    m = _DASK_KEY.match(name)
    return m.group(1) if m and ("-" in name or name.startswith("(")) else name


def call_label(name: str, index: int) -> str:
    """``add #3``: the third call of ``add`` (``index`` counts from 0)."""
    return f"{name} #{index + 1}"


def graph_of(events: Iterable[dict[str, Any]], max_nodes: int | None = None,
             operators: bool = True) -> TaskGraph:
    """The DAG of everything submitted in ``events``; collapsed by function above ``max_nodes``;
    dataset operators' calls collapsed into one node each unless ``operators=False``."""
    graph = TaskGraph()
    producer: dict[str, str] = {}  # object id -> node key of whoever made it
    numbering: Counter = Counter()
    wanted: dict[str, list[str]] = {}  # task node -> object ids it took
    steps: list[dict] = []  # workflow_step events: saved steps read back, steps run as tasks
    for event in events:
        kind = event["kind"]
        if kind == "workflow_step":
            steps.append(event)
        elif kind == "submitted":
            name = event["name"]
            label_name = display_name(name)
            key = event["task_id"]
            graph.add_node(key, label=call_label(label_name, numbering[label_name]), name=name,
                           kind=event.get("type", "task"), state="PENDING", worker=None, node=None,
                           actor=event.get("actor_id"), seq=event["seq"], start=None, end=None,
                           error=None, call_site=event.get("call_site"), count=1)
            numbering[label_name] += 1
            for oid in event.get("returns") or ():
                producer[oid] = key
            wanted[key] = list(event.get("deps") or ())
        elif kind == "put":
            key = event["object_id"]
            graph.add_node(key, label=call_label("put", numbering["put"]), name="put", kind="put",
                           state="READY", worker=None, node=event.get("node_id"), actor=None,
                           seq=event["seq"], start=event["ts"], end=event["ts"], error=None,
                           call_site=event.get("call_site"), size=event.get("size"), count=1)
            numbering["put"] += 1
            producer[key] = key
        elif kind == "started" and event["task_id"] in graph:
            node = graph.nodes[event["task_id"]]
            if node["state"] == "PENDING":  # a retry keeps its first start
                node.update(state="RUNNING", start=event["ts"])
            node.update(worker=event.get("worker_id"), node=event.get("node_id"))
        elif kind == "finished" and event["task_id"] in graph:
            node = graph.nodes[event["task_id"]]
            node.update(state=event.get("state", "FINISHED"), end=event["ts"],
                        error=event.get("error"))
            if event.get("worker_id"):
                node["worker"] = event["worker_id"]
    _add_edges(graph, producer, wanted)
    _add_workflow_steps(graph, steps)
    if operators and any(operator_of(d["name"], d["kind"]) for _, d in graph.nodes(data=True)):
        graph = collapse_operators(graph)
    if max_nodes is not None and graph.number_of_nodes() > max_nodes and not graph.graph.get(
            "collapsed"):
        return collapse(graph, max_nodes)
    return graph


def _add_edges(graph: TaskGraph, producer: dict[str, str], wanted: dict[str, list[str]]) -> None:
    externals = Counter()
    for consumer, oids in wanted.items():
        for oid in oids:
            source = producer.get(oid)
            if source is None:  # made before these events: show it as an outside input
                source = oid
                if oid not in graph:
                    graph.add_node(oid, label=call_label("input", externals["input"]), name="input",
                                   kind="external", state="READY", worker=None, node=None,
                                   actor=None, seq=-1, start=None, end=None, error=None,
                                   call_site=None, count=1)
                    externals["input"] += 1
                    producer[oid] = oid
            if graph.has_edge(source, consumer):
                edge = graph.edges[source, consumer]
                edge["object_ids"].append(oid)
                edge["count"] += 1
            else:
                graph.add_edge(source, consumer, object_ids=[oid], count=1)


def _add_workflow_steps(graph: TaskGraph, steps: list[dict]) -> None:
    """A resumed workflow: steps read back from storage become RESTORED nodes, joined to the steps
    (tasks) that take their saved outputs.  Workflow steps are labelled with their task ids, the names
    their outputs have in storage."""
    node_of = {}
    for e in steps:
        key = (e["workflow_id"], e["step"])
        if e["how"] == "ran" and e.get("task") in graph:
            node_of[key] = e["task"]
            graph.nodes[e["task"]]["label"] = e["step"]
        elif e["how"] == "restored":
            node = node_of[key] = f"{e['workflow_id']}/{e['step']}"
            graph.add_node(node, label=e["step"], name=e["name"], kind="task", state="RESTORED", worker=None,
                           node=None, actor=None, seq=e["seq"], start=None, end=None, error=None,
                           call_site=None, count=1)
    for e in steps:
        target = node_of.get((e["workflow_id"], e["step"]))
        for dep in e.get("deps") or ():
            source = node_of.get((e["workflow_id"], dep))
            if target and source and not graph.has_edge(source, target):
                graph.add_edge(source, target, object_ids=[], count=1)


def graph_of_dag(root) -> TaskGraph:
    """The graph of a DAG that has not run: built from its bound nodes (miniray.dag or ray.dag),
    every node PENDING, arrows from inputs to the nodes that take them."""
    graph, numbering, seen, stack = TaskGraph(), Counter(), {}, [root]
    order = []
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = f"dag{len(seen)}"
        order.append(node)
        stack.extend(_dag_children(node))
    for seq, node in enumerate(reversed(order)):
        name, kind = _dag_name(node)
        key = seen[id(node)]
        label = name if kind in ("input", "external") else f"{display_name(name)}({numbering[name]})"
        numbering[name] += kind not in ("input", "external")
        graph.add_node(key, label=label, name=name, kind=kind, state="READY" if kind == "external" else
                       "PENDING", worker=None, node=None, actor=None, seq=seq, start=None, end=None,
                       error=None, call_site=None, count=1)
    for node in order:
        for child in _dag_children(node):
            graph.add_edge(seen[id(child)], seen[id(node)], object_ids=[], count=1)
    return graph


def _dag_children(node) -> list:
    if hasattr(node, "children"):                      # miniray.dag
        return list(node.children())
    return list(node._get_all_child_nodes())           # ray.dag


def _dag_name(node) -> tuple[str, str]:
    cls = type(node).__name__
    label = node.label() if hasattr(node, "label") else getattr(getattr(node, "_body", None), "__name__", cls)
    kind = {"ClassNode": "actor_creation", "ClassMethodNode": "actor_method", "InputNode": "external",
            "InputAttributeNode": "external", "MultiOutputNode": "external"}.get(cls, "task")
    if cls == "ClassNode":
        label = f"{label}.__init__"
    return label, kind


def generations(graph: nx.DiGraph) -> dict[Any, int]:
    """Layer of each node: its topological generation (cycles, only possible after collapsing, are
    first condensed into one strongly connected component)."""
    if nx.is_directed_acyclic_graph(graph):
        return {n: i for i, gen in enumerate(nx.topological_generations(graph)) for n in gen}
    condensed = nx.condensation(graph)
    layer_of = {c: i for i, gen in enumerate(nx.topological_generations(condensed)) for c in gen}
    return {n: layer_of[c] for n, c in condensed.graph["mapping"].items()}


def summary_state(states: Counter) -> str:
    """The state a group of calls is drawn in: any failure shows, then unfinished work."""
    for state in ("FAILED", "CANCELLED", "RUNNING", "PENDING", "FINISHED", "RESTORED", "READY"):
        if states.get(state):
            return state
    return "FINISHED"


def collapse(graph: TaskGraph, max_nodes: int) -> TaskGraph:
    """Merge calls of one function (per actor) into one node with a count.

    Calls are first grouped by function *and* layer, so a map then a reduction keeps its shape;
    if that is still too many nodes, by function alone (self-loops then become ``inner_edges``).
    """
    layer = generations(graph)
    grouped = _grouped(graph, lambda n, d: (display_name(d["name"]), d["kind"], d["actor"], layer[n]))
    if grouped.number_of_nodes() > max_nodes:
        grouped = _grouped(graph, lambda n, d: (display_name(d["name"]), d["kind"], d["actor"]))
    return grouped


def collapse_operators(graph: TaskGraph) -> TaskGraph:
    """One node per dataset operator (its block tasks, across layers and actors, with a count);
    a ``put`` (or an outside input) read only by one operator's calls joins it; every other node stays as it is."""
    group = {}
    for node, data in graph.nodes(data=True):
        op = operator_of(data["name"], data["kind"])
        if op is not None:
            group[node] = ("operator", op)
    for node, data in graph.nodes(data=True):
        readers = {group.get(s) for s in graph.successors(node)}
        if data["kind"] in ("put", "external") and len(readers) == 1 and None not in readers:
            group[node] = readers.pop()
    out = _grouped(graph, lambda n, d: group.get(n, ("node", n)), op_names={k: k[1] for k in
                   set(group.values())})
    out.graph["collapsed"] = True
    return out


def _grouped(graph: TaskGraph, key_of, op_names=None) -> TaskGraph:
    members: dict[tuple, list] = defaultdict(list)
    for node, data in graph.nodes(data=True):
        members[key_of(node, data)].append(node)
    out = TaskGraph(collapsed=True)
    group_of = {}
    for index, (key, nodes) in enumerate(sorted(members.items(), key=lambda kv: min(
            graph.nodes[n]["seq"] for n in kv[1]))):
        datas = [graph.nodes[n] for n in nodes]
        first = min(datas, key=lambda d: d["seq"])
        states = Counter(d["state"] for d in datas)
        workers = Counter(d["worker"] for d in datas if d["worker"])
        starts = [d["start"] for d in datas if d["start"] is not None]
        ends = [d["end"] for d in datas if d["end"] is not None]
        op = (op_names or {}).get(key)
        if op is not None:   # an operator: its calls, not counting the puts that joined it
            datas = [d for d in datas if d["kind"] not in ("put", "external")]
            first = min(datas, key=lambda d: d["seq"])
            states = Counter(d["state"] for d in datas)
        name = op or display_name(first["name"])
        label = f"{name} ×{len(datas)}" if op or len(nodes) > 1 else first["label"]
        group_key = f"group{index}:{name}"
        out.add_node(group_key, label=label, name=first["name"], kind=first["kind"],
                     state=summary_state(states), states=dict(states),
                     worker=workers.most_common(1)[0][0] if len(workers) == 1 else
                     (None if not workers else "several"),
                     workers=dict(workers), node=first["node"],
                     actor=None if op else first["actor"],
                     seq=first["seq"], start=min(starts, default=None), end=max(ends, default=None),
                     error=next((d["error"] for d in datas if d["error"]), None),
                     call_site=first["call_site"], count=len(datas), members=nodes, inner_edges=0,
                     operator=op)
        for node in nodes:
            group_of[node] = group_key
    for src, dst, data in graph.edges(data=True):
        a, b = group_of[src], group_of[dst]
        if a == b:
            out.nodes[a]["inner_edges"] += data["count"]
        elif out.has_edge(a, b):
            out.edges[a, b]["count"] += data["count"]
            out.edges[a, b]["object_ids"].extend(data["object_ids"])
        else:
            out.add_edge(a, b, count=data["count"], object_ids=list(data["object_ids"]))
    return out
