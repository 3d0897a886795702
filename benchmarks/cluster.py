"""Cluster figures for issue 5, side by side in one run on loopback:

- cross-node transfer: a 500 MiB array made by a task on another node and stored there, then pulled
  by the driver into the head's store (the timed part, best of 3), against raw loopback TCP
  throughput measured in the same run (one socket, 4 MiB sends);
- async tiny-task throughput on a head + one node (SPREAD) against a single-node runtime.

Every figure is the best of 3 in the run (the raw TCP figure too), since this VM is noisy.

Usage: python benchmarks/cluster.py [--mib 500]
"""
from __future__ import annotations

import argparse
import socket
import threading
import time

import numpy as np

import miniray
from miniray.cluster_utils import Cluster


def raw_tcp_gib_s(nbytes: int) -> float:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    got = []

    def sink():
        conn, _ = srv.accept()
        n = 0
        buf = bytearray(4 << 20)
        while True:
            k = conn.recv_into(buf)
            if not k:
                break
            n += k
        got.append(n)
        conn.close()

    t = threading.Thread(target=sink)
    t.start()
    chunk = b"\0" * (4 << 20)
    c = socket.create_connection(("127.0.0.1", port))
    start = time.perf_counter()
    sent = 0
    while sent < nbytes:
        c.sendall(chunk)
        sent += len(chunk)
    c.close()
    t.join()
    srv.close()
    return sent / (time.perf_counter() - start) / 2**30


def tiny_throughput(n=3000, **opts) -> float:
    @miniray.remote
    def f(x):
        return x

    miniray.get([f.options(**opts).remote(i) for i in range(200)])
    start = time.perf_counter()
    miniray.get([f.options(**opts).remote(i) for i in range(n)])
    return n / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mib", type=int, default=500)
    args = p.parse_args()
    nbytes = args.mib * 2**20
    tcp = max(raw_tcp_gib_s(nbytes) for _ in range(3))
    miniray.init(num_cpus=2)
    single = max(tiny_throughput() for _ in range(3))
    miniray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1, resources={"far": 1})
    cluster.connect()
    try:
        two = max(tiny_throughput(scheduling_strategy="SPREAD") for _ in range(3))

        @miniray.remote(resources={"far": 1})
        def make(n):
            return np.ones(n // 8)

        times = []
        for _ in range(3):
            ref = make.remote(nbytes)
            miniray.wait([ref])                   # made and stored on the far node: now move it
            start = time.perf_counter()
            arr = miniray.get(ref)
            times.append(time.perf_counter() - start)
            assert arr.nbytes == nbytes
            del arr, ref
        transfer = nbytes / min(times) / 2**30
    finally:
        cluster.shutdown()
    print(f"| figure | miniray | reference | ratio |\n|---|---|---|---|\n"
          f"| {args.mib} MiB made on another node, read by the driver | {transfer:.2f} GiB/s | "
          f"raw loopback TCP {tcp:.2f} GiB/s | {transfer / tcp:.2f}x |\n"
          f"| tiny tasks, head + 1 node (SPREAD) | {two:,.0f}/s | single node {single:,.0f}/s | "
          f"{two / single:.2f}x |")


if __name__ == "__main__":
    main()
