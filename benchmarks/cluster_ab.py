"""Cluster throughput of two versions of miniray, side by side: interleaved runs of an older commit
and of this tree (issue 21: what authenticated frames and transfers cost).

Each round runs, for each variant in turn, a fresh head + one node on loopback (cluster_utils,
separate process trees on 127.0.0.1 and 127.0.0.2) and measures, as benchmarks/cluster.py does:
async tiny tasks with SPREAD (best of 3 batches of 5000) and a 500 MiB array made on the node and
read by the driver (best of 3).  Variants: the base commit, this tree, and this tree with
``MINIRAY_TRANSFER_MAC=0``.  Reported: the median and best over rounds, and ratios to the base;
also the CPU time of all the cluster's processes per task and per GiB moved, which a busy machine
disturbs less than wall time.

Then, in this process, what a frame costs with and without its MAC: one Connection sending and one
FrameReader reading over loopback TCP, frames of the size the tiny-task run sends (about 400
bytes), CPU time of both ends.  A tiny task costs about one MACed frame (counted in the head:
1.01 frames checked a task, the driver's submissions; the head's calls to the node's worker and
its replies go in batches), so the MAC's share of a task is that difference over the CPU per task.

Usage: python benchmarks/cluster_ab.py [--base COMMIT] [--also COMMIT] [--rounds 5] [--mib 500] [--no-tiny]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MEASURE = r"""
import json, sys, time
import numpy as np
import psutil
import miniray
from miniray.cluster_utils import Cluster
nbytes = int(sys.argv[1]) * 2**20
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
cluster.add_node(num_cpus=1, resources={"far": 1})
cluster.connect()
try:
    @miniray.remote
    def f(x):
        return x
    me = psutil.Process()
    def cpu():          # CPU seconds of this driver, the head, the node and all their workers
        return sum(sum(p.cpu_times()[:2]) for p in [me, *me.children(recursive=True)])
    def tiny(n=5000):
        miniray.get([f.options(scheduling_strategy="SPREAD").remote(i) for i in range(200)])
        start, c0 = time.perf_counter(), cpu()
        miniray.get([f.options(scheduling_strategy="SPREAD").remote(i) for i in range(n)])
        return n / (time.perf_counter() - start), (cpu() - c0) / n * 1e6
    runs = [tiny() for _ in range(int(sys.argv[2]))] or [(0.0, 0.0)]
    tasks, task_cpu = max(r[0] for r in runs), min(r[1] for r in runs)
    @miniray.remote(resources={"far": 1})
    def make(n):
        return np.ones(n // 8)
    times, cpus = [], []
    for _ in range(3 if nbytes else 0):
        ref = make.remote(nbytes)
        miniray.wait([ref])
        start, c0 = time.perf_counter(), cpu()
        arr = miniray.get(ref)
        times.append(time.perf_counter() - start)
        cpus.append(cpu() - c0)
        assert arr.nbytes == nbytes
        del arr, ref
    print(json.dumps({"tasks": tasks, "task_cpu_us": task_cpu,
                      "gib_s": nbytes / min(times) / 2**30 if times else 0.0,
                      "cpu_s_per_gib": min(cpus) / (nbytes / 2**30) if cpus else 0.0}))
finally:
    cluster.shutdown()
"""


def export(commit: str, into: str) -> str:
    """The tree of ``commit`` unpacked under ``into`` (git archive), for its src/."""
    os.makedirs(into)
    archive = os.path.join(into, "tree.tar")
    subprocess.run(["git", "-C", HERE, "archive", "-o", archive, commit], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(os.path.join(into, "tree"), filter="data")
    return os.path.join(into, "tree")


def run(tree: str, mib: int, extra_env: dict, tiny: int = 3) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.join(tree, "src"), **extra_env)
    out = subprocess.run([sys.executable, "-c", MEASURE, str(mib), str(tiny)], env=env, capture_output=True,
                         text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def frame_cost(n=50000, size=400) -> dict:
    """CPU microseconds to send and read one frame over loopback TCP, plain and MACed."""
    import socket
    import time
    sys.path.insert(0, os.path.join(HERE, "src"))
    from miniray.transport import auth, framing
    srv = socket.create_server(("127.0.0.1", 0))
    a = socket.create_connection(srv.getsockname())
    b, _ = srv.accept()
    items = [("submit", os.urandom(size - 40))]
    out = {}
    for name, keys in (("plain", None), ("MACed", (os.urandom(32), os.urandom(32)))):
        ca = framing.Connection(a, keys and auth.Channel(*keys))
        rb = framing.FrameReader(b, keys and auth.Channel(*keys[::-1]))
        best = float("inf")
        for _ in range(5):
            start = time.process_time()
            for _ in range(n):
                ca.send(items)
                while not rb.feed(block=True):
                    pass
            best = min(best, (time.process_time() - start) / n * 1e6)
        out[name] = best
    for x in (a, b, srv):
        x.close()
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", default="633ba8f", help="the commit to compare with")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--mib", type=int, default=500, help="0: tiny tasks only")
    p.add_argument("--also", action="append", default=[], metavar="COMMIT",
                   help="another commit to run alongside (repeatable)")
    p.add_argument("--no-tiny", action="store_true", help="the transfer only")
    args = p.parse_args()
    tiny = 0 if args.no_tiny else 3
    with tempfile.TemporaryDirectory() as tmp:
        variants = {f"base {args.base}": (export(args.base, os.path.join(tmp, "base")), {}),
                    **{f"commit {c}": (export(c, os.path.join(tmp, c)), {}) for c in args.also},
                    "this tree": (HERE, {}),
                    "this tree, MINIRAY_TRANSFER_MAC=0": (HERE, {"MINIRAY_TRANSFER_MAC": "0"})}
        results: dict = {name: [] for name in variants}
        for r in range(args.rounds):
            for name, (tree, env) in variants.items():
                results[name].append(run(tree, args.mib, env, tiny))
                print(f"round {r + 1} {name}: {results[name][-1]}", file=sys.stderr, flush=True)
    base = next(iter(results.values()))

    def fig(rows, key, f):
        return f(r[key] for r in rows)
    lines = ["| variant | tiny tasks/s, median (best) | CPU us per task, all processes, median | "
             f"{args.mib} MiB transfer GiB/s, median (best) | CPU s per GiB moved, median |",
             "|---|---|---|---|---|"]

    def cell(rows, key, fmt, best=None):
        med, ratio = fig(rows, key, statistics.median), ""
        if rows is not base and fig(base, key, statistics.median):
            ratio = f" = {med / fig(base, key, statistics.median):.2f}x"
        return f"{med:{fmt}}" + (f" ({fig(rows, key, best):{fmt}})" if best else "") + ratio
    for name, rows in results.items():
        lines.append(f"| {name} | {cell(rows, 'tasks', ',.0f', max)} | {cell(rows, 'task_cpu_us', '.0f')} | "
                     f"{cell(rows, 'gib_s', '.2f', max)} | {cell(rows, 'cpu_s_per_gib', '.2f')} |")
    print("\n".join(lines))
    if args.no_tiny:
        print("\nper round:\n" + json.dumps(results, indent=1))
        return
    cost = frame_cost()
    print(f"\none ~400-byte frame, send + read over loopback TCP, CPU of both ends (best of 5 x 50,000): "
          f"plain {cost['plain']:.1f} us, MACed {cost['MACed']:.1f} us: the MAC adds "
          f"{cost['MACed'] - cost['plain']:.1f} us a frame, about one frame a tiny task = "
          f"{(cost['MACed'] - cost['plain']) / fig(base, 'task_cpu_us', statistics.median):.1%}"
          " of the base's CPU per task")
    print("\nper round:\n" + json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
