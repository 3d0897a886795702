"""``miniray start --head``, ``stop`` and ``status``: a head process that drivers join over TCP.

    miniray start --head [--port 6380] [--num-cpus N] [--num-gpus G] [--resources JSON]
                         [--node-ip-address IP] [--block]
        without --block: starts itself again with --block, detached, waits until it serves, prints
        the address, and returns.
    the head (--block): session directory + token (0600) + Node thread (store, workers) + a TCP
        listener; ``head_<pid>.json`` in the user's session root lets init(address="auto") find it.
        SIGTERM or SIGINT stops it: workers, shared memory and the session directory go with it.
    miniray stop: SIGTERM to the heads this user started on this machine (their head files), no others.

Other machines join with ``miniray start --address HOST:PORT`` (cluster/agent.py): the head
schedules on every node's workers and keeps the directory of every node's objects
(scheduler/nodes.py); drivers join with ``init(address=...)`` (cluster/client.py).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time

from miniray import session


def _parser():
    p = argparse.ArgumentParser(prog="miniray start",
                                description="Start a miniray head (--head), or a node that joins one (--address).")
    p.add_argument("--head", action="store_true", help="start a head node")
    p.add_argument("--address", help="HOST:PORT of a head to join; set MINIRAY_TOKEN to its token")
    p.add_argument("--port", type=int, default=6380, help="TCP port to listen on (0: any free port)")
    p.add_argument("--num-cpus", type=int)
    p.add_argument("--num-gpus", type=int)
    p.add_argument("--resources", default="{}", help='custom resources as JSON, e.g. \'{"teacher": 1}\'')
    p.add_argument("--object-store-memory", type=int, help="bytes of shared memory for this node's store")
    p.add_argument("--node-ip-address", default=None, help="the IP others reach this node at")
    p.add_argument("--block", action="store_true", help="stay in the foreground")
    return p


def start(argv) -> int:
    args = _parser().parse_args(argv)
    if args.head and args.address:
        print("miniray start: give either --head or --address, not both.", file=sys.stderr)
        return 2
    if not args.head and not args.address:
        print("miniray start: give --head (start a head) or --address HOST:PORT (join one).", file=sys.stderr)
        return 2
    try:
        resources = json.loads(args.resources)
        assert isinstance(resources, dict)
    except (ValueError, AssertionError):
        print(f"miniray start: --resources must be a JSON object like '{{\"teacher\": 1}}', got {args.resources!r}.",
              file=sys.stderr)
        return 2
    if os.environ.get("MINIRAY_TOKEN"):
        from miniray.transport.auth import check_token
        try:
            check_token(os.environ["MINIRAY_TOKEN"])
        except ValueError as err:
            print(f"miniray start: {err}", file=sys.stderr)
            return 2
    if not args.block:
        return _daemonize(argv, "node" if args.address else "head")
    if args.address:
        from miniray.cluster.agent import run_agent
        return run_agent(args, resources)
    return run_head(args, resources)


def _daemonize(argv, kind="head") -> int:
    root = session.sessions_root()
    log = os.path.join(root, f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log")
    before = {h["pid"] for h in session.live_heads()}
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "miniray.cli", "start", *argv, "--block"],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if kind == "node" and os.path.exists(os.path.join(root, f"node_{proc.pid}.json")):
            print(f"miniray node joined the head (pid {proc.pid}); log: {log}")
            return 0
        heads = [h for h in session.live_heads() if h["pid"] == proc.pid and h["pid"] not in before]
        if heads:
            _print_started(heads[0]["address"], heads[0]["session_dir"])
            return 0
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    print(f"miniray start: the head did not come up; see {log}", file=sys.stderr)
    return 1


def _print_started(address, session_dir):
    print(f"miniray head started at {address}\n"
          f"  in Python:  miniray.init(address=\"{address}\")   (or address=\"auto\" on this machine)\n"
          f"  elsewhere:  export MINIRAY_ADDRESS={address} MINIRAY_TOKEN=$(cat {session_dir}/token)\n"
          f"  stop it:    miniray stop")


def run_head(args, resources) -> int:
    token = (os.environ.get("MINIRAY_TOKEN") or secrets.token_hex(16)).encode()    # checked in start
    sdir = session.daemon_session_dir("head")
    fd = os.open(os.path.join(sdir, "token"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(token)
    ip = args.node_ip_address or "127.0.0.1"
    node = session.start_node(num_cpus=args.num_cpus, num_gpus=args.num_gpus, resources=resources,
                              object_store_memory=args.object_store_memory, inline_max=100 * 1024,
                              session_dir=sdir, node_ip=ip)
    host = ip                       # where asked, never all interfaces
    try:
        port = node.nodes.listen(host, args.port, token)
    except OSError as err:
        node.store.arena.unlink()
        print(f"miniray start: cannot listen on {host}:{args.port}: {err}. Pick another --port, or give "
              "--node-ip-address an address of this machine.", file=sys.stderr)
        return 1
    address = f"{ip}:{port}"
    head_file = session.write_info_file(address, sdir, node_id=node.node_id)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    node.start()
    _print_started(address, sdir)
    sys.stdout.flush()
    while not stop.wait(0.5):
        if not node.thread.is_alive():
            break
    node.stop()
    node.store.arena.unlink()
    session.end_daemon_session(head_file, sdir)
    return 0


def stop(argv) -> int:
    heads = session.live_nodes() + session.live_heads()
    if not heads:
        print("miniray stop: no miniray head or node of yours is running on this machine.")
        return 0
    for h in heads:
        try:
            os.kill(h["pid"], signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + 10
    for h in heads:
        while time.monotonic() < deadline and _alive(h["pid"]):
            time.sleep(0.05)
        if _alive(h["pid"]):
            os.kill(h["pid"], signal.SIGKILL)
        what = "node joined to" if "node_id" in h else "head at"
        print(f"stopped the {what} {h['address']} (pid {h['pid']})")
    return 0


def _alive(pid) -> bool:
    import psutil
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def status(argv) -> int:
    p = argparse.ArgumentParser(prog="miniray status")
    p.add_argument("--address", default="auto")
    args = p.parse_args(argv)
    import miniray
    from miniray.util.state import memory_summary
    try:
        miniray.init(address=args.address)
    except (ConnectionError, OSError) as err:
        print(f"miniray status: {err}", file=sys.stderr)
        return 1
    try:
        total, avail = miniray.api.current_runtime().resources()
        mem = memory_summary()
        for n in miniray.nodes():
            store = (f"store {n['ObjectStoreUsedMemory'] / 2**20:.1f} / {n['ObjectStoreMemory'] / 2**20:.0f} MiB"
                     if n["Alive"] else "")
            print(f"node {n['NodeID'][:12]}  {n['NodeManagerAddress']:<15} {'alive' if n['Alive'] else 'DEAD':<6}"
                  f" {store}")
        print("resources (used / total):")
        for k in sorted(total):
            if k.startswith("node_id:"):
                continue
            used = total[k] - max(0.0, avail.get(k, 0.0))
            fmt = (lambda v: f"{v / 2**30:.1f} GiB") if "memory" in k else (lambda v: f"{v:g}")
            print(f"  {k:<22} {fmt(used)} / {fmt(total[k])}")
        print(f"head's object store: {mem['used'] / 2**20:.1f} MiB used of {mem['capacity'] / 2**20:.1f} MiB, "
              f"{mem['spilled'] / 2**20:.1f} MiB spilled, {mem['num_objects']} objects")
    finally:
        miniray.shutdown()
    return 0
