"""Session directories and starting one node's machinery (store, event log, Node thread).

Used by ``init()`` for a local runtime and by ``miniray start --head`` for a cluster head.  A session
directory lives under ``$TMPDIR/miniray-<uid>/`` (mode 0700, owned by the user, never shared with
other users) and holds the node's socket, its spill directory, and for a head its token (0600) and
``head.json`` (address, pid) for ``init(address="auto")``.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid

import psutil


def pid_alive(pid: int) -> bool:
    """True for a running process; a zombie (killed, not yet reaped) counts as dead."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def sessions_root() -> str:
    root = os.path.join(tempfile.gettempdir(), f"miniray-{os.getuid()}")
    os.makedirs(root, mode=0o700, exist_ok=True)
    st = os.stat(root)
    if st.st_uid != os.getuid():
        raise PermissionError(f"{root} belongs to another user; set TMPDIR to a directory of your own.")
    return root


def new_session_dir(kind: str = "session") -> str:
    path = os.path.join(sessions_root(), f"{kind}_{time.strftime('%Y%m%d-%H%M%S')}_{os.getpid()}")
    os.makedirs(path, mode=0o700)
    return path


def reap_stale_sessions() -> list:
    """Remove shared memory and session directories left by drivers that died (SIGKILL)."""
    removed = []
    try:
        names = os.listdir("/dev/shm")
    except FileNotFoundError:
        names = []
    for name in names:
        parts = name.split("_")
        if name.startswith("miniray_") and len(parts) >= 3 and parts[1].isdigit() and not pid_alive(int(parts[1])):
            try:
                os.unlink(os.path.join("/dev/shm", name))
                removed.append(name)
            except OSError:
                pass
    root = sessions_root()
    for d in os.listdir(root):
        pid = d.rsplit("_", 1)[-1].removesuffix(".json")
        if pid.isdigit() and not pid_alive(int(pid)):
            p = os.path.join(root, d)
            try:        # a dead driver's workers may be removing it at this very moment
                shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else os.unlink(p)
            except FileNotFoundError:
                pass
    return removed


def default_store_size() -> int:
    ram = psutil.virtual_memory().total
    try:
        st = os.statvfs("/dev/shm")
        shm = st.f_bavail * st.f_frsize
    except OSError:
        shm = ram
    return int(min(0.3 * ram, 0.95 * shm))


def detect_gpus() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        return len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return 0


def start_node(*, num_cpus, num_gpus, resources, object_store_memory, inline_max, session_dir,
               node_ip="127.0.0.1"):
    """Arena, store, event log and Node for this machine, the store's callbacks connected to the
    node (ObjectStore.connect); the Node is built but not started."""
    from miniray.events import EventLog
    from miniray.scheduler.node import Node
    from miniray.store.arena import Arena
    from miniray.store.objects import ObjectStore

    cpus = num_cpus if num_cpus is not None else len(os.sched_getaffinity(0))
    gpus = num_gpus if num_gpus is not None else detect_gpus()
    capacity = int(object_store_memory or default_store_size())
    node_id = uuid.uuid4().hex
    arena = Arena.create(f"miniray_{os.getpid()}_{uuid.uuid4().hex[:8]}", capacity)
    events = EventLog()
    store = ObjectStore(arena, os.path.join(session_dir, "spill"), node_id, events)
    total = {"CPU": float(cpus), "memory": float(psutil.virtual_memory().total * 0.7),
             "object_store_memory": float(capacity), f"node:{node_ip}": 1.0, f"node_id:{node_id}": 1000.0}
    if gpus:
        total["GPU"] = float(gpus)
    total.update({k: float(v) for k, v in (resources or {}).items()})
    node = Node(session_dir=session_dir, node_id=node_id, total=total, store=store, events=events,
                num_workers=int(cpus) or 1, inline_max=inline_max, node_ip=node_ip)
    store.connect(on_ready=node._object_ready, on_handles_gone=node._handles_gone,
                  free_remote=node.nodes.free_remote, on_freed=node.nodes.object_freed)
    return node


def write_info_file(address: str, session_dir: str, kind: str = "head", **more) -> str:
    """Announce a head (or a joined node: ``kind="node"``) of this user on this machine, for
    ``init(address="auto")``, ``miniray status`` and ``miniray stop``."""
    path = os.path.join(sessions_root(), f"{kind}_{os.getpid()}.json")
    started = psutil.Process().create_time()      # with the pid, names this very process
    with open(path + ".tmp", "w") as f:
        json.dump({"address": address, "pid": os.getpid(), "session_dir": session_dir, "started": started,
                   **more}, f)
    os.replace(path + ".tmp", path)
    return path


def daemon_session_dir(kind: str) -> str:
    """The session directory of a head or node: MINIRAY_SESSION_DIR (a launcher's, e.g. Slurm's,
    kept after exit) or a fresh one of our own."""
    sdir = os.environ.get("MINIRAY_SESSION_DIR") or new_session_dir(kind)
    os.makedirs(sdir, mode=0o700, exist_ok=True)
    return sdir


def end_daemon_session(info_file: str, sdir: str) -> None:
    """Undo ``write_info_file`` and ``daemon_session_dir`` at a clean exit."""
    try:
        os.unlink(info_file)
    except FileNotFoundError:
        pass
    if not os.environ.get("MINIRAY_SESSION_DIR"):
        shutil.rmtree(sdir, ignore_errors=True)


def live_heads(prefix: str = "head_") -> list[dict]:
    """Heads started by this user on this machine, newest first."""
    heads = []
    root = sessions_root()
    for name in os.listdir(root):
        if name.startswith(prefix) and name.endswith(".json"):
            try:
                with open(os.path.join(root, name)) as f:
                    info = json.load(f)
            except (OSError, ValueError):
                continue
            if is_that_process(info):
                info["file"] = os.path.join(root, name)
                heads.append(info)
    return sorted(heads, key=lambda h: -os.path.getmtime(h["file"]))


def is_that_process(info: dict) -> bool:
    """Is the process a head or node file names still running, and still that process?  A head
    killed by SIGKILL leaves its file; its pid may since belong to anything (``miniray stop`` must
    not signal it).  The start time written with the pid tells them apart; a file without one
    must at least name a live ``miniray start`` (``python -m miniray.cli start`` or the ``miniray``
    script): a path that merely contains "miniray", such as a clone's venv, is not one."""
    try:
        proc = psutil.Process(int(info["pid"]))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if "started" in info:
            return abs(proc.create_time() - float(info["started"])) < 0.5
        cmd = proc.cmdline()
        return "start" in cmd and any(p == "miniray.cli" or os.path.basename(p) == "miniray" for p in cmd)
    except (psutil.Error, KeyError, TypeError, ValueError):
        return False


def live_nodes() -> list[dict]:
    """Nodes (``miniray start --address``) started by this user on this machine."""
    return live_heads("node_")
