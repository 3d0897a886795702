"""Clusters: a head that drivers join over TCP (head.py, client.py), and, next, nodes that join it.

What exists: ``miniray start --head`` runs one Node (scheduler, store, workers) behind an
authenticated TCP listener; drivers anywhere join it with ``init(address=...)``.

The design for joining nodes (``miniray start --address HOST:PORT``), written before the code:

    driver ──TCP──┐                       ┌──TCP── node B: NodeAgent ── its arena + its workers
                  ▼                       │
              head Node: scheduler + object directory + actor table + node table
                  │ (one scheduler for the whole cluster: every submission, from a driver or from a
                  │  worker on any node, reaches the head, so every ObjectRef is known there)
                  └──TCP── node C: NodeAgent ── ...

State added to the head (plain collections, pure transitions, like scheduler/state.py):
    nodes       node_id -> {address, total, available, alive, last_heartbeat}
    slots       worker slots carry their node_id; placement checks that node's ``available``
                (DEFAULT packs the head first, then spills; SPREAD picks the least loaded node;
                custom resources and NodeAffinity pick nodes that have them)
    directory   object id -> {node_ids holding a copy}; an object is READY once one copy exists
    lineage     object id -> the TaskSpec that produced it, kept while the object is referenced

Messages (transport/messages.py naming): node → head  ("hello_node", node_id, ip, total, agent_addr),
("heartbeat", available), worker items relayed unchanged with the node id; head → node ("exec", ...)
relayed to that node's worker, ("pull", oid, from_agent_addr), ("free", oid).  Agents serve
("fetch", oid, offset, length) to each other in 4 MiB chunks, written straight into the receiver's
arena, so no Python process holds a whole object twice.

Failure: a node is dead after 3 missed heartbeats (1 s apart) or a closed connection; its placed
tasks go back to the ready queue under max_retries, its actors restart elsewhere under
max_restarts, and objects whose only copy was there are recomputed from ``lineage`` (or raise
ObjectLostError when the producing task is unknown, e.g. a put).  A lost head closes every agent's
and driver's connection; they exit, and drivers raise RaySystemError naming the head.
"""
