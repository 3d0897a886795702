"""The ``miniray.workflow`` functions (Ray 2.47's names): run, resume, inspect, cancel, delete.

    run(dag) ─► create(): plan, dag.pkl, workflow.json (PENDING) ─► drive(): lock, RUNNING,
                Executor.run() in this thread ─► SUCCESSFUL / FAILED / RESUMABLE / CANCELED
    run_async(dag) ─► create() here, drive() in a 0-CPU task ─► an ObjectRef of the output
    resume(id) ─► drive() again: saved steps are read back, the others run

Everything a workflow is lives in its storage directory (storage.py); these functions keep no state
but ``_config`` (the storage root and the limits given to ``init``).  A workflow whose status says
RUNNING but whose lock nobody holds lost its driver: it reads as RESUMABLE.
"""
from __future__ import annotations

import os
import time
import uuid

import miniray
from miniray.dag import DAGInputData
from miniray.workflow.common import (WorkflowCancellationError, WorkflowError, WorkflowExecutionError,
                                     WorkflowNotFoundError, WorkflowNotResumableError, WorkflowStatus)
from miniray.workflow.executor import Continuation, Executor, _step_context, plan
from miniray.workflow.storage import (Lock, Storage, atomic_write, check_id, default_root, dumps_code, is_locked,
                                      normalise_root)

_config = {"storage": None, "max_running": -1, "max_pending": -1}
S = WorkflowStatus


def init(storage=None, max_running_workflows: int | None = None, max_pending_workflows: int | None = None):
    """Choose the storage directory and the limits: at most ``max_running_workflows`` run at once
    (more wait, PENDING), at most ``max_pending_workflows`` wait (more raise).  -1: no limit."""
    for name, v in (("max_running_workflows", max_running_workflows),
                    ("max_pending_workflows", max_pending_workflows)):
        if v is not None and (not isinstance(v, int) or v < -1 or (v == 0 and name.startswith("max_run"))):
            raise ValueError(f"workflow.init({name}={v!r}): give a positive int, or -1 for no limit.")
    if storage is not None:
        _config["storage"] = normalise_root(storage)
    if max_running_workflows is not None:
        _config["max_running"] = max_running_workflows
    if max_pending_workflows is not None:
        _config["max_pending"] = max_pending_workflows
    _storage()


def _storage() -> Storage:
    st = Storage(_config["storage"] or normalise_root(default_root()))
    st.ensure()
    return st


def _pid_alive(pid) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def status_of(st: Storage, wid: str) -> WorkflowStatus:
    meta = st.meta(wid)
    status = S(meta.get("status", "NONE"))
    if status in (S.RUNNING, S.PENDING) and not is_locked(os.path.join(st.dir(wid), "lock")):
        if status == S.RUNNING or not _pid_alive(meta.get("queued_by")):
            return S.RESUMABLE
    return status


# -- starting and resuming ------------------------------------------------------------------------------
def create(st: Storage, wid: str, dag, args, kwargs, metadata) -> None:
    """Plan the DAG and save it, with the workflow's record (PENDING)."""
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError("workflow metadata must be a dict of JSON-able values.")
    steps, output_id = plan(dag, DAGInputData(args, kwargs), set())
    os.makedirs(os.path.join(st.dir(wid), "tasks"), exist_ok=True)
    blob = dumps_code((steps, output_id), [s.function._function for s in steps.values()])
    atomic_write(os.path.join(st.dir(wid), "dag.pkl"), blob)
    st.update_meta(wid, workflow_id=wid, status=S.PENDING.value, user_metadata=metadata or {},
                   output_task_id=output_id, num_steps=len(steps), created_time=time.time(),
                   queued_by=os.getpid())


def _claim(st: Storage, wid: str, max_running: int) -> Lock:
    """This workflow's lock; first, with a limit, wait for a free running slot."""
    lock = Lock(os.path.join(st.dir(wid), "lock"))
    if max_running in (None, -1):
        return lock.acquire(wid)
    import fcntl
    while True:
        with open(os.path.join(st.root, ".slots.lock"), "a") as slots:
            fcntl.flock(slots, fcntl.LOCK_EX)
            busy = sum(1 for w in st.ids() if w != wid and st.meta(w).get("status") == "RUNNING"
                       and is_locked(os.path.join(st.dir(w), "lock")))
            if busy < max_running:
                return lock.acquire(wid)
        time.sleep(0.05)


def drive(root: str, wid: str, max_running: int = -1, on_event=None):
    """Run (or resume) a stored workflow to its end in this process; returns its output."""
    st = Storage(root)
    lock = _claim(st, wid, max_running)
    try:
        meta = st.meta(wid)
        if meta.get("status") == S.SUCCESSFUL:
            return _load_output(st, wid, meta["output_task_id"])
        if meta.get("status") == S.CANCELED:
            raise WorkflowNotResumableError(wid, "it was canceled; run it again under a new id")
        try:
            os.unlink(os.path.join(st.dir(wid), "cancel"))
        except FileNotFoundError:
            pass
        steps, output_id = st.load_pickle(os.path.join(st.dir(wid), "dag.pkl"))
        st.update_meta(wid, status=S.RUNNING.value, owner_pid=os.getpid(), start_time=time.time(),
                       runs=meta.get("runs", 0) + 1, end_time=None)
        try:
            value = Executor(st, wid, steps, output_id, on_event).run()
        except WorkflowCancellationError:
            st.update_meta(wid, status=S.CANCELED.value, end_time=time.time())
            raise
        except BaseException as err:
            failed = isinstance(err, miniray.exceptions.RayTaskError)
            _save_error(st, wid, err)
            st.update_meta(wid, status=(S.FAILED if failed else S.RESUMABLE).value, end_time=time.time(),
                           error=f"{type(err).__name__}: {str(err)[:2000]}")
            raise
        st.update_meta(wid, status=S.SUCCESSFUL.value, end_time=time.time(), error=None)
        return value
    finally:
        lock.release()


def _save_error(st, wid, err) -> None:
    path = os.path.join(st.dir(wid), "error.pkl")
    try:
        st.save_pickle(path, err)
    except Exception:
        st.save_pickle(path, WorkflowExecutionError(wid, f"{type(err).__name__}: {err}"))


@miniray.remote(num_cpus=0, max_retries=0)
def _drive_task(root, wid, max_running):
    return drive(root, wid, max_running)


def _new_id(dag) -> str:
    name = getattr(getattr(dag, "_body", None), "__name__", "workflow")
    return f"{name}.{time.strftime('%Y%m%d-%H%M%S')}.{uuid.uuid4().hex[:6]}"


def _prepare(dag, args, kwargs, workflow_id, metadata) -> tuple:
    st = _storage()
    wid = check_id(workflow_id) if workflow_id is not None else _new_id(dag)
    if not st.exists(wid):       # an id used before resumes that workflow, as Ray does
        create(st, wid, dag, args, kwargs, metadata)
    return st, wid


def run(dag, *args, workflow_id: str | None = None, metadata: dict | None = None, **kwargs):
    """Run a DAG durably and return its output.  Each step's output is saved as it finishes; after a
    crash, ``resume(workflow_id)`` runs only what had not finished.  ``args``/``kwargs`` feed its
    InputNode."""
    st, wid = _prepare(dag, args, kwargs, workflow_id, metadata)
    return drive(st.root, wid, _config["max_running"], _event_hook(wid))


def run_async(dag, *args, workflow_id: str | None = None, metadata: dict | None = None, **kwargs):
    """``run`` in the background: returns an ObjectRef of the output at once."""
    st, wid = _prepare(dag, args, kwargs, workflow_id, metadata)
    return _start_async(st, wid)


def _start_async(st, wid):
    limit = _config["max_pending"]
    if limit not in (None, -1):
        waiting = [w for w, s in list_all(S.PENDING) if w != wid]
        if len(waiting) >= limit:
            raise WorkflowError(f"Too many workflows waiting to run ({len(waiting)}, max_pending_workflows="
                                f"{limit}): wait for some to finish, or raise the limit with "
                                "workflow.init(max_pending_workflows=...).")
    st.update_meta(wid, queued_by=os.getpid())
    return _drive_task.remote(st.root, wid, _config["max_running"])


def resume(workflow_id: str):
    """Finish a stopped workflow (RESUMABLE or FAILED): saved steps are read back, the rest run.
    Returns its output (a SUCCESSFUL workflow's saved output at once)."""
    st = _storage()
    st.require(workflow_id)
    return drive(st.root, workflow_id, _config["max_running"], _event_hook(workflow_id))


def resume_async(workflow_id: str):
    st = _storage()
    st.require(workflow_id)
    return _start_async(st, workflow_id)


def resume_all(include_failed: bool = False) -> list:
    """Resume every RESUMABLE workflow (and FAILED ones too, if asked): ``[(workflow_id, ObjectRef)]``."""
    wanted = {S.RESUMABLE} | ({S.FAILED} if include_failed else set())
    st = _storage()
    return [(wid, _start_async(st, wid)) for wid, status in list_all(wanted)]


# -- looking at workflows ------------------------------------------------------------------------------
def _load_output(st, wid, task_id):
    return st.load_pickle(st.output_path(wid, task_id))


def get_status(workflow_id: str) -> WorkflowStatus:
    st = _storage()
    st.require(workflow_id)
    return status_of(st, workflow_id)


def _wait_until_stopped(st, wid) -> WorkflowStatus:
    while True:
        status = status_of(st, wid)
        if status not in (S.RUNNING, S.PENDING):
            return status
        time.sleep(0.02)


def get_output(workflow_id: str, *, task_id: str | None = None):
    """The output of a workflow (waiting for it if it runs now), or of one of its steps.  A failed
    workflow raises the step's own exception type."""
    return _get_output(_storage(), workflow_id, task_id)


def _get_output(st: Storage, workflow_id: str, task_id: str | None):
    st.require(workflow_id)
    if task_id is not None:
        path = st.output_path(workflow_id, task_id)
        while not os.path.exists(path) and status_of(st, workflow_id) in (S.RUNNING, S.PENDING):
            time.sleep(0.02)
        if os.path.exists(path):
            return st.load_pickle(path)
        saved = [t for t in st.task_ids(workflow_id) if os.path.exists(st.output_path(workflow_id, t))]
        raise WorkflowNotFoundError(f"Workflow {workflow_id!r} has no saved output for task {task_id!r}. "
                                    f"Tasks with saved outputs: {saved or 'none yet'}.")
    status = _wait_until_stopped(st, workflow_id)
    meta = st.meta(workflow_id)
    if status == S.SUCCESSFUL:
        return _load_output(st, workflow_id, meta["output_task_id"])
    if status == S.CANCELED:
        raise WorkflowCancellationError(workflow_id)
    err_path = os.path.join(st.dir(workflow_id), "error.pkl")
    if status == S.FAILED and os.path.exists(err_path):
        raise st.load_pickle(err_path)
    raise WorkflowExecutionError(workflow_id, f"Workflow {workflow_id!r} has no output: it is {status.value}"
                                 f"{' (' + meta['error'] + ')' if meta.get('error') else ''}. Finish it "
                                 f"with workflow.resume({workflow_id!r}).")


@miniray.remote(num_cpus=0, max_retries=0)
def _get_output_task(root, wid, task_id):
    return _get_output(Storage(root), wid, task_id)


def get_output_async(workflow_id: str, *, task_id: str | None = None):
    st = _storage()
    st.require(workflow_id)
    return _get_output_task.remote(st.root, workflow_id, task_id)


def list_all(status_filter=None) -> list:
    """``[(workflow_id, WorkflowStatus)]``, for one status, a set of them (names work too), or all."""
    if status_filter is None:
        wanted = set(S)
    elif isinstance(status_filter, (str, S)):
        wanted = {S(status_filter)}
    elif isinstance(status_filter, (set, frozenset, list, tuple)):
        wanted = {S(s) for s in status_filter}
    else:
        raise TypeError("status_filter must be a WorkflowStatus (or its name), or a set of them.")
    st = _storage()
    out = []
    for wid in st.ids():
        status = status_of(st, wid)
        if status in wanted:
            out.append((wid, status))
    return out


def get_metadata(workflow_id: str, task_id: str | None = None) -> dict:
    """The workflow's record (status, user_metadata, stats with start/end times), or one step's."""
    st = _storage()
    st.require(workflow_id)
    if task_id is None:
        meta = st.meta(workflow_id)
        return {**meta, "status": status_of(st, workflow_id).value,
                "stats": {"start_time": meta.get("start_time"), "end_time": meta.get("end_time")}}
    meta = st.task_meta(workflow_id, task_id)
    if meta is None:
        steps, _ = st.load_pickle(os.path.join(st.dir(workflow_id), "dag.pkl"))
        if task_id in steps:
            return {"task_id": task_id, "name": steps[task_id].name, "status": "PENDING",
                    "task_options": steps[task_id].task_options, "user_metadata": steps[task_id].user_metadata,
                    "stats": {}}
        raise WorkflowNotFoundError(f"Workflow {workflow_id!r} has no task {task_id!r}. Its tasks: "
                                    f"{sorted(set(steps) | set(st.task_ids(workflow_id)))}.")
    return {**meta, "stats": {"start_time": meta.get("start_time"), "end_time": meta.get("end_time")}}


def cancel(workflow_id: str) -> None:
    """Stop a workflow: its running steps are cancelled, it becomes CANCELED and cannot be resumed.
    Saved outputs stay until ``delete``."""
    st = _storage()
    st.require(workflow_id)
    atomic_write(os.path.join(st.dir(workflow_id), "cancel"), str(os.getpid()).encode())
    deadline = time.monotonic() + 10
    while is_locked(os.path.join(st.dir(workflow_id), "lock")) and time.monotonic() < deadline:
        time.sleep(0.02)
    if status_of(st, workflow_id) != S.SUCCESSFUL:
        st.update_meta(workflow_id, status=S.CANCELED.value, end_time=time.time())


def delete(workflow_id: str) -> None:
    """Remove a workflow and everything saved for it; a running one must be cancelled first."""
    st = _storage()
    st.require(workflow_id)
    if is_locked(os.path.join(st.dir(workflow_id), "lock")):
        from miniray.workflow.common import WorkflowRunningError
        raise WorkflowRunningError(f"Workflow {workflow_id!r} is running; cancel it first "
                                   f"(workflow.cancel({workflow_id!r})), then delete it.")
    st.delete(workflow_id)


def continuation(dag):
    """Inside a step: "my result is the result of this DAG", which the workflow runs (durably) next;
    loops and recursion are written this way.  Outside a workflow it just runs the DAG."""
    if getattr(_step_context, "active", False):
        return Continuation(dag)
    return miniray.get(dag.execute())


def _event_hook(wid):
    from miniray.workflow.events import step_event_hook
    return step_event_hook(wid)
