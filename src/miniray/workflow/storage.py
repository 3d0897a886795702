"""Workflow storage: one directory per workflow, laid out for people to read, written atomically.

    <root>/                         workflow.init(storage=...), $MINIRAY_WORKFLOW_STORAGE, or
      <workflow_id>/                $TMPDIR/miniray-workflows-<uid>
        workflow.json               status, user metadata, start/end times, the output task's id
        dag.pkl                     the steps (a flat table, see executor.py) and the inputs
        lock                        held (flock) by the process running it; holds that pid
        cancel                      present once workflow.cancel() asked it to stop
        error.pkl                   the exception that failed it
        tasks/
          <task_id>.json            name, options, status, start/end times, traceback
          <task_id>.pkl             the saved output: its presence means "finished, never run again"
          <task_id>.continuation.pkl  the sub-workflow the step returned (its steps carry their ids)

Outputs and continuations are written whole or not at all: a temporary file in the same directory, fsync, rename
(``atomic_write``).  A reader therefore never sees half an output, and a SIGKILL at any moment leaves
either the old file or the new one.  A step's ``.json`` is a report for people (and
``get_metadata``), written in place without fsync: one file creation less per step, which costs as
much as the fsync on a busy disk; a torn one reads as missing.  Locks are ``flock`` locks, which the kernel drops when their
process dies, so a dead owner's workflow is simply free to resume.

Workers (steps) and drivers share nothing but this directory.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import pickle
import shutil
import sys
import sysconfig
import tempfile

import cloudpickle

from miniray.workflow.common import WorkflowNotFoundError, WorkflowRunningError


_INSTALLED = tuple({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")})


def dumps_code(obj, functions) -> bytes:
    """cloudpickle ``obj``; the modules of ``functions`` that are not installed packages (a script, a
    test file, a notebook's neighbour) travel by value, so another process resumes without them."""
    mods = set()
    for fn in functions:
        module = sys.modules.get(getattr(fn, "__module__", "") or "")
        path = getattr(module, "__file__", None) or ""
        if module is not None and path and not path.startswith(_INSTALLED) and \
                module.__name__ != "__main__" and not module.__name__.startswith("miniray"):
            mods.add(module)
    for m in mods:
        cloudpickle.register_pickle_by_value(m)
    try:
        return cloudpickle.dumps(obj)
    finally:
        for m in mods:
            cloudpickle.unregister_pickle_by_value(m)


def default_root() -> str:
    """``miniray.init(storage=...)`` (as ``$MINIRAY_STORAGE``), else ``$MINIRAY_WORKFLOW_STORAGE``,
    else a directory under the temp dir."""
    shared = os.environ.get("MINIRAY_STORAGE")
    if shared:
        return normalise_root(shared)
    env = os.environ.get("MINIRAY_WORKFLOW_STORAGE")
    if env:
        return env
    return os.path.join(tempfile.gettempdir(), f"miniray-workflows-{os.getuid()}")


def normalise_root(storage) -> str:
    storage = os.fspath(storage)
    if storage.startswith("file://"):
        storage = storage[len("file://"):]
    if "://" in storage:
        raise ValueError(f"workflow storage {storage!r}: miniray stores workflows in a local (or shared) "
                         "directory; give a path such as '/tmp/workflows' or 'file:///tmp/workflows'.")
    return os.path.abspath(os.path.expanduser(storage))


def atomic_write(path: str, data: bytes, sync: bool = True) -> None:
    """Write ``data`` to ``path`` whole or not at all: temp file, fsync, rename."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_json(path: str, doc: dict, sync: bool = True) -> None:
    atomic_write(path, (json.dumps(doc, indent=1, default=str) + "\n").encode(), sync)


def read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):     # missing, or torn by a crash while written in place
        return None


def write_report(path: str, doc: dict) -> None:
    """A JSON report for people, written in place (no temp file, no fsync)."""
    with open(path, "w") as f:
        f.write(json.dumps(doc, indent=1, default=str) + "\n")


def check_id(workflow_id) -> str:
    if not isinstance(workflow_id, str) or not workflow_id:
        raise TypeError(f"workflow_id must be a non-empty string, got {workflow_id!r}.")
    if "/" in workflow_id or workflow_id.startswith(".") or len(workflow_id) > 200:
        raise ValueError(f"workflow_id {workflow_id!r}: use letters, digits, '-', '_' and '.', no '/', "
                         "not starting with '.', at most 200 characters (it names a directory).")
    return workflow_id


class Storage:
    """The directory of all workflows (``root``) and the paths inside one workflow's directory."""

    def __init__(self, root: str):
        self.root = root

    def ensure(self) -> None:
        os.makedirs(self.root, exist_ok=True)

    def dir(self, wid: str) -> str:
        return os.path.join(self.root, wid)

    def output_path(self, wid: str, task_id: str) -> str:
        return os.path.join(self.root, wid, "tasks", task_id + ".pkl")

    def meta_path(self, wid: str, task_id: str) -> str:
        return os.path.join(self.root, wid, "tasks", task_id + ".json")

    def continuation_path(self, wid: str, task_id: str) -> str:
        return os.path.join(self.root, wid, "tasks", task_id + ".continuation.pkl")

    def exists(self, wid: str) -> bool:
        return os.path.exists(os.path.join(self.dir(wid), "workflow.json"))

    def ids(self) -> list:
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        return [n for n in names if not n.startswith(".") and self.exists(n)]

    def require(self, wid: str) -> None:
        """Raise WorkflowNotFoundError naming the workflows there are, unless ``wid`` is stored."""
        check_id(wid)
        if not self.exists(wid):
            known = self.ids()
            listing = ", ".join(repr(k) for k in known[:20]) + (" ..." if len(known) > 20 else "")
            raise WorkflowNotFoundError(
                f"No workflow {wid!r} in storage {self.root}. Known workflows: {listing or 'none'}. "
                "(workflow.init(storage=...) or $MINIRAY_WORKFLOW_STORAGE choose the directory.)")

    # -- workflow-level documents --------------------------------------------------------------
    def meta(self, wid: str) -> dict:
        return read_json(os.path.join(self.dir(wid), "workflow.json")) or {}

    def update_meta(self, wid: str, **fields) -> dict:
        doc = {**self.meta(wid), **fields}
        write_json(os.path.join(self.dir(wid), "workflow.json"), doc)
        return doc

    def save_pickle(self, path: str, value, sync: bool = True) -> None:
        atomic_write(path, cloudpickle.dumps(value), sync)

    def load_pickle(self, path: str):
        with open(path, "rb") as f:
            return pickle.load(f)

    def task_meta(self, wid: str, task_id: str) -> dict | None:
        return read_json(self.meta_path(wid, task_id))

    def task_ids(self, wid: str) -> list:
        try:
            names = os.listdir(os.path.join(self.dir(wid), "tasks"))
        except FileNotFoundError:
            return []
        return sorted({n.split(".")[0] for n in names if n.endswith(".json") and not n.startswith(".")})

    def delete(self, wid: str) -> None:
        shutil.rmtree(self.dir(wid))


class Lock:
    """The ``lock`` file of one workflow, held with ``flock`` by the process that runs it."""

    def __init__(self, path: str):
        self.path = path
        self.fd = None

    def acquire(self, wid: str) -> "Lock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        for _ in range(20):     # a reader probing the lock holds it for a moment: try again
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                import time
                time.sleep(0.005)
        else:
            owner = owner_pid(self.path)
            os.close(fd)
            raise WorkflowRunningError(
                f"Workflow {wid!r} is already running in another driver (pid {owner}). Only one process "
                f"runs a workflow at a time: wait for it (workflow.get_output({wid!r})), or stop it with "
                f"workflow.cancel({wid!r}).")
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)     # closing drops the flock
            self.fd = None


def owner_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0) or None
    except (FileNotFoundError, ValueError):
        return None


def is_locked(path: str) -> bool:
    """Whether a live process holds the lock (a shared probe, let go at once)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)
