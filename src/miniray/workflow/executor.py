"""Running a workflow durably: a flat table of steps, each a miniray task that saves its own output.

    bound DAG ──plan()──► steps {task_id: Step} ──save──► dag.pkl
                                     │
    Executor.run() (the driver, or a 0-CPU task for run_async)
      main loop: submit every needed step whose inputs are finished or   ──► run_step (a worker)
                 on their way (a running step's value ref)                    │ runs the function
                 wait for any running step                                    │ saves <id>.pkl
                 finished: remember where its value is (its ref)              │ (temp, fsync, rename)
                 returned a continuation: plan it, save it, add its steps ◄───┘ then returns
                 cancel file present: cancel what runs, CANCELED

Invariant: a step's output is on disk before the task that made it returns, so before any step that
takes it can start (the node starts a task only once its ObjectRef inputs are ready); and a step whose
output is on disk never runs again (the executor does not submit it, and ``run_step`` itself returns
the saved output if a retry finds one).  Resuming is therefore "plan from dag.pkl, mark what has a
<task_id>.pkl as finished, run the rest".

Steps are submitted as soon as their inputs are on their way, as ``execute()`` does, so a chain needs
no round trip through the driver per step.  The one catch is a continuation: the step that returned it
has a placeholder value (ContinuationPending) until its sub-workflow ends.  A step that receives a
placeholder does not run: it answers "deferred" (and a placeholder of its own), and the driver submits
it again once the real value exists.

State owned (driver side, one thread): ``steps`` (task_id -> Step), ``done`` (task_id -> ObjectRef or
Saved: where a finished step's value is), ``running`` (the marker ref of a running step -> task_id),
``coming`` (a running step's value ref), ``parent_of``/``cont_of`` (a continuation's output step <->
the step that returned it).  A step's task has two returns: a small marker (None, "deferred", or
("continuation", dag)) the loop waits on, and the value, which flows to the steps that take it as an
ObjectRef, never through the driver.
"""
from __future__ import annotations

import os
import threading
import time
import traceback
from dataclasses import dataclass, field

import cloudpickle

import miniray
from miniray.dag import (ClassMethodNode, ClassNode, DAGInputData, DAGNode, FunctionNode, InputAttributeNode,
                         InputNode, MultiOutputNode, _map_nodes, walk)
from miniray.workflow.common import OPTIONS_KEY, WorkflowCancellationError
from miniray.workflow.storage import Storage, atomic_write, dumps_code, read_json, write_report

_step_context = threading.local()      # set while a step's function runs (for continuation())


@dataclass
class Dep:
    """In a step's argument template: "the value of step ``task_id`` goes here"."""
    task_id: str


@dataclass
class Saved:
    """A finished step's value, on disk: the task that needs it reads it there."""
    path: str


@dataclass
class Step:
    task_id: str
    name: str
    function: object                 # the RemoteFunction
    args: tuple                      # templates: Dep(...) where another step's value goes
    kwargs: dict
    deps: tuple                      # task ids, in order of first use
    task_options: dict = field(default_factory=dict)    # num_cpus and the like, for the task
    checkpoint: bool = True
    catch_exceptions: bool = False
    max_retries: int = 3
    retry_exceptions: object = False
    user_metadata: dict = field(default_factory=dict)


class Continuation:
    """What ``workflow.continuation(dag)`` returns inside a step: "my result is this DAG's result"."""

    def __init__(self, dag):
        self.dag = dag


class ContinuationPending:
    """The value of a step that returned a continuation, until that continuation finishes."""


def plan(dag, inputs: DAGInputData, taken: set) -> tuple[dict, str]:
    """The steps of a bound DAG, in a topological order, with their task ids; and the output's id.
    ``taken``: ids already used in this workflow (updated).  Ids are the function's name, then
    ``name_1``, ``name_2``...: deterministic for a given DAG, so a resumed plan matches the saved one."""
    if not isinstance(dag, DAGNode):
        raise TypeError(f"a workflow runs a bound DAG (f.bind(...)), got {type(dag).__name__}. Build it "
                        "with .bind() instead of .remote().")
    if isinstance(dag, MultiOutputNode):
        raise TypeError("workflow.run() needs one output step: bind a function that takes the outputs and "
                        "returns them together, e.g. collect.bind(a, b).")
    if not isinstance(dag, FunctionNode):
        raise TypeError(f"the output of a workflow must be a bound remote function, got {dag.label()}.")
    steps, ids = {}, {}
    for node in walk(dag):
        if isinstance(node, (ClassNode, ClassMethodNode)):
            raise TypeError(f"workflow steps must be remote functions; {node.label()} is an actor (class "
                            "or method). Actors' state is not durable: call the actor inside a step.")
        if not isinstance(node, FunctionNode):
            continue
        wf = dict((node.get_options().get("_metadata") or {}).get(OPTIONS_KEY) or {})
        name = node._body._function.__name__
        tid = wf.get("task_id")
        if tid is not None and tid in taken:
            raise ValueError(f"task_id {tid!r} is used twice in this workflow; give each step its own id.")
        if tid is None:
            tid, n = name, 0
            while tid in taken:
                n += 1
                tid = f"{name}_{n}"
        taken.add(tid)
        ids[id(node)] = tid
        deps: list = []

        def fill(child, deps=deps):
            if isinstance(child, FunctionNode):
                if ids[id(child)] not in deps:
                    deps.append(ids[id(child)])
                return Dep(ids[id(child)])
            if isinstance(child, InputNode):
                return inputs.value()
            if isinstance(child, InputAttributeNode):
                return child.resolve(inputs)
            raise TypeError(f"{child.label()} cannot be a step's input in a workflow.")

        args = tuple(_map_nodes(a, fill) for a in node.get_args())
        kwargs = {k: _map_nodes(v, fill) for k, v in node.get_kwargs().items()}
        opts = node.get_options()
        if opts.get("num_returns", 1) != 1:
            raise ValueError(f"workflow step {tid!r}: num_returns={opts['num_returns']!r} is not supported; a "
                             "step returns one value (return a tuple and take it apart in the next step).")
        task_options = {k: v for k, v in opts.items() if k not in ("_metadata", "max_retries", "retry_exceptions",
                                                                    "num_returns")}
        steps[tid] = Step(tid, name, node._body, args, kwargs, tuple(deps), task_options,
                          wf.get("checkpoint", True) is not False, bool(wf.get("catch_exceptions", False)),
                          int(wf.get("max_retries", opts.get("max_retries", 3))),
                          wf.get("retry_exceptions", opts.get("retry_exceptions", False)),
                          dict(wf.get("metadata") or {}))
    return steps, ids[id(dag)]


# -- the worker side: one step -------------------------------------------------------------------------
_functions: dict = {}     # pickled function -> function, in a worker


def _resolve(value):
    if type(value) is Saved:
        with open(value.path, "rb") as f:
            return cloudpickle.loads(f.read())
    return value


def _fill(template, values: dict):
    if type(template) is Dep:
        return values[template.task_id]
    if type(template) in (list, tuple):
        return type(template)(_fill(v, values) for v in template)
    if type(template) is dict:
        return {k: _fill(v, values) for k, v in template.items()}
    return template


def _may_retry(err, retry_exceptions) -> bool:
    if retry_exceptions is True:
        return True
    if isinstance(retry_exceptions, (list, tuple)):
        return isinstance(err, tuple(retry_exceptions))
    return False


def run_step(ctx, *dep_values):
    """A step, in a worker: run the function (retrying exceptions as asked), save the output, return
    (marker, value).  A retry of a step whose output is saved returns that output, unrun."""
    wf_dir, tid, blob, args, kwargs, deps, checkpoint, catch, max_retries, retry, meta = ctx
    out_path = os.path.join(wf_dir, "tasks", tid + ".pkl")
    meta_path = os.path.join(wf_dir, "tasks", tid + ".json")
    if checkpoint and os.path.exists(out_path):
        return None, _resolve(Saved(out_path))
    if any(type(v) is ContinuationPending for v in dep_values):
        return "deferred", ContinuationPending()   # an input is still a continuation: resubmitted later
    fn = _functions.get(blob)
    if fn is None:
        fn = _functions[blob] = cloudpickle.loads(blob)
    values = {d: _resolve(v) for d, v in zip(deps, dep_values)}
    args, kwargs = _fill(args, values), _fill(kwargs, values)
    start, attempt, error = time.time(), 0, None
    _step_context.active = True
    try:
        while True:
            try:
                out = fn(*args, **kwargs)
                error = None
                break
            except Exception as err:
                error = err
                if attempt < max_retries and _may_retry(err, retry):
                    attempt += 1
                    continue
                break
    finally:
        _step_context.active = False
    meta = {**meta, "task_id": tid, "start_time": start, "end_time": time.time(), "attempts": attempt + 1}
    if error is not None and not catch:
        meta.update(status="FAILED", error=type(error).__name__,
                    traceback="".join(traceback.format_exception(error)))
        write_report(meta_path, meta)
        raise error
    if catch:
        out = (None, error) if error is not None else (out, None)
    if isinstance(out, Continuation):
        meta.update(status="CONTINUED")
        write_report(meta_path, meta)
        return ("continuation", out.dag), ContinuationPending()
    if checkpoint:
        try:
            data = cloudpickle.dumps(out)
        except Exception as err:
            raise TypeError(f"workflow step {tid!r} ({meta['name']}) returned a {type(out).__name__} that "
                            f"cannot be pickled ({type(err).__name__}: {err}), so it cannot be saved. Return "
                            "plain data (numbers, strings, lists, dicts, arrays), or give this step "
                            "workflow.options(checkpoint=False).") from err
        atomic_write(out_path, data)
    meta.update(status="SUCCESSFUL", checkpointed=checkpoint)
    write_report(meta_path, meta)
    return None, out


_run_step = miniray.remote(num_returns=2, max_retries=3)(run_step)


# -- the driver side: the loop -------------------------------------------------------------------------
class Executor:
    """Runs one workflow's steps until its output step is finished (see the module docstring)."""

    def __init__(self, storage: Storage, wid: str, steps: dict, output_id: str, on_event=None):
        self.st, self.wid, self.dir = storage, wid, storage.dir(wid)
        self.steps: dict = {}
        self.output_id = output_id
        self.done: dict = {}             # task_id -> ObjectRef | Saved
        self.running: dict = {}          # marker ref -> task_id
        self.coming: dict = {}           # task_id of a running step -> the ref its value will have
        self.submitted: set = set()
        self.needed: set = set()         # unfinished steps the output needs
        self.consumers: dict = {}        # task_id -> the steps that take its value
        self.parent_of: dict = {}        # continuation output id -> the step that returned it
        self.cont_of: dict = {}          # that step -> its continuation's output id
        self.taken: set = set()
        self.blobs: dict = {}            # id(RemoteFunction) -> its pickled function
        self.bound: dict = {}            # (name, options) -> _run_step.options(...)
        self.cancel_path = os.path.join(self.dir, "cancel")
        self.on_event = on_event or (lambda *a: None)
        self._add(steps)

    def _add(self, steps: dict) -> None:
        """Take in steps (the plan, or a continuation's); those with a saved output are finished,
        those with a saved continuation are re-planned from it."""
        self.steps.update(steps)
        self.taken.update(steps)
        for tid, step in steps.items():
            for d in step.deps:
                self.consumers.setdefault(d, []).append(tid)
        for tid in steps:
            path = self.st.output_path(self.wid, tid)
            if os.path.exists(path):
                self.done[tid] = Saved(path)
                self.on_event(tid, self.steps[tid], "restored")
                continue
            cont = self.st.continuation_path(self.wid, tid)
            if os.path.exists(cont):
                self._adopt(tid, *self.st.load_pickle(cont))

    def _adopt(self, parent: str, sub: dict, sub_out: str) -> None:
        self.parent_of[sub_out], self.cont_of[parent] = parent, sub_out
        self.submitted.add(parent)
        self._add(sub)
        if sub_out in self.done:
            self._finish_continuation(sub_out)

    def run(self):
        try:
            return self._loop()
        except Exception as exc:    # a failed step: the steps already running may finish (each
            if not isinstance(exc, WorkflowCancellationError):   # saves its own output), so a
                self._let_running_finish()                       # resume does not run them again
            self._stop_running()
            raise
        except BaseException:       # Ctrl-C: nothing of ours keeps running
            self._stop_running()
            raise

    def _let_running_finish(self, grace_s: float = 5.0) -> None:
        """Wait up to ``grace_s`` for the steps still running when another failed."""
        if self.running:
            miniray.wait(list(self.running), num_returns=len(self.running), timeout=grace_s)

    # Main loop
    def _loop(self):
        self._plan_needed()
        looked = time.monotonic()
        while self.output_id not in self.done:
            if not self.running:
                raise RuntimeError(f"workflow {self.wid!r}: no step can run and the output is not ready.")
            ready, _ = miniray.wait(list(self.running), num_returns=1, timeout=0.1)
            if ready and len(self.running) > 1:
                ready, _ = miniray.wait(list(self.running), num_returns=len(self.running), timeout=0)
            deferred = [tid for tid in map(self._finished, ready) if tid]
            for tid in deferred:
                self._maybe_submit(tid)
            if time.monotonic() - looked > 0.05:       # a cancel file: looked for 20 times a second
                looked = time.monotonic()
                if os.path.exists(self.cancel_path):
                    self._cancel()
        return self.value_of(self.output_id)

    def value_of(self, tid: str):
        src = self.done[tid]
        return _resolve(src) if type(src) is Saved else miniray.get(src)

    def _plan_needed(self, root: str | None = None) -> None:
        """Find the unfinished steps ``root`` (the output) still needs; submit those that can start."""
        stack, seen = [root or self.output_id], set()
        while stack:
            tid = stack.pop()
            if tid in seen or tid in self.done:
                continue
            seen.add(tid)
            stack.extend(self.steps[tid].deps)
            if tid in self.cont_of:
                stack.append(self.cont_of[tid])
        self.needed.update(seen)
        for tid in seen:
            self._maybe_submit(tid)

    def _maybe_submit(self, first: str) -> None:
        """Submit ``first`` if each input is finished or on its way (a running step's value ref: the
        task waits for it, and it is saved before it is ready); then, the same way, its consumers."""
        todo = [first]
        while todo:
            tid = todo.pop()
            step = self.steps[tid]
            if tid in self.needed and tid not in self.submitted and \
                    all(d in self.done or d in self.coming for d in step.deps):
                self._submit(step)
                todo.extend(self.consumers.get(tid, ()))

    def _submit(self, step: Step) -> None:
        fn = step.function
        blob = self.blobs.get(id(fn))
        if blob is None:
            blob = self.blobs[id(fn)] = dumps_code(fn._function, [fn._function])
        key = (step.name, repr(sorted(step.task_options.items())), step.max_retries)
        task = self.bound.get(key)
        if task is None:
            opts = {**step.task_options, "name": step.task_options.get("name", step.name),
                    "max_retries": step.max_retries if step.max_retries >= 0 else 1000}
            task = self.bound[key] = _run_step.options(**opts)
        meta = {"name": step.name, "task_options": step.task_options, "user_metadata": step.user_metadata}
        ctx = (self.dir, step.task_id, blob, step.args, step.kwargs, step.deps, step.checkpoint,
               step.catch_exceptions, step.max_retries, step.retry_exceptions, meta)
        inputs = [self.done[d] if d in self.done else self.coming[d] for d in step.deps]
        marker, value = task.remote(ctx, *inputs)
        self.running[marker] = step.task_id
        self.coming[step.task_id] = value
        self.submitted.add(step.task_id)
        self.on_event(step.task_id, step, "ran", marker._id[:-2])

    def _finished(self, marker):
        """A step's task ended; returns its id if it must be submitted again later."""
        tid = self.running.pop(marker)
        value = self.coming.pop(tid)
        kind = miniray.get(marker)
        if kind is None:
            self._mark_done(tid, value)
        elif kind == "deferred":         # it took a continuation's placeholder: wait for the real value
            self.submitted.discard(tid)
            return tid
        else:                            # a continuation: plan it, save it, run its steps
            sub, sub_out = plan(kind[1], DAGInputData((), {}), self.taken)
            blob = dumps_code((sub, sub_out), [s.function._function for s in sub.values()])
            atomic_write(self.st.continuation_path(self.wid, tid), blob)
            self._adopt(tid, sub, sub_out)
            self._plan_needed(tid)
        return None

    def _mark_done(self, tid: str, src) -> None:
        self.done[tid] = src
        self.needed.discard(tid)
        for d in self.steps[tid].deps:      # inputs all consumed: read them from disk if ever needed
            if self.steps[d].checkpoint and type(self.done[d]) is not Saved and \
                    all(c in self.done for c in self.consumers[d]):
                self.done[d] = Saved(self.st.output_path(self.wid, d))
        if tid in self.parent_of:
            self._finish_continuation(tid)
        for c in self.consumers.get(tid, ()):
            self._maybe_submit(c)

    def _finish_continuation(self, sub_out: str) -> None:
        """A continuation's output is ready: it is the output of the step that returned it."""
        parent = self.parent_of[sub_out]
        src = self.done[sub_out]
        if self.steps[parent].checkpoint:
            path = self.st.output_path(self.wid, parent)
            if type(src) is Saved:
                with open(src.path, "rb") as f:
                    atomic_write(path, f.read())
            else:
                self.st.save_pickle(path, miniray.get(src))
            src = Saved(path)
        meta_path = self.st.meta_path(self.wid, parent)
        write_report(meta_path, {**(read_json(meta_path) or {}), "status": "SUCCESSFUL",
                                 "continuation_output": sub_out, "end_time": time.time()})
        self._mark_done(parent, src)

    def _stop_running(self) -> None:
        for marker in list(self.running):
            try:
                miniray.cancel(marker)
            except Exception:
                pass
        self.running.clear()

    def _cancel(self) -> None:
        self._stop_running()
        raise WorkflowCancellationError(self.wid)
