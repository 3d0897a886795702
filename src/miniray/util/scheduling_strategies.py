"""Scheduling strategies, named as in Ray: "DEFAULT", "SPREAD", or a node-affinity object."""
from __future__ import annotations


class NodeAffinitySchedulingStrategy:
    """Run on the node ``node_id``; with ``soft=True``, anywhere if that node is gone or full."""

    def __init__(self, node_id: str, soft: bool, _spill_on_unavailable=False, _fail_on_unavailable=False):
        self.node_id, self.soft = node_id, soft

    def __repr__(self):
        return f"NodeAffinitySchedulingStrategy(node_id={self.node_id!r}, soft={self.soft})"
