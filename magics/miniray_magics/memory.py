"""Object store use as data and tables: grouped by object, node or call site.

    list_objects() ─┐
                    ├─► memory_report(by=...) ──► MemoryReport ──► PNG (draw_memory), HTML, text
    memory_summary()┘

Pure: :func:`memory_report` takes the dicts that ``miniray.util.state.list_objects()`` and
``memory_summary()`` return, so tests feed it hand-built ones.  Each entry keeps its bytes split by
where they live (``inline`` in the owner's heap, ``shared_memory`` in the node's store, ``spilled``
to disk) and counts the reference types holding it.
"""
from __future__ import annotations

import base64
import html
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from miniray_magics.figures import fmt_bytes, short_ids

LOCATIONS = ("inline", "shared_memory", "spilled")
GROUPINGS = ("object", "node", "callsite")
# Ray's names for what keeps an object alive, and what each means for a student.
REFERENCE_TYPES = {
    "LOCAL_REFERENCE": "a variable in your program still holds its ObjectRef",
    "PINNED_IN_MEMORY": "an array you got back is a zero-copy view of it: it stays until that "
                        "array is gone",
    "USED_BY_PENDING_TASK": "a task that has not finished yet takes it as an argument",
    "CAPTURED_IN_OBJECT": "another object in the store holds its ObjectRef",
}


@dataclass
class MemoryEntry:
    key: str
    label: str
    size: int = 0
    count: int = 0
    parts: dict[str, int] = field(default_factory=dict)
    reference_types: Counter = field(default_factory=Counter)
    nodes: set[str] = field(default_factory=set)
    call_sites: set[str] = field(default_factory=set)

    def add(self, obj: dict[str, Any]) -> None:
        size = int(obj.get("object_size") or 0)
        location = obj.get("location") or "shared_memory"
        self.size += size
        self.count += 1
        self.parts[location] = self.parts.get(location, 0) + size
        self.reference_types[obj.get("reference_type") or "?"] += 1
        self.nodes.add(str(obj.get("node_id") or "?"))
        self.call_sites.add(obj.get("call_site") or "?")

    @property
    def reference_text(self) -> str:
        return ", ".join(t if n == 1 else f"{t} ×{n}" for t, n in self.reference_types.most_common())


@dataclass
class MemoryReport:
    by: str
    entries: list[MemoryEntry]
    nodes: list[dict[str, Any]]
    capacity: int
    used: int
    spilled: int
    top: int = 12

    def _repr_png_(self) -> bytes:
        from miniray_magics.draw_memory import render_png

        return render_png(self)

    def _repr_html_(self) -> str:
        picture = base64.b64encode(self._repr_png_()).decode("ascii")
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.columns())
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                       for row in self.rows())
        legend = "".join(f"<li><code>{t}</code>: {html.escape(m)}</li>"
                         for t, m in self.reference_legend().items())
        legend = f"<ul>{legend}</ul>" if legend else ""
        return (f'<div class="miniray-memory"><img src="data:image/png;base64,{picture}" '
                f'alt="object store memory"/><table><thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table>{legend}</div>")

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(self.text())

    def headline(self) -> str:
        share = f" ({self.used / self.capacity:.1%})" if self.capacity else ""
        return (f"object store: {fmt_bytes(self.used)} used of {fmt_bytes(self.capacity)}{share}"
                f", {fmt_bytes(self.spilled)} spilled, "
                f"{sum(e.count for e in self.entries)} objects on {len(self.nodes)} node(s)")

    def columns(self) -> list[str]:
        first = {"object": "object", "node": "node", "callsite": "call site"}[self.by]
        columns = [first, "size", "objects", "inline", "shared", "spilled", "references"]
        if self.by != "callsite":
            columns.append("call site")
        return columns

    def rows(self) -> list[list[str]]:
        out = []
        for entry in self.entries:
            row = [entry.label, fmt_bytes(entry.size), str(entry.count)]
            row += [fmt_bytes(entry.parts[loc]) if entry.parts.get(loc) else "–" for loc in LOCATIONS]
            row.append(entry.reference_text)
            if self.by != "callsite":
                row.append(", ".join(sorted(entry.call_sites)))
            out.append(row)
        return out

    def reference_legend(self) -> dict[str, str]:
        """What each reference type shown means, in the order of REFERENCE_TYPES."""
        shown = set().union(*(e.reference_types for e in self.entries)) if self.entries else set()
        return {t: REFERENCE_TYPES[t] for t in REFERENCE_TYPES if t in shown}

    def text(self) -> str:
        table = [self.columns()] + self.rows()
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        lines = [self.headline()]
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                  for row in table]
        lines += [f"  {t}: {meaning}" for t, meaning in self.reference_legend().items()]
        return "\n".join(lines)

    def save(self, filename: str) -> str:
        """``.png``: the picture; ``.html``: picture and table; ``.txt``: the text table."""
        lower = filename.lower()
        if lower.endswith(".png"):
            from miniray_magics.figures import save_png

            return save_png(self._repr_png_(), filename)
        with open(filename, "w") as f:
            f.write(self._repr_html_() if lower.endswith((".html", ".htm")) else self.text() + "\n")
        return filename


def memory_report(objects: list[dict[str, Any]], summary: dict[str, Any], by: str = "object",
                  name_site: Callable[[str], str] | None = None) -> MemoryReport:
    """Group live objects ``by`` object, node or call site, largest first.

    ``name_site`` rewrites call sites for reading (the magic turns a notebook cell's temporary
    file name into ``In[5]:2``)."""
    if by not in GROUPINGS:
        raise ValueError(f"by must be one of {GROUPINGS}, got {by!r}")
    entries: dict[str, MemoryEntry] = {}
    tails = short_ids(str(o.get("object_id")) for o in objects) if by == "object" else {}
    for obj in objects:
        if name_site is not None and obj.get("call_site"):
            obj = {**obj, "call_site": name_site(obj["call_site"])}
        if by == "object":
            key = str(obj.get("object_id"))
            label = f"…{tails[key]}"
        elif by == "node":
            key = label = str(obj.get("node_id") or "?")[:12]
        else:
            key = label = obj.get("call_site") or "?"
        entries.setdefault(key, MemoryEntry(key=key, label=label)).add(obj)
    ordered = sorted(entries.values(), key=lambda e: (-e.size, e.label))
    return MemoryReport(by=by, entries=ordered, nodes=list(summary.get("nodes") or []),
                        capacity=int(summary.get("capacity") or 0),
                        used=int(summary.get("used") or 0),
                        spilled=int(summary.get("spilled") or 0))
