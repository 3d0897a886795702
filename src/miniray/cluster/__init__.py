"""Clusters: a head that drivers and nodes join over TCP.

    head.py       ``miniray start --head``: one Node (scheduler, directory, store, workers) behind an
                  authenticated TCP listener; ``status`` and ``stop``
    client.py     ``init(address=...)``: a driver on any machine
    agent.py      ``miniray start --address``: a node that lends its CPUs and keeps its own store
    nodestore.py  that node's arena and the allocator its workers share
    transfer.py   object bytes between nodes: every store serves its arena; readers pull copies
    (scheduler/nodes.py: the head's side: membership, heartbeats, death and lineage)

The design, written before the code (what was built differs only where noted):

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

Messages (transport/messages.py naming): node → head  ("hello_node", node_id, ip, total, data_addr),
("heartbeat", store_used, capacity); head → node ("spawn",), ("free", [blocks]).  Built: a node's
workers connect to the head themselves (no relaying through the agent), write their results into
their node's arena and report ("rshm", ...) descriptors; the head hands a reader either the copy on
its node or ("fetch", data_addr, ...), and the reader pulls the bytes straight into its own arena
(transfer.py) and reports ("copy", oid, desc).  No Python process holds a whole object twice.

Failure: a node is dead after 3 missed heartbeats (1 s apart) or a closed connection; its placed
tasks go back to the ready queue under max_retries, its actors restart elsewhere under
max_restarts, and objects whose only copy was there are recomputed from ``lineage`` (or raise
ObjectLostError when the producing task is unknown, e.g. a put).  A lost head closes every agent's
and driver's connection; they exit, and drivers raise RaySystemError naming the head.
"""
