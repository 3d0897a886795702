"""What is in the object store right now: ``list_objects()`` and ``memory_summary()``.

Both ask the node (a request, so they work from the driver, from tasks and from actors) and return
plain dicts; ``format_table`` renders them for the terminal (``miniray memory``).
"""
from __future__ import annotations

from miniray.api import current_runtime


def list_objects() -> list[dict]:
    """One dict per live object: object_id, object_size, reference_type, location, node_id,
    call_site, pid (plus state and task_id)."""
    return current_runtime().request("list_objects")


def memory_summary() -> dict:
    """Capacity, used and spilled bytes, and object counts, in total and per node (in a cluster,
    each joined node's store as of its last heartbeat; the head keeps the directory of them all)."""
    rt = current_runtime()
    head = rt.request("summary")
    nodes = [head]
    for n in rt.request("nodes")[1:]:
        if n["Alive"]:
            nodes.append({"node_id": n["NodeID"], "capacity": n.get("ObjectStoreMemory", 0),
                          "used": n.get("ObjectStoreUsedMemory", 0), "spilled": 0})
    return {"nodes": nodes, "capacity": sum(n["capacity"] for n in nodes),
            "used": sum(n["used"] for n in nodes), "spilled": head["spilled"],
            "num_objects": head["num_objects"]}


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def format_table(objects: list[dict], summary: dict) -> str:
    lines = [f"Object store: {_mib(summary['used'])} used of {_mib(summary['capacity'])}, "
             f"{_mib(summary['spilled'])} spilled, {summary['num_objects']} objects"]
    if len(summary["nodes"]) > 1:
        lines += [f"  node {n['node_id'][:12]}: {_mib(n['used'])} used of {_mib(n['capacity'])}"
                  for n in summary["nodes"]]
    head = f"{'object_id':<26} {'size':>12} {'location':<14} {'node':<13} {'reference_type':<22} call_site"
    lines += ["", head, "-" * len(head)]
    for o in sorted(objects, key=lambda o: -o["object_size"]):
        lines.append(f"{o['object_id'][:24]:<26} {_mib(o['object_size']):>12} {o['location']:<14} "
                     f"{o.get('node_id', '')[:12]:<13} {o['reference_type']:<22} {o['call_site']}")
    return "\n".join(lines)
