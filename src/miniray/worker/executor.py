"""Running one call in a worker: resolve arguments, call, store the values or the error, report.

A call is one of three things (``spec.type``): a task, an actor's constructor (the worker then
belongs to that actor for life), or an actor method.  Actors choose how calls run:
  sequential (default)        in the main thread, one at a time, in arrival order
  threaded (max_concurrency)  a thread pool of that size
  async (any ``async def``)   one event loop thread; up to max_concurrency calls interleave

Errors become a RayTaskError holding the user's exception and the traceback of the user's frames
only; the driver re-raises it as both types.  Cancel (not forced) raises KeyboardInterrupt in the
call via SIGINT, only if that call is still the one running.

``exit_actor()`` (exceptions.ActorExit) is not an error: the actor's shutdown hooks run
(``__ray_shutdown__``, ``__del__``, atexit), the call's ref raises ActorDiedError, no further call
runs here, and the node ends the actor for good.  ``end_actor`` runs the same hooks when the node
ends the actor (last handle gone, shutdown).
"""
from __future__ import annotations

import asyncio
import contextvars
import inspect
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor


from miniray import exceptions as exc
from miniray.exceptions import format_remote_traceback
from miniray.refs import ArgRef, DynamicObjectRefGenerator, ObjectRef, item_id
from miniray.store.serialization import SCALARS, Serialized, deserialize, dumps, serialize
from miniray.transport.messages import Result

_PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fill_args(spec, values: dict) -> tuple:
    """(args, kwargs) of a call, each ArgRef replaced by its value in ``values`` (oid -> value)."""
    if spec.args[0] == "ref":
        args, kwargs = values.pop(spec.args[1])
    else:
        args, kwargs = deserialize(spec.args)
    args = tuple(values[a.oid] if type(a) is ArgRef else a for a in args)
    kwargs = {k: values[v.oid] if type(v) is ArgRef else v for k, v in kwargs.items()}
    return args, kwargs


def _did_you_mean(err) -> str:
    """Python 3.12's hint for a misspelt name, which 3.11 prints only for uncaught errors."""
    name = getattr(err, "name", None)
    if not isinstance(err, NameError) or not name or "Did you mean" in str(err):
        return ""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return ""
    frame = tb.tb_frame
    import builtins
    import difflib
    names = list(frame.f_locals) + list(frame.f_globals) + dir(builtins)
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    return f". Did you mean: '{close[0]}'?" if close else ""


class CallContext:
    def __init__(self, spec, node_id, gpus):
        self.task_id, self.actor_id, self.node_id = spec.task_id, spec.actor_id, node_id
        self.gpu_ids, self.name, self.cancelled = list(gpus), spec.name, False
        self.spec, self.executor = spec, None


# the call an async actor's coroutine serves (each asyncio task has its own copy)
_ASYNC_CALL: contextvars.ContextVar = contextvars.ContextVar("miniray_async_call", default=None)


def _ready():
    return True


def _terminate():
    raise exc.ActorExit("__ray_terminate__ was called")


class Executor:
    def __init__(self, rt, wid, node_id, calls):
        self.rt, self.wid, self.node_id, self.calls = rt, wid, node_id, calls
        self.fns: dict = {}
        self.instance = None
        self.actor_spec = None
        self.actor_gpus: list = []
        self.sequential = True
        self.pool = None
        self.loop = None
        self.semaphore = None
        self.blocked = False
        self.gets_waiting = 0           # this worker's threads now waiting in get (``blocking``)
        self._gets_lock = threading.Lock()
        self.current = None
        self._local = threading.local()
        self._started: list = []
        self._started_lock = threading.Lock()
        self.cancelled: set = set()
        self.exiting = False            # exit_actor() ran: no further call runs here
        self.restarted = False          # this actor's constructor runs again after a crash
        self._omp_set = "OMP_NUM_THREADS" not in os.environ   # the user's own setting wins
        if self._omp_set:
            os.environ["OMP_NUM_THREADS"] = "1"                # as Ray: a task gets its CPUs' worth
        signal.signal(signal.SIGINT, self._on_sigint)

    def one_at_a_time(self) -> bool:
        """Is this worker a sequential actor (a call to itself would wait for ever)?"""
        return self.actor_spec is not None and self.sequential

    def blocking(self, on: bool) -> None:
        """A call is about to wait in ``get`` (on=True) or is done waiting: hand back queued calls."""
        with self._gets_lock:
            self.gets_waiting += 1 if on else -1
            if not on:              # blocked until the last of the call's threads waiting ends
                self.blocked = self.blocked and self.gets_waiting > 0
                return
        if not self.sequential or self.current is None or self.actor_spec is not None:
            return          # an actor's later calls wait for this one: handed back, they were lost
        self.blocked = True
        back = []
        while True:
            try:
                back.append(self.calls.get_nowait())
            except Exception:
                break
        if back:
            self.hand_back(back)

    def hand_back(self, items) -> None:
        """Return exec items not yet run to the node (it places them again) and drop the pins
        their arguments hold here."""
        for item in items:
            for oid, desc in item[3].items():
                if desc[0] in ("shm", "fetch"):
                    self.rt.unpin(oid)
        self.rt.send([("requeue", [item[1].task_id for item in items])])

    # -- context ----------------------------------------------------------------------------------
    def context(self):
        return _ASYNC_CALL.get() or getattr(self._local, "ctx", None)

    def _on_sigint(self, signum, frame):
        ctx = self.current
        if ctx is not None and ctx.task_id in self.cancelled:
            raise KeyboardInterrupt

    def cancel(self, tid):
        self.cancelled.add(tid)
        ctx = self.current
        if ctx is not None and ctx.task_id == tid:
            ctx.cancelled = True
            os.kill(os.getpid(), signal.SIGINT)

    def flush_started(self):
        with self._started_lock:
            items, self._started = self._started, []
        if items:
            done = {it[1] for it in items if it[0] == "done"}
            both = {it[1] for it in items if it[0] == "started" and it[1] in done}
            if both:   # a call that started and ended within one batch: its "done" says both
                items = [("done", it[1], it[2], True) if it[0] == "done" and it[1] in both else it
                         for it in items if not (it[0] == "started" and it[1] in both)]
            self.rt.send(items)

    # -- dispatch ---------------------------------------------------------------------------------
    def run(self, spec, blob, descs, gpus):
        if blob is not None:
            self.fns[spec.fn_id] = blob
        if self.exiting:                # the node fails these calls as it ends the actor
            return
        if spec.type == "actor_method" and self.loop is not None:
            asyncio.run_coroutine_threadsafe(self._run_async(spec, descs), self.loop)
        elif spec.type == "actor_method" and self.pool is not None:
            self.pool.submit(self._run, spec, descs, self.actor_gpus)
        else:
            self._run(spec, descs, gpus if spec.type != "actor_method" else self.actor_gpus)

    def _run(self, spec, descs, gpus):
        ctx = CallContext(spec, self.node_id, gpus)
        ctx.executor = self
        self._local.ctx = ctx
        if self.sequential:
            self.current = ctx
        start = time.time()
        with self._started_lock:
            self._started.append(("started", spec.task_id, start))
        env = self._enter_env(spec, gpus)
        try:
            if spec.task_id in self.cancelled:
                raise KeyboardInterrupt
            args, kwargs, release = self._resolve(spec, descs)
            target = self._target(spec)
            value = target(*args, **kwargs)
            del args, kwargs
            result = self._store(spec, value, start)
        except BaseException as err:  # the user's code failed, was cancelled or ended the actor
            result = self._outcome(spec, err, start)
        finally:
            self.current = None
            if env:
                self._exit_env(env)
        self.cancelled.discard(spec.task_id)
        with self._started_lock:
            self._started.append(("done", spec.task_id, result))
            backlog = len(self._started) < 64 and not self.calls.empty() and self.sequential
        if not backlog:          # more calls already queued here: send their results together
            self.flush_started()
        sys.stdout.flush()

    async def _run_async(self, spec, descs):
        async with self.semaphore:
            start = time.time()
            self.rt.send([("started", spec.task_id, start)])
            ctx = CallContext(spec, self.node_id, self.actor_gpus)
            ctx.executor = self
            _ASYNC_CALL.set(ctx)        # this call's own asyncio context: calls interleave on one thread
            try:
                args, kwargs, _ = self._resolve(spec, descs)
                value = self._target(spec)(*args, **kwargs)
                if inspect.isawaitable(value):
                    value = await value
                if inspect.isasyncgen(value):
                    value = await self._stream_async(spec, value)
                result = self._store(spec, value, start)
            except BaseException as err:
                result = self._outcome(spec, err, start)
            self.rt.send([("done", spec.task_id, result)])

    def _outcome(self, spec, err, start) -> Result:
        """The result of a call that raised, sync or async: cancelled (KeyboardInterrupt from
        ``cancel``, or CancelledError on the loop), the actor ended (exit_actor()), or an error."""
        if isinstance(err, (KeyboardInterrupt, asyncio.CancelledError)):
            return self._failed(spec, exc.TaskCancelledError(spec.task_id), start, cancelled=True)
        if isinstance(err, exc.ActorExit):
            return self._exit_actor(spec, start)
        return self._error(spec, err, start)

    def _target(self, spec):
        if spec.type == "task":
            self.rt.namespace = spec.options.get("job_ns", "default")   # for get_actor in the task
            fn = self.fns[spec.fn_id]
            if isinstance(fn, bytes):
                fn = self.fns[spec.fn_id] = pickle.loads(fn)
            return fn
        if spec.type == "actor_creation":
            cls = pickle.loads(self.fns[spec.fn_id])
            return lambda *a, **k: self._become_actor(spec, cls, a, k)
        if spec.fn_id in ("__ray_ready__", "__ray_terminate__"):
            return _ready if spec.fn_id == "__ray_ready__" else _terminate
        return getattr(self.instance, spec.fn_id)

    # -- the actor's life -------------------------------------------------------------------------
    def _exit_actor(self, spec, start) -> Result:
        """exit_actor() was called in this call: end the actor on purpose (see the docstring)."""
        self.exiting = True
        self.end_actor()
        what = "its constructor" if spec.type == "actor_creation" else spec.name
        err = exc.ActorDiedError(f"The actor {spec.name.split('.')[0]} exited on purpose: exit_actor() was "
                                 f"called in {what}. Calls after it fail; create a new actor to go on.")
        return self._failed(spec, err, start, name="ActorExit")

    def end_actor(self) -> None:
        """The actor ends gracefully: its ``__ray_shutdown__``, then ``__del__`` (its last reference
        goes), then the process's atexit handlers.  A hook that raises is reported, not fatal."""
        instance, self.instance = self.instance, None
        try:
            hook = getattr(instance, "__ray_shutdown__", None)
            if hook is not None:
                hook()
        except Exception:
            traceback.print_exc()
        del instance, hook
        import atexit
        import gc
        gc.collect()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()

    def _become_actor(self, spec, cls, args, kwargs):
        self.actor_spec = spec
        self.actor_gpus = list(self.context().gpu_ids)
        env = spec.options.get("env_vars") or {}
        os.environ.update(env)
        self.rt.namespace = spec.options.get("job_ns", "default")
        self.restarted = spec.attempt > 0
        if self._omp_set:
            os.environ["OMP_NUM_THREADS"] = str(max(1, int(spec.resources.get("CPU", 1))))
        if self.actor_gpus:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, self.actor_gpus))
        is_async = any(inspect.iscoroutinefunction(m) or inspect.isasyncgenfunction(m)
                       for _, m in inspect.getmembers(cls, inspect.isfunction))
        limit = spec.options.get("max_concurrency")
        if is_async:
            self.sequential = False
            self.loop = asyncio.new_event_loop()
            self.semaphore = asyncio.Semaphore(limit or 1000, )
            threading.Thread(target=self._loop_main, daemon=True, name="miniray-actor-loop").start()
            ctx = self.context()

            async def construct():      # on the loop, as Ray: __init__ may start asyncio tasks
                self._local.ctx = ctx
                return cls(*args, **kwargs)
            self.instance = asyncio.run_coroutine_threadsafe(construct(), self.loop).result()
            return None
        elif limit and limit > 1:
            self.sequential = False
            self.pool = ThreadPoolExecutor(limit, thread_name_prefix="miniray-actor")
        self.instance = cls(*args, **kwargs)
        return None

    def _loop_main(self):
        """An async actor's event loop.  exit_actor() in a background asyncio task (one no call
        awaits) stops the loop: the actor then ends here, hooks first."""
        try:
            self.loop.run_forever()
        except exc.ActorExit:
            self.exiting = True
            self.end_actor()
            os._exit(0)

    # -- arguments and values -----------------------------------------------------------------------
    def _resolve(self, spec, descs):
        if not descs and (type(spec.args) is bytes or spec.args[0] == "inline"):   # no ArgRef
            args, kwargs = deserialize(spec.args)
            return args, kwargs, None
        values = {}
        for oid, desc in descs.items():
            if desc[0] == "error":
                raise pickle.loads(desc[1])
            values[oid] = self.rt.value_of(oid, desc)
        return (*fill_args(spec, values), None)

    # A generator's items: ``_stream`` and ``_stream_async`` differ only in how they iterate; what
    # an item, the end or an error does is written once (``_stream_item``, ``_stream_stopped``).
    def _stream(self, spec, gen):
        """Put each yielded value as its own object right away; return refs to all of them."""
        refs = []
        try:
            for item in gen:
                self._stream_item(spec, refs, item)
        except BaseException as err:
            return self._stream_stopped(spec, refs, err)
        return DynamicObjectRefGenerator(refs)

    async def _stream_async(self, spec, agen):
        refs = []
        try:
            async for item in agen:
                self._stream_item(spec, refs, item)
        except BaseException as err:
            return self._stream_stopped(spec, refs, err)
        return DynamicObjectRefGenerator(refs)

    def _stream_stopped(self, spec, refs, err):
        """The generator raised: the items before the error stay alive.  The error captures them
        (streaming, a retry, a cancel or exit_actor()), or becomes the last ref (dynamic, as Ray)."""
        retrying = isinstance(err, Exception) and spec.attempt < spec.max_retries and _retryable(spec, err)
        if not isinstance(err, Exception) or spec.num_returns != "dynamic" or retrying:
            err.__miniray_items__ = [r.hex() for r in refs]
            raise err
        oid = item_id(spec.task_id, len(refs))
        refs.append(ObjectRef(oid))
        blob = self._error(spec, err, time.time()).values[0][1]
        self.rt.send([("put", oid, blob, (), spec.call_site)])
        return DynamicObjectRefGenerator(refs)

    def _stream_item(self, spec, refs, item):
        oid = item_id(spec.task_id, len(refs))
        refs.append(ObjectRef(oid))
        self.rt.put_serialized(oid, serialize(item), spec.call_site)

    def _yields(self, spec, gen, start):
        """A generator called with an int num_returns: its first n yields are the n return values;
        if it raises or stops early, the refs it did not reach hold that error (as in Ray)."""
        n, values = spec.num_returns, []
        try:
            for item in gen:
                if len(values) == n:
                    break
                values.append(item)
            if len(values) < n:
                raise ValueError(f"{spec.name} yielded {len(values)} value(s), but num_returns={n}. "
                                 f"Yield exactly {n} values, or use num_returns='streaming'.")
        except Exception as err:
            failed = self._error(spec, err, start)
            good = self._store(spec, values[0] if len(values) == 1 else values, start, n=len(values))
            failed.values[:len(values)] = good.values
            return failed
        return None, values

    def _store(self, spec, value, start, n=None) -> Result:
        n = spec.num_returns if n is None else n
        if n in ("streaming", "dynamic") and type(value).__name__ == "DynamicObjectRefGenerator":
            n = 1   # an async generator already streamed by _run_async
        elif n in ("streaming", "dynamic"):
            if not inspect.isgenerator(value):
                raise TypeError(f"{spec.name} was called with num_returns={n!r} but returned "
                                f"{type(value).__name__}, not a generator. Use yield, or drop num_returns.")
            value, n = self._stream(spec, value), 1
        elif inspect.isgenerator(value):          # an int num_returns (1 too): a value per yield
            partial = self._yields(spec, value, start)
            if isinstance(partial, Result):
                return partial
            value = partial[1][0] if n == 1 else partial[1]
        if n == 1:
            values = [value]
        elif n == 0:
            values = []
        else:
            values = list(value) if value is not None else []
            if len(values) != n:
                raise ValueError(f"{spec.name} was declared with num_returns={n} but returned "
                                 f"{len(values)} value(s). Return a tuple of exactly {n} values.")
        out = []
        for oid, v in zip(spec.returns, values):
            if type(v) in SCALARS:            # a number or a string: ``serialize``, in short
                meta = pickle.dumps(v, protocol=5)
                if len(meta) <= self.rt.inline_max:
                    out.append((oid, ("inline", meta, []), []))
                    continue
                ser = Serialized(meta)
            else:
                ser = serialize(v)
            desc = self.rt.write_object(ser)
            out.append((oid, desc, ser.contained))
        if spec.type == "actor_creation":
            out = []
        return Result(out, start, time.time())

    def _error(self, spec, err, start) -> Result:
        if isinstance(err, exc.RayError):   # a failed dependency, a nested get, or a full store
            task_err = err
        else:
            tb = [f for f in traceback.extract_tb(err.__traceback__) if not f.filename.startswith(_PKG)]
            frames = [(f.filename, f.lineno, f.name, f.line) for f in tb]
            exc_only = "".join(traceback.TracebackException.from_exception(err).format_exception_only())
            exc_only = exc_only.rstrip("\n") + _did_you_mean(err) + "\n"
            text = format_remote_traceback(frames, exc_only)
            try:
                pickle.loads(dumps(err))
                cause = err
            except Exception:
                cause = exc.RayError(f"{type(err).__name__}: {err} (the original exception could not be pickled)")
            task_err = exc.RayTaskError(spec.name, text, cause, os.getpid(), frames=frames, exc_only=exc_only)
        retryable = _retryable(spec, err)
        return self._failed(spec, task_err, start, retryable=retryable, name=type(err).__name__,
                            items=getattr(err, "__miniray_items__", ()))

    def _failed(self, spec, err, start, cancelled=False, retryable=False, name=None, items=()) -> Result:
        blob = dumps(err)
        values = [(oid, ("error", blob), tuple(items)) for oid in spec.returns]
        if spec.type == "actor_creation":
            values = [("", ("error", blob), ())]
        return Result(values, start, time.time(), error=name or type(err).__name__,
                      retryable=retryable, cancelled=cancelled)

    # -- per-call environment ---------------------------------------------------------------------
    def _enter_env(self, spec, gpus):
        """Set a task's env_vars and GPUs for the call; returns what to restore (None: nothing)."""
        cpus = spec.resources.get("CPU", 1)
        if spec.type != "task" or not (gpus or spec.options or cpus != 1):
            return None
        changes = dict(spec.options.get("env_vars") or {})
        if self._omp_set and cpus != 1:
            changes["OMP_NUM_THREADS"] = str(max(1, int(cpus)))
        if gpus and spec.type == "task":
            changes["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
        saved = {k: os.environ.get(k) for k in changes}
        os.environ.update(changes)
        return saved

    @staticmethod
    def _exit_env(saved):
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _retryable(spec, err) -> bool:
    """Whether ``retry_exceptions`` asks for ``err`` to be retried: True, or a tuple of classes
    (cloudpickled by remote_function._derive, so classes of __main__ load here too)."""
    retry = spec.retry_exceptions
    if isinstance(retry, bytes):
        try:
            retry = pickle.loads(retry)
        except Exception:                 # not loadable here: the user's error is reported as is
            return False
    return retry is True or (isinstance(retry, tuple) and isinstance(err, retry))
