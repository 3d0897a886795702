"""``Cluster``: a head and N nodes as separate process trees on loopback, for tests and lessons.

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    b = cluster.add_node(num_cpus=2, resources={"big": 1})      # its own IP: 127.0.0.2, .3, ...
    miniray.init(address=cluster.address)
    ...
    cluster.remove_node(b)          # SIGKILL, as a crashed machine
    cluster.shutdown()

Every process is started through the real CLI (``miniray start --head/--address --block``), with its
own session directory, and talks real TCP with the cluster token, as on separate machines.  A
script that forgets ``shutdown()`` gets it at exit (atexit), so no head or node outlives it.
"""
from __future__ import annotations

import atexit
import os
import secrets
import signal
import subprocess
import sys
import time

from miniray import session


class ClusterNode:
    def __init__(self, proc, ip, kind, info=None):
        self.proc, self.ip, self.kind = proc, ip, kind
        self.node_id = (info or {}).get("node_id")     # as in miniray.nodes()' NodeID
        self.node_ip_address = ip

    @property
    def pid(self):
        return self.proc.pid

    @property
    def unique_id(self):
        return self.node_id


class Cluster:
    def __init__(self, initialize_head: bool = True, head_node_args: dict | None = None,
                 connect: bool = False):
        self.token = secrets.token_hex(16)
        self.address = None
        self.head = None
        self.nodes: list[ClusterNode] = []
        self._next_ip = 2
        atexit.register(self.shutdown)       # a script that forgets shutdown() leaves nothing behind
        if initialize_head:
            self.add_node(**(head_node_args or {}))
        if connect:
            self.connect()

    def _env(self, extra=None):
        return dict(os.environ, **(extra or {}), MINIRAY_TOKEN=self.token)

    # Ray's add_node kwargs that have no meaning here: accepted so Ray's test code runs unchanged
    IGNORED = {"dashboard_host", "dashboard_port", "include_dashboard", "redis_port", "port",
               "min_worker_port", "max_worker_port", "_system_config", "enable_object_reconstruction",
               "labels", "memory", "raylet_config", "num_redis_shards", "redis_max_memory"}

    def add_node(self, num_cpus: int = 1, num_gpus: int | None = None, resources: dict | None = None,
                 node_ip_address: str | None = None, wait: bool = True,
                 object_store_memory: int | None = None, env_vars: dict | None = None,
                 **ray_kwargs) -> ClusterNode:
        """Start a node (the head first); returns it, with ``node_id`` once it has joined."""
        unknown = sorted(set(ray_kwargs) - self.IGNORED)
        if unknown:
            raise TypeError(f"add_node() got unexpected argument(s) {unknown}. It takes num_cpus, num_gpus, "
                            "resources, object_store_memory, node_ip_address, env_vars and wait.")
        import json
        cmd = [sys.executable, "-m", "miniray.cli", "start", "--block", "--num-cpus", str(num_cpus),
               "--resources", json.dumps(resources or {})]
        if num_gpus:
            cmd += ["--num-gpus", str(num_gpus)]
        if object_store_memory:
            cmd += ["--object-store-memory", str(object_store_memory)]
        if self.head is None:
            ip = node_ip_address or "127.0.0.1"
            proc = subprocess.Popen(cmd + ["--head", "--port", "0"], env=self._env(env_vars),
                                    stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            info = self._wait_for(lambda: [h for h in session.live_heads() if h["pid"] == proc.pid], proc)
            self.head = ClusterNode(proc, ip, "head", info)
            self.address = info["address"]
            return self.head
        ip = node_ip_address or f"127.0.0.{self._next_ip}"
        self._next_ip += 1
        proc = subprocess.Popen(cmd + ["--address", self.address, "--node-ip-address", ip],
                                env=self._env(env_vars), stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        node = ClusterNode(proc, ip, "node")
        self.nodes.append(node)
        if wait:
            node.node_id = self._wait_for(lambda: [n for n in session.live_nodes() if n["pid"] == proc.pid],
                                          proc).get("node_id")
        return node

    @staticmethod
    def _wait_for(found, proc, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hit = found()
            if hit:
                return hit[0]
            if proc.poll() is not None:
                raise RuntimeError(f"a cluster process exited with code {proc.returncode} while starting")
            time.sleep(0.05)
        raise TimeoutError("a cluster process did not come up in time")

    def connect(self, **kwargs):
        import miniray
        os.environ["MINIRAY_TOKEN"] = self.token
        return miniray.init(address=self.address, **kwargs)

    def remove_node(self, node: ClusterNode, allow_graceful: bool = False) -> None:
        node.proc.send_signal(signal.SIGTERM if allow_graceful else signal.SIGKILL)
        node.proc.wait(timeout=30)
        if node in self.nodes:
            self.nodes.remove(node)
        if not allow_graceful:    # a real machine's /dev/shm dies with it; here, sweep its arena away
            session.reap_stale_sessions()

    def wait_for_nodes(self, timeout: float = 30) -> None:
        import miniray
        deadline = time.monotonic() + timeout
        want = 1 + len(self.nodes)
        while time.monotonic() < deadline:
            if sum(n["Alive"] for n in miniray.nodes()) >= want:
                return
            time.sleep(0.05)
        raise TimeoutError(f"fewer than {want} nodes alive after {timeout} s")

    def shutdown(self) -> None:
        import miniray
        atexit.unregister(self.shutdown)
        if miniray.is_initialized():
            miniray.shutdown()
        if self.head is not None:     # the head first: its nodes then leave on their own, and it
            self.head.proc.send_signal(signal.SIGTERM)   # never sees them go and rebuilds their objects
            try:
                self.head.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.head.proc.kill()
                self.head.proc.wait()
        for node in list(self.nodes):
            self.remove_node(node, allow_graceful=True)
        self.head = None
