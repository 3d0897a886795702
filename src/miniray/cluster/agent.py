"""``miniray start --address HOST:PORT``: a node that joins a head and lends it its CPUs.

    agent (this process) ──TCP+token──► head: ("hello_node", node_id, ip, total, data_addr)
      │                                  ◄── ("welcome_node", head_id)
      │ owns this node's object store (nodestore.py: the arena, and store.sock for its workers)
      │ and serves it to other nodes (transfer.py: DataServer at data_addr)
      │ starts N workers; each connects to the head itself (TCP + token) and says
      │ ("hello", worker_id, pid, node_id), so the head schedules them like its own
      │ ◄── ("spawn",) from the head when a call fits this node but all its workers are busy
      │ ◄── ("free", [offsets]) when objects stored here are freed cluster-wide
      │ ◄── ("bye",) when the head stops on purpose (an EOF without it means the head was lost)
      │ ──► ("heartbeat", store_used, capacity) every second; a head that hears nothing for 5 s declares
      │     the node dead
      ▼
    head gone (EOF) or SIGTERM → workers are killed (they also die with the agent: PDEATHSIG),
    the arena is unlinked → exit

Objects made here stay here: a worker writes its results and puts into this node's arena, and
the head records the location.  A reader elsewhere pulls them (transfer.py).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import uuid

import psutil

from miniray import session
from miniray.cluster.nodestore import NodeStore
from miniray.cluster.transfer import DataServer
from miniray.transport import auth
from miniray.transport.framing import Connection, ConnectionClosed


def run_agent(args, resources) -> int:
    token = os.environ.get("MINIRAY_TOKEN")
    if not token:
        print("miniray start --address: set MINIRAY_TOKEN to the head's token (printed by "
              "`miniray start --head`, or in its session directory's 'token' file).", file=sys.stderr)
        return 2
    host, _, port = args.address.rpartition(":")
    try:
        sock = socket.create_connection((host, int(port)), timeout=10)
        channel = auth.connect(sock, token.encode())
    except (OSError, ValueError, auth.AuthenticationError) as err:
        print(f"miniray start --address {args.address}: {err}", file=sys.stderr)
        return 1
    conn = Connection(sock, channel)
    node_id = uuid.uuid4().hex
    ip = args.node_ip_address or "127.0.0.1"
    cpus = args.num_cpus if args.num_cpus is not None else len(os.sched_getaffinity(0))
    total = {"CPU": float(cpus), "memory": float(psutil.virtual_memory().total * 0.7),
             f"node:{ip}": 1.0, f"node_id:{node_id}": 1000.0}
    if args.num_gpus:
        total["GPU"] = float(args.num_gpus)
    total.update({k: float(v) for k, v in resources.items()})
    sdir = session.daemon_session_dir("node")
    store = NodeStore(sdir, args.object_store_memory or session.default_store_size())
    total["object_store_memory"] = float(store.arena.capacity)
    data = DataServer(store.arena, token.encode(), ip)       # where asked, never all interfaces
    conn.send([("hello_node", node_id, ip, total, data.advertise(ip))])
    conn.recv()
    info_file = session.write_info_file(args.address, sdir, kind="node", node_id=node_id, ip=ip)
    workers: list[subprocess.Popen] = []
    spawn = _spawner(args.address, node_id, sdir, token, workers, store)
    for _ in range(max(1, int(cpus))):
        spawn()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: (stop.set(), sock.shutdown(socket.SHUT_RDWR)))
    threading.Thread(target=_heartbeat, args=(conn, stop, store), daemon=True,
                     name="miniray-heartbeat").start()
    print(f"miniray node {node_id[:12]} ({ip}, {cpus} CPUs) joined the head at {args.address}", flush=True)
    # Main loop
    try:
        while not stop.is_set():
            for item in conn.recv():
                if item[0] == "spawn":
                    spawn()
                elif item[0] == "free":
                    store.free(item[1])
                elif item[0] == "bye":             # the head is stopping on purpose
                    print(f"miniray node {node_id[:12]}: the head at {args.address} stopped; stopping too.",
                          flush=True)
                    stop.set()
    except (ConnectionClosed, OSError):
        if not stop.is_set():
            print(f"miniray node {node_id[:12]}: lost the head at {args.address}; stopping this node "
                  "and its workers.", file=sys.stderr, flush=True)
    for w in workers:
        if w.poll() is None:
            w.kill()
    for w in workers:
        w.wait()
    data.close()
    store.close()
    session.end_daemon_session(info_file, sdir)
    return 0


HEARTBEAT = 1.0     # seconds between beats; the head declares a node dead after NodeTable.NODE_TIMEOUT


def _heartbeat(conn, stop, store):
    while not stop.wait(HEARTBEAT):
        try:
            conn.send([("heartbeat", store.used, store.arena.capacity)])
        except OSError:
            return


def _spawner(address, node_id, sdir, token, workers, store):
    count = [0]

    def spawn():
        count[0] += 1
        wid = f"{node_id[:6]}-w{count[0]}"
        env = dict(os.environ, MINIRAY_TOKEN=token, PYTHONUNBUFFERED="1", MINIRAY_STORE_SOCK=store.sock_path,
                   PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "miniray.worker.main", f"tcp:{address}", wid, store.arena.path,
             str(store.arena.capacity), sdir, node_id,
             str(os.getpid()), str(100 * 1024)], env=env, stdin=subprocess.DEVNULL, start_new_session=True))
    return spawn
