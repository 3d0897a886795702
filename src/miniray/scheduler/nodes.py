"""The head's table of joined nodes: who is in the cluster, whether they are alive, and how to make
again what a dead node held.  Also the head's TCP door, through which nodes and drivers come in.

Runs in the node thread (``Node`` owns one, as it owns the actor table).  A joined node's life:

    ("hello_node", ...) ──► ALIVE ──its connection closes, or no heartbeat for NODE_TIMEOUT──► DEAD

Joining: its resources join the scheduler state (``S.add_node``) and its DataServer address the
store's directory.  Death: its resources leave, its workers are handled like crashed workers (tasks
retried under ``max_retries``, actors restarted under ``max_restarts``), and each object whose only
copy was there is made again from lineage, or fails with ObjectLostError.

State: ``peers`` (node id → the agent's connection), ``info`` (ip, join time, store use), ``beats``
(node id → last heartbeat), ``dead`` (what ``nodes()`` still shows of dead nodes), ``lineage``
(task id → spec, kept with its arguments while an output stored on another node lives),
``lineage_of`` (oid → task id) and ``frees`` (blocks of other nodes' arenas to free, any thread).
"""
from __future__ import annotations

import socket
import sys
import time
from collections import deque

from miniray import exceptions as exc
from miniray.scheduler import state as S
from miniray.store.serialization import error_desc


class NodeTable:
    NODE_TIMEOUT = 5.0      # seconds without a heartbeat before a node is declared dead

    def __init__(self, node):
        self.node = node
        self.peers: dict = {}
        self.info: dict = {}
        self.beats: dict = {}
        self.dead: dict = {}
        self.lineage: dict = {}
        self.lineage_of: dict = {}
        self.frees: deque = deque()
        self.listener, self.data_server, self.token = None, None, b""

    # -- the TCP door -------------------------------------------------------------------------------
    def listen(self, host: str, port: int, token: bytes) -> int:
        """Serve nodes and drivers over TCP (each must pass the token handshake first, in the door's
        thread: transport/door.py), and this node's arena to other nodes (cluster/transfer.py)."""
        from miniray.cluster.transfer import DataServer, set_token
        from miniray.transport.door import Door
        node = self.node
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        self.listener, self.token = sock, token
        self.door = Door(sock, token, self._adopt)
        self.data_server = DataServer(node.store.arena, token, host)
        node.store.addresses[node.node_id] = self.data_server.advertise(node.node_ip)
        set_token(token)
        return sock.getsockname()[1]

    def _adopt(self, sock, channel, peer):
        """In the door's thread: an authenticated peer; the node thread takes it from the inbox."""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.node.inbox.append((None, [("adopt", sock, channel)]))
        self.node.wake()

    def close(self):
        if self.listener is not None:
            self.door.close()
        if self.data_server is not None:
            self.data_server.close()

    # -- membership -----------------------------------------------------------------------------------
    def hello(self, wc, node_id, ip, total, data_addr=None):
        """A node joined: its resources join the cluster; its workers connect on their own."""
        node = self.node
        if data_addr is not None:
            node.store.addresses[node_id] = tuple(data_addr)
        wc.holder, wc.node, wc.is_driver = f"node-{node_id[:8]}", node_id, True
        self.peers[node_id] = wc
        node.drivers[wc.holder] = wc
        self.info[node_id] = {"ip": ip, "joined": time.time(),
                              "store": (0, int(total.get("object_store_memory", 0)))}
        S.add_node(node.state, node_id, total)
        node.placement_changed()
        self.beats[node_id] = time.monotonic()
        wc.deliver([("welcome_node", node.node_id)])

    def heartbeat(self, wc, item):
        if wc.node is not None and self.beats.get(wc.node) != float("inf"):
            self.beats[wc.node] = time.monotonic()
            if len(item) > 2:
                self.info[wc.node]["store"] = (item[1], item[2])

    def check_heartbeats(self):
        now = time.monotonic()
        for node_id, wc in list(self.peers.items()):
            if now - self.beats.get(node_id, now) > self.NODE_TIMEOUT:
                sys.stderr.write(f"miniray head: node {node_id[:12]} missed its heartbeats for "
                                 f"{self.NODE_TIMEOUT:.0f} s; marking it dead\n")
                try:
                    wc.conn.sock.shutdown(socket.SHUT_RDWR)   # the EOF takes the usual path
                except OSError:
                    pass
                self.beats[node_id] = float("inf")

    def gone(self, wc):
        """A node's agent disconnected: the node is dead; its workers' calls are retried elsewhere."""
        node, node_id = self.node, wc.node
        self.peers.pop(node_id, None)
        node.drivers.pop(wc.holder, None)
        res = node.state.nodes.get(node_id, {"total": {}})
        self.dead[node_id] = {"total": dict(res["total"]), **self.info.get(node_id, {})}
        S.remove_node(node.state, node_id)
        node.placement_changed()
        for wid, slot in list(node.state.workers.items()):
            if slot.node == node_id and wid in node.conns:
                node._worker_died(node.conns[wid])
            elif slot.node == node_id:
                S.worker_gone(node.state, wid)
        node.store.addresses.pop(node_id, None)
        lost = node.store.node_lost(node_id)
        if lost:
            self._objects_lost(node_id, lost)

    def free_remote(self, node_id, block):
        """From the store, under its lock, on any thread: free a block of another node's arena."""
        self.frees.append((node_id, block))
        self.node.wake()

    def flush_frees(self):
        by_node: dict = {}
        while self.frees:
            node_id, block = self.frees.popleft()
            by_node.setdefault(node_id, []).append(block)
        for node_id, blocks in by_node.items():
            if node_id in self.peers:              # a dead node's memory went with it
                self.peers[node_id].deliver([("free", blocks)])

    def listing(self) -> list:
        """``nodes()``: every node, alive or dead, in Ray's keys."""
        node = self.node

        def entry(node_id, alive, total, ip):
            port = node.store.addresses.get(node_id, (None, None))[1]
            store = ((node.store.arena.used, node.store.arena.capacity) if node_id == node.node_id
                     else self.info.get(node_id, {}).get("store", (0, 0)))
            return {"NodeID": node_id, "Alive": alive, "NodeManagerAddress": ip, "Resources": dict(total),
                    "ObjectManagerPort": port, "ObjectStoreUsedMemory": store[0] if alive else 0,
                    "ObjectStoreMemory": store[1]}
        out = [entry(node.node_id, True, node.state.nodes[node.node_id]["total"],
                     node.node_ip)]
        for node_id, res in node.state.nodes.items():
            if node_id != node.node_id:
                out.append(entry(node_id, True, res["total"], self.info.get(node_id, {}).get("ip", "?")))
        for node_id, info in self.dead.items():
            out.append(entry(node_id, False, info["total"], info.get("ip", "?")))
        return out

    # -- lineage: how to make again an object whose only copy was on a node that died ---------------
    def keep_lineage(self, spec):
        """Keep the spec of a task whose outputs live on another node, and its arguments with it,
        while any of those outputs is alive (as Ray pins lineage)."""
        store = self.node.store
        with store.lock:
            if spec.task_id in self.lineage:
                return
            self.lineage[spec.task_id] = spec
            for oid in spec.returns:
                self.lineage_of[oid] = spec.task_id
            store.use(spec.deps + spec.nested, +1)

    def object_freed(self, oid):
        """Called under the store lock (any thread): drop lineage nobody can need any more."""
        tid = self.lineage_of.pop(oid, None)
        if tid is not None and not any(r in self.lineage_of for r in self.lineage[tid].returns):
            spec = self.lineage.pop(tid)
            self.node.store.use(spec.deps + spec.nested, -1)

    def _objects_lost(self, node_id, lost):
        """A node died with the only copies of ``lost``: re-run the tasks that made them, once each,
        or fail the objects with ObjectLostError (puts and actor results have no lineage)."""
        node = self.node
        with node.store.lock:
            rerun = self._reset_lost(node_id, lost)
        S.wait_again(node.state, [o for o in lost if not node.store.ready(o)])
        for tid, spec in rerun.items():
            sys.stderr.write(f"miniray head: re-running {spec.name} to rebuild its output lost with node "
                             f"{node_id[:12]}\n")
            spec.attempt = 0
            node.emit("reconstructing", task_id=tid, name=spec.name, node_id=node_id)
            node._submit(spec, time.time())

    def _reset_lost(self, node_id, lost) -> dict:
        store, rerun = self.node.store, {}
        for oid in lost:
            self.node.emit("lost", object_id=oid, node_id=node_id)
            store.reset(oid)
            tid = self.lineage_of.get(oid)
            if tid is not None and tid in self.lineage:
                rerun[tid] = self.lineage[tid]
                continue
            ip = self.info.get(node_id, {}).get("ip", "?")
            store.seal(oid, error_desc(exc.ObjectLostError(
                f"Object {oid} lived only on node {node_id[:12]} ({ip}), which died, and miniray cannot "
                "make it again: it came from put() or an actor method, which have no lineage. Keep "
                "such data where it is made safely (put it from the driver), or make it in a task, "
                "which miniray re-runs when its output is lost.")), failed=True)
        return rerun
