"""Small helpers the Slurm job script runs on the nodes: ``python3 -m miniray.launchers.jobtools``.

The sbatch script (``templates/slurm.sh.tmpl``) stays plain bash; whatever is awkward or unportable
in bash lives here as one subcommand each, run as a short-lived process on a node of the job::

    batch step (head host)                          srun step, one task per node
    ----------------------                          ----------------------------
    token FILE          -> random token, mode 0600   node-ip HEAD_IP   -> this node's address
    head-ip HOSTS...    -> the head's address        wait-port IP PORT -> head is up, join it
    free-port IP        -> a port free on the head   kill-tree PID     -> stop miniray and children
    wait-port IP PORT   -> head is serving
    wait-nodes N        -> N nodes joined (needs the cluster runtime: miniray, or Ray with
                           --engine ray)

Every subcommand prints its answer on stdout, or one line on stderr and exits non-zero.  No state:
nothing here outlives the command.  Imports nothing from the runtime except in ``wait-nodes``.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import socket
import subprocess
import sys
import time


def make_token(path: str) -> str:
    """Write a fresh 256-bit token to ``path``, created with mode 0600, and return it."""
    token = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def free_port(ip: str = "") -> int:
    """A TCP port that nothing listens on at ``ip`` right now (the kernel picks it at random)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def resolve(name: str) -> str:
    """The first IPv4 address of a host name (or the address itself)."""
    return socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]


def route_source(dest_ip: str) -> str:
    """This host's address on the route to ``dest_ip``: the interface that reaches it.

    A UDP ``connect`` sends nothing; it only asks the kernel's routing table, like
    ``ip route get DEST``, and works without iproute2.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((dest_ip, 9))
        return s.getsockname()[0]


def slurm_node_addr(host: str) -> str:
    """Slurm's ``NodeAddr`` for a node (what slurmctld itself uses to reach it), else the name."""
    try:
        out = subprocess.run(["scontrol", "show", "node", host, "-o"], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return host
    for field in out.split():
        if field.startswith("NodeAddr="):
            return field.split("=", 1)[1] or host
    return host


def head_ip(hosts: list[str]) -> str:
    """The address the other nodes should use to reach the head, ``hosts[0]``; run on the head.

    Start from Slurm's NodeAddr of the head.  If that resolves to a loopback address (Debian's
    ``127.0.1.1 hostname`` line in /etc/hosts is the classic trap) while another node of the job has
    a real address, use the head's address on the route to that node instead.
    """
    ip = resolve(slurm_node_addr(hosts[0]))
    if not ipaddress.ip_address(ip).is_loopback:
        return ip
    for other in hosts[1:]:
        try:
            other_ip = resolve(slurm_node_addr(other))
        except OSError:
            continue
        if not ipaddress.ip_address(other_ip).is_loopback:
            return route_source(other_ip)
    return ip


def node_ip(head: str) -> str:
    """This node's address: the one it would use to talk to the head."""
    return route_source(head)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child counts as dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def wait_port(ip: str, port: int, timeout: float, pid: int | None = None) -> int:
    """Wait until something accepts TCP connections at ``ip:port``.

    Returns 0 when it does, 1 if ``pid`` (the srun step) died first, 2 on timeout.
    """
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            with socket.create_connection((ip, port), timeout=2):
                return 0
        except OSError:
            pass
        if pid is not None and not pid_alive(pid):
            print(f"jobtools: the cluster step (pid {pid}) ended before {ip}:{port} answered",
                  file=sys.stderr)
            return 1
        if time.monotonic() > deadline:
            print(f"jobtools: nothing answered at {ip}:{port} within {timeout:g}s", file=sys.stderr)
            return 2
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def wait_nodes(count: int, timeout: float, engine: str = "miniray") -> int:
    """Wait until the cluster at MINIRAY_ADDRESS (RAY_ADDRESS for Ray) reports ``count`` live nodes
    (0) or time out (2).  Ray and miniray answer ``nodes()`` alike."""
    try:
        if engine == "ray":
            import ray as miniray

            miniray.init(address=os.environ.get("RAY_ADDRESS") or os.environ["MINIRAY_ADDRESS"],
                         log_to_driver=False)
        else:
            import miniray

            miniray.init(address="auto")
    except Exception as e:  # noqa: BLE001 - any failure only means "could not check"
        print(f"jobtools: cannot ask the cluster for its nodes: {e!r}", file=sys.stderr)
        return 3
    try:
        deadline = time.monotonic() + timeout
        while True:
            alive = [n for n in miniray.nodes() if n.get("Alive", n.get("alive", True))]
            if len(alive) >= count:
                return 0
            if time.monotonic() > deadline:
                print(f"jobtools: {len(alive)} of {count} nodes joined", file=sys.stderr)
                return 2
            time.sleep(0.2)
    finally:
        miniray.shutdown()


def kill_tree(pid: int, grace: float = 5.0) -> int:
    """SIGTERM ``pid`` and all its descendants, then SIGKILL whatever is left after ``grace``."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = root.children(recursive=True) + [root]
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m miniray.launchers.jobtools",
                                     description="Helpers for the miniray Slurm job script.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("token").add_argument("file")
    sub.add_parser("free-port").add_argument("ip", nargs="?", default="")
    sub.add_parser("head-ip").add_argument("hosts", nargs="+")
    sub.add_parser("node-ip").add_argument("head_ip")
    p = sub.add_parser("wait-port")
    p.add_argument("ip")
    p.add_argument("port", type=int)
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--pid", type=int)
    p = sub.add_parser("wait-nodes")
    p.add_argument("count", type=int)
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--engine", choices=("miniray", "ray"), default="miniray")
    sub.add_parser("kill-tree").add_argument("pid", type=int)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "token":
            make_token(args.file)
        elif args.cmd == "free-port":
            print(free_port(args.ip))
        elif args.cmd == "head-ip":
            print(head_ip(args.hosts))
        elif args.cmd == "node-ip":
            print(node_ip(args.head_ip))
        elif args.cmd == "wait-port":
            return wait_port(args.ip, args.port, args.timeout, args.pid)
        elif args.cmd == "wait-nodes":
            return wait_nodes(args.count, args.timeout, args.engine)
        elif args.cmd == "kill-tree":
            return kill_tree(args.pid)
    except OSError as e:
        print(f"jobtools {args.cmd}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
