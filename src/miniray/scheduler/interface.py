"""What the node's tables (scheduler/actors.py, scheduler/nodes.py) may use of the node.

The tables run inside the node's steps and keep the actor and node bookkeeping; everything they
make happen goes through this interface, so each table can be read (and unit-tested with a small
fake: tests/test_actor_table.py) without the node's sockets, threads or processes.
"""
from __future__ import annotations

from typing import Protocol


class NodeSide(Protocol):
    node_id: str
    node_ip: str
    state: object          # the scheduler state (scheduler/state.py), changed with its functions
    store: object          # the object store (store/objects.py)
    conns: dict            # worker id -> its connection: ``deliver(items)``, ``deliver_exec(item)``
    drivers: dict          # holder -> connection of a driver or node agent over TCP (flushed each step)

    def submit(self, spec, ts) -> None:
        """Schedule a call (an actor's constructor again, a task rebuilt from lineage)."""

    def fail(self, spec, err: BaseException, worker: str = "") -> None:
        """End a call with ``err`` as each of its results."""

    def finish(self, spec, result, worker: str = "", seal: bool = True) -> None:
        """End a call with the Result its worker reported."""

    def kill_worker(self, wid: str) -> None:
        """Kill a worker; its death comes back later as ``worker_died`` (through its EOF)."""

    def worker_died(self, wc) -> None:
        """Handle a worker's connection as closed now (its node died)."""

    def descs_for(self, wc, oids) -> dict:
        """Argument descriptors of ``oids`` for the worker on connection ``wc``, pinned for it."""

    def placement_changed(self) -> None:
        """A node joined or left: feasibility must be checked again."""

    def adopt(self, sock, channel) -> None:
        """From any thread: an authenticated TCP connection for the node to serve."""

    def wake(self) -> None:
        """From any thread: make the node thread run a step soon."""

    def emit(self, kind: str, **fields) -> None:
        """Write a row into the event log."""
