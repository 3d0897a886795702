"""Drawing a TaskGraph: layered layout from networkx, boxes and arrows with matplotlib, PNG out.

    TaskGraph ──► layout() ──► {node: (x, y)}, actor lanes ──► render_png() ──► PNG bytes

Layers are networkx topological generations (see :func:`miniray_magics.graph.generations`); calls of
one actor also get layout-only edges in submission order, so each actor's calls form one lane, in
the order the actor ran them.  Within a layer, tasks are ordered by the mean position of their
inputs (one barycentre pass), which keeps reduction trees untangled.  Drawing preferences travel in
``graph.graph``: ``layout`` ("lr" or "tb"), ``color`` ("state" or "worker") and ``title``.
"""
from __future__ import annotations

import math
from collections import defaultdict

import networkx as nx

from miniray_magics.figures import (STATE_COLOURS, actor_names, colour_cycle, natural_key, new_figure,
                                    png_bytes, shorten)
from miniray_magics.graph import generations

MAIN_GAP = {"lr": 2.5, "tb": 1.25}    # distance between layers, in layout units
CROSS_GAP = {"lr": 1.0, "tb": 2.4}    # distance between neighbours in a layer
BOX_W, BOX_H = 2.0, 0.62
INCH_PER_UNIT = 0.7
MAX_INCHES = 30.0
SEVERAL = "#dddddd"


def layout(graph: nx.DiGraph, direction: str = "lr") -> tuple[dict, dict]:
    """Positions ``{node: (x, y)}`` and actor lanes ``{actor_id: (cross, label)}``."""
    shaped = nx.DiGraph(graph.edges)
    shaped.add_nodes_from(graph.nodes)
    calls_by_actor = defaultdict(list)
    for node, data in graph.nodes(data=True):
        if data.get("actor"):
            calls_by_actor[data["actor"]].append(node)
    for calls in calls_by_actor.values():
        calls.sort(key=lambda n: graph.nodes[n]["seq"])
        shaped.add_edges_from(zip(calls, calls[1:]))
    layer = generations(shaped)

    cross: dict = {}
    by_layer = defaultdict(list)
    for node, lay in layer.items():
        if not graph.nodes[node].get("actor"):
            by_layer[lay].append(node)
    widest = max((len(nodes) for nodes in by_layer.values()), default=0)
    for lay in sorted(by_layer):
        nodes = sorted(by_layer[lay], key=lambda n: graph.nodes[n]["seq"])
        guess = {n: i - (len(nodes) - 1) / 2 for i, n in enumerate(nodes)}

        def barycentre(n):
            placed = [cross[p] for p in graph.predecessors(n) if p in cross]
            return (sum(placed) / len(placed)) if placed else guess[n]

        nodes.sort(key=lambda n: (barycentre(n), graph.nodes[n]["seq"]))
        for i, n in enumerate(nodes):
            cross[n] = i - (len(nodes) - 1) / 2

    lanes = {}
    next_lane = (widest - 1) / 2 + 1.4 if widest else 0.0
    for actor, calls in sorted(calls_by_actor.items(),
                               key=lambda kv: graph.nodes[kv[1][0]]["seq"]):
        taken = defaultdict(int)
        for n in calls:
            cross[n] = next_lane + 0.75 * taken[layer[n]]
            taken[layer[n]] += 1
        depth = max(taken.values())
        first = graph.nodes[calls[0]]
        owner = first["name"].split(".")[0] if "." in first["name"] else "actor"
        lanes[actor] = (next_lane, owner, depth)
        next_lane += 1 + 0.75 * (depth - 1)
    names = actor_names({actor: text for actor, (_, text, _) in lanes.items()})
    lanes = {a: (lane, names[a].replace(" ", "\n", 1), depth) for a, (lane, _, depth) in lanes.items()}

    pos = {}
    for node in graph.nodes:
        main = layer[node] * MAIN_GAP[direction]
        side = cross[node] * CROSS_GAP[direction]
        pos[node] = (main, -side) if direction == "lr" else (side, -main)
    return pos, lanes


def node_colours(graph: nx.DiGraph, color: str) -> tuple[dict, dict]:
    """Fill colour per node, and the legend entries ``{label: colour}`` that explain them."""
    fills, legend = {}, {}
    if color == "worker":
        workers = sorted({d["worker"] for _, d in graph.nodes(data=True)
                          if d["worker"] and d["worker"] != "several"}, key=natural_key)
        palette = colour_cycle(workers)
        for node, data in graph.nodes(data=True):
            if data["kind"] in ("put", "external"):
                fills[node] = legend["object"] = STATE_COLOURS["READY"]
            elif data["worker"] == "several":
                fills[node] = legend["several workers"] = SEVERAL
            elif data["worker"]:
                fills[node] = legend[data["worker"]] = palette[data["worker"]]
            else:
                fills[node] = legend["not started"] = STATE_COLOURS["PENDING"]
        order = [w for w in workers if w in legend] + [k for k in legend if k not in workers]
        return fills, {k: legend[k] for k in order}
    for node, data in graph.nodes(data=True):
        state = data["state"]
        fills[node] = STATE_COLOURS.get(state, SEVERAL)
        for each in data.get("states") or {state: 1}:
            legend["object" if each == "READY" else each.lower()] = STATE_COLOURS.get(each, SEVERAL)
    order = [s.lower() for s in STATE_COLOURS] + ["object"]
    return fills, {k: legend[k] for k in order if k in legend}


SHORT_STATE = {"FINISHED": "done", "FAILED": "failed", "RUNNING": "running",
               "PENDING": "pending", "CANCELLED": "cancelled", "READY": "ready"}


def _count_text(data: dict) -> str | None:
    """``9998 done · 2 failed`` under a collapsed node's label."""
    states = data.get("states")
    if data.get("count", 1) <= 1 or not states:
        return None
    return " · ".join(f"{n} {SHORT_STATE.get(s, s.lower())}"
                      for s, n in sorted(states.items(), key=lambda kv: -kv[1]))


def _box_label(data: dict) -> tuple[str, float]:
    """The text in a node's box and its size relative to the font: a dataset operator's long name
    (``ReadCSV->Map(add_fare)``) goes on two smaller lines, broken after an arrow or a space."""
    op = data.get("operator")
    if not op or len(op) <= 20:
        return shorten(op or data["label"], 20), 1.0
    cut = max(op.rfind("->", 0, 24), op.rfind(" ", 0, 24))
    head, tail = (op[:cut], op[cut:].lstrip()) if cut > 0 else (op[:20], op[20:])
    return f"{shorten(head, 24)}\n{shorten(tail, 24)}", 0.8


def render_png(graph: nx.DiGraph) -> bytes:
    """The graph as a PNG: boxes coloured by state or worker, arrows for ObjectRef dependencies."""
    from matplotlib.patches import FancyBboxPatch, Patch, Rectangle

    direction = graph.graph.get("layout", "lr")
    color = graph.graph.get("color", "state")
    title = graph.graph.get("title") or _default_title(graph)
    if graph.number_of_nodes() == 0:
        fig = new_figure(5, 1.2)
        fig.text(0.5, 0.5, "nothing was submitted", ha="center", va="center", fontsize=12)
        fig.suptitle(title, fontsize=11)
        return png_bytes(fig)

    pos, lanes = layout(graph, direction)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    pad = 0.35
    label_room = 1.9 if lanes and direction == "lr" else 0.0
    x0, x1 = min(xs) - BOX_W / 2 - pad - label_room, max(xs) + BOX_W / 2 + pad
    y0, y1 = min(ys) - BOX_H / 2 - pad, max(ys) + BOX_H / 2 + pad + (0.6 if lanes and
                                                                         direction == "tb" else 0)
    scale = min(INCH_PER_UNIT, MAX_INCHES / (x1 - x0), MAX_INCHES / (y1 - y0))
    legend_in, title_in = 0.45, 0.45
    width_in = max((x1 - x0) * scale, 4.0, 0.09 * len(title) + 0.5)
    height_in = (y1 - y0) * scale + legend_in + title_in
    fig = new_figure(width_in, height_in)
    fig.set_layout_engine(None)
    ax = fig.add_axes([0, legend_in / height_in, 1, (y1 - y0) * scale / height_in])
    half_extra = (width_in / scale - (x1 - x0)) / 2
    ax.set_xlim(x0 - half_extra, x1 + half_extra)
    ax.set_ylim(y0, y1)
    ax.axis("off")
    font = max(3.0, 9.0 * scale / INCH_PER_UNIT)

    for actor, (lane, text, depth) in lanes.items():
        span = CROSS_GAP[direction] * (1 + 0.75 * (depth - 1))
        centre = -(lane + 0.375 * (depth - 1)) * CROSS_GAP[direction]
        if direction == "lr":
            ax.add_patch(Rectangle((x0, centre - span / 2), x1 - x0, span, color="#f3f0e6",
                                   zorder=0))
            ax.text(x0 + 0.1, centre, text, ha="left", va="center", fontsize=font * 0.9,
                    style="italic", color="#555555")
        else:
            centre = -centre
            ax.add_patch(Rectangle((centre - span / 2, y0), span, y1 - y0, color="#f3f0e6",
                                   zorder=0))
            ax.text(centre, y1 - 0.1, text.replace("\n", " "), ha="center", va="top",
                    fontsize=font * 0.9, style="italic", color="#555555")

    fills, legend = node_colours(graph, color)
    for src, dst, data in graph.edges(data=True):
        _draw_edge(ax, pos[src], pos[dst], direction, data.get("count", 1), font)
    for node, data in graph.nodes(data=True):
        x, y = pos[node]
        external = data["kind"] == "external"
        box = FancyBboxPatch((x - BOX_W / 2, y - BOX_H / 2), BOX_W, BOX_H,
                             boxstyle="square,pad=0" if data["kind"] in ("put", "external")
                             else "round,pad=0,rounding_size=0.15",
                             facecolor="white" if external else fills[node],
                             edgecolor="#333333", linestyle="--" if external else "-",
                             linewidth=1.6 if data.get("actor") else 0.8, zorder=2)
        ax.add_patch(box)
        counts = _count_text(data)
        if counts and color == "state" and len(data["states"]) > 1:
            _fill_by_state(ax, box, x, y, data["states"])
        text, size = _box_label(data)
        if data.get("operator"):   # a dataset operator: its name, then how many block tasks
            n = data["count"]
            tasks = f"{n} task{'s' * (n != 1)}"
            counts = f"{tasks}: {counts}" if set(data["states"]) - {"FINISHED"} else f"{tasks}, done"
        two = "\n" in text
        ax.text(x, y + (BOX_H * (0.2 if two else 0.17) if counts else 0), text, ha="center",
                va="center", fontsize=font * size, zorder=3, linespacing=1.0)
        if counts:
            ax.text(x, y - BOX_H * (0.3 if two else 0.24), shorten(counts, 30), ha="center", va="center",
                    fontsize=font * 0.72, zorder=3)

    handles = [Patch(facecolor=c, edgecolor="#333333", label=k) for k, c in legend.items()]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), frameon=False,
               fontsize=9, bbox_to_anchor=(0.5, 0.0))
    fig.text(0.5, 1 - (title_in / 2) / height_in, title, ha="center", va="center", fontsize=11)
    return png_bytes(fig)


def _fill_by_state(ax, box, x, y, states: dict) -> None:
    """Split a collapsed node's box into bands as wide as the share of calls in each state."""
    from matplotlib.patches import Rectangle

    total = sum(states.values())
    left = x - BOX_W / 2
    for state in STATE_COLOURS:
        share = states.get(state, 0) / total
        if share:
            band = Rectangle((left, y - BOX_H / 2), BOX_W * share, BOX_H, zorder=2.5,
                             facecolor=STATE_COLOURS[state], edgecolor="none")
            ax.add_patch(band)
            band.set_clip_path(box)
            left += BOX_W * share


def _draw_edge(ax, src, dst, direction, count, font) -> None:
    if direction == "lr":
        start, end = (src[0] + BOX_W / 2, src[1]), (dst[0] - BOX_W / 2, dst[1])
        backwards = dst[0] <= src[0]
    else:
        start, end = (src[0], src[1] - BOX_H / 2), (dst[0], dst[1] + BOX_H / 2)
        backwards = dst[1] >= src[1]
    width = min(2.5, 0.8 + 0.5 * math.log10(count))
    ax.annotate("", xy=end, xytext=start, zorder=1,
                arrowprops=dict(arrowstyle="-|>", color="#555555", lw=width, shrinkA=0,
                                shrinkB=0, mutation_scale=8 + width * 2,
                                connectionstyle="arc3,rad=0.35" if backwards else "arc3,rad=0"))
    if count > 1:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, f"×{count}", fontsize=font * 0.8,
                ha="center", va="center", color="#333333", zorder=1.5,
                bbox=dict(boxstyle="round,pad=0.1", facecolor="white", edgecolor="none"))


def _default_title(graph: nx.DiGraph) -> str:
    calls = sum(d.get("count", 1) for _, d in graph.nodes(data=True)
                if d["kind"] not in ("put", "external"))
    puts = sum(d.get("count", 1) for _, d in graph.nodes(data=True) if d["kind"] == "put")
    edges = sum(d.get("count", 1) for _, _, d in graph.edges(data=True))
    text = f"{calls} call{'s' * (calls != 1)}, {puts} put{'s' * (puts != 1)}, " \
           f"{edges} dependenc{'ies' if edges != 1 else 'y'}"
    if graph.graph.get("collapsed"):
        text += f" (collapsed to {graph.number_of_nodes()} nodes)"
    if graph.graph.get("note"):
        text += f"; {graph.graph['note']}"
    return text
