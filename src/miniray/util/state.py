"""What is in the object store right now: ``list_objects()`` and ``memory_summary()``.

Both ask the node (a request, so they work from the driver, from tasks and from actors) and return
plain dicts; ``format_table`` renders them for the terminal (``miniray memory``).
"""
from __future__ import annotations

from miniray.runtime import current_runtime


def list_objects() -> list[dict]:
    """One dict per live object: object_id, object_size, reference_type, location, node_id,
    call_site, pid (plus state and task_id)."""
    return current_runtime().request("list_objects")


def memory_summary() -> dict:
    """Capacity, used and spilled bytes, and object counts, in total and per node."""
    node = current_runtime().request("summary")
    return {"nodes": [node], "capacity": node["capacity"], "used": node["used"],
            "spilled": node["spilled"], "num_objects": node["num_objects"]}


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def format_table(objects: list[dict], summary: dict) -> str:
    lines = [f"Object store: {_mib(summary['used'])} used of {_mib(summary['capacity'])}, "
             f"{_mib(summary['spilled'])} spilled, {summary['num_objects']} objects", ""]
    head = f"{'object_id':<26} {'size':>12} {'location':<14} {'reference_type':<22} call_site"
    lines += [head, "-" * len(head)]
    for o in sorted(objects, key=lambda o: -o["object_size"]):
        lines.append(f"{o['object_id'][:24]:<26} {_mib(o['object_size']):>12} {o['location']:<14} "
                     f"{o['reference_type']:<22} {o['call_site']}")
    return "\n".join(lines)
