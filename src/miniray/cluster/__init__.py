"""Clusters: a head that drivers and nodes join over TCP.

    head.py       ``miniray start --head``: one Node (scheduler, directory, store, workers) behind an
                  authenticated TCP listener; ``status`` and ``stop``
    client.py     ``init(address=...)``: a driver on any machine
    agent.py      ``miniray start --address``: a node that lends its CPUs and keeps its own store
    nodestore.py  that node's arena and the allocator its workers share
    transfer.py   object bytes between nodes: every store serves its arena; readers pull copies
    (scheduler/nodes.py: the head's side: membership, heartbeats, death and lineage)

As built:

    driver ──TCP──┐                       ┌──TCP── node B: NodeAgent ── its arena + its workers
                  ▼                       │
              head Node: scheduler + object directory + actor table + node table
                  │ (one scheduler for the whole cluster: every submission, from a driver or from a
                  │  worker on any node, reaches the head, so every ObjectRef is known there)
                  └──TCP── node C: NodeAgent ── ...

State the head keeps for the cluster:
    nodes       scheduler/state.py ``state.nodes``: node_id -> {total, available, gpus}; worker
                slots carry their node, and placement checks that node's ``available`` (DEFAULT
                packs the head first, then the others; SPREAD picks the node with most CPU free;
                NodeAffinity and custom resources pick nodes that have them)
    membership  scheduler/nodes.py ``NodeTable``: each agent's connection, info, last heartbeat,
                and the dead nodes ``nodes()`` still lists
    directory   store/objects.py: each object's ``node`` (where its bytes live) and ``copies``
                (more copies readers pulled onto their nodes)
    lineage     ``NodeTable.lineage`` (task id -> TaskSpec) and ``lineage_of`` (object id -> task
                id), kept while an output stored on another node is alive

Messages (transport/messages.py naming): node → head ("hello_node", node_id, ip, total, data_addr),
("heartbeat", store_used, capacity); head → node ("welcome_node", head_id), ("spawn",),
("free", [blocks]), ("bye",).  A node's workers connect to the head themselves (no relaying through
the agent), write their results into their node's arena and report ("rshm", ...) descriptors; the
head hands a reader either the copy on its node or ("fetch", data_addr, ...), and the reader pulls
the bytes straight into its own arena (transfer.py) and reports ("copy", oid, desc).  No Python
process holds a whole object twice.

Failure: a node is dead after ``NodeTable.NODE_TIMEOUT`` (5 s) without a heartbeat (one a second)
or when its connection closes; its placed tasks go back to the ready queue under max_retries, its
actors restart elsewhere under max_restarts, and objects whose only copy was there are recomputed
from lineage (or raise ObjectLostError when the producing task is unknown, e.g. a put).  A lost
head closes every agent's and driver's connection: agents stop with their workers, and a driver's
pending and later calls raise RaySystemError naming the head.
"""
