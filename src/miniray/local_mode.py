"""Debug mode, ``init(local_mode=True)``: every task and actor call runs inline in the driver.

    f.remote(x) ──► LocalModeRuntime.submit(spec) ──► f(x) on the calling thread, right now
                                                       │ value (or exception) kept by object id
    get(ref)    ◄──────────────────────────────────────┘ (raises the call's exception, with its
                                                          real traceback)

Calls run in submission order, so ``print`` output comes in that order and ``breakpoint()`` or
``pdb`` stop inside a task as in any function.  The functions are the user's own objects, not
copies, so module globals behave as in a plain call.  Arguments still travel pickled, as they
would to a worker (a task cannot mutate its caller's list); values are kept as returned.  The
event log gets the same submitted / started / finished / put / stored / freed events as the
runtime's, so ``timeline()`` and the magics draw what ran.

Ray had this mode and removed it (Ray 2.60's ``init(local_mode=True)`` raises); a course needs
it, so miniray keeps it.  Not the same as the real runtime: nothing runs in parallel, resources
are not enforced, ``cancel`` has nothing to cancel, and a ``get`` inside a task never blocks.

State: ``values`` (object id → ("ok", value) or ("error", exception)), ``counts`` (object id →
live ObjectRef instances; at zero the value goes, as in the store), ``actors`` (actor id →
_LocalActor), ``names`` ((namespace, name) → actor id), ``_stack`` (the contexts of the calls now
running, innermost last), all under ``_lock``.
"""
from __future__ import annotations

import asyncio
import inspect
import itertools
import os
import pickle
import threading
import traceback
import uuid

from miniray import exceptions as exc
from miniray.events import EventLog

_SIZE_UNKNOWN = 0
_PKG = os.path.dirname(os.path.abspath(__file__))


class _Context:
    """What ``get_runtime_context()`` sees inside a call (the executor's CallContext, in short)."""

    def __init__(self, spec, node_id):
        self.task_id, self.actor_id, self.node_id = spec.task_id, spec.actor_id, node_id
        self.gpu_ids, self.name, self.cancelled = [], spec.name, False


class _LocalActor:
    def __init__(self, spec):
        self.spec, self.instance, self.cause, self.loop = spec, None, "", None

    def call(self, method, args, kwargs):
        value = getattr(self.instance, method)(*args, **kwargs)
        if inspect.iscoroutine(value):       # async actor: its own loop thread, waited for here
            value = asyncio.run_coroutine_threadsafe(value, self._loop()).result()
        if inspect.isasyncgen(value):
            value = asyncio.run_coroutine_threadsafe(_drain(value), self._loop()).result()
        return value

    def _loop(self):
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
            threading.Thread(target=self.loop.run_forever, daemon=True, name="miniray-local-actor").start()
        return self.loop


async def _drain(agen):
    return [item async for item in agen]


class LocalModeRuntime:
    """Stands where ``runtime.Runtime`` does for api.py, remote_function.py and actor.py."""

    def __init__(self, *, num_cpus=None, num_gpus=None, resources=None, namespace="default",
                 inline_max=100 * 1024, job_env=None):
        self.holder, self.job_id, self.namespace = "driver", "01000000", namespace
        # every call runs in this process, so the job's env_vars are this process's environment
        self.job_env = dict(job_env or {})
        os.environ.update(self.job_env)
        self.node_id = uuid.uuid4().hex
        self.address, self.session_dir, self.lost, self.node_ip = None, "", "", "127.0.0.1"
        self.inline_max, self.node, self.store, self.arena = inline_max, None, None, None
        self.events = EventLog()
        self.fns: set = set()
        self.total = {"CPU": float(num_cpus if num_cpus is not None else len(os.sched_getaffinity(0)))}
        if num_gpus:
            self.total["GPU"] = float(num_gpus)
        self.total.update({k: float(v) for k, v in (resources or {}).items()})
        self.values: dict = {}
        self.counts: dict = {}
        self.functions: dict = {}
        self.actors: dict = {}
        self.names: dict = {}
        self._stack: list = []
        self._lock = threading.RLock()
        self._prefix = os.urandom(5).hex()
        self._ids = itertools.count(1)

    # -- what the public API calls --------------------------------------------------------------
    def new_task_id(self) -> str:
        return f"{self._prefix}{next(self._ids):011x}"

    def close(self):
        for actor in self.actors.values():
            if actor.loop is not None:
                actor.loop.call_soon_threadsafe(actor.loop.stop)
        with self._lock:
            self.values.clear()

    def context_of(self):
        return self._stack[-1] if self._stack else None

    def add_local_ref(self, oid):
        with self._lock:
            self.counts[oid] = self.counts.get(oid, 0) + 1

    def remove_local_ref(self, oid):
        with self._lock:
            n = self.counts.get(oid, 0) - 1
            if n > 0:
                self.counts[oid] = n
                return
            self.counts.pop(oid, None)
            if self.values.pop(oid, None) is not None:
                self.events.emit("freed", object_id=oid)

    def unpin(self, oid):
        pass

    def flush(self):
        pass

    def ensure_function(self, fn_id, make_blob):
        """The user's own function or class, found in the closure of ``make_blob`` (the
        RemoteFunction or ActorClass it belongs to); unpickled from the blob otherwise."""
        if fn_id in self.fns:
            return
        origin = None
        for cell in getattr(make_blob, "__closure__", None) or ():
            holder = cell.cell_contents
            origin = getattr(holder, "_function", None) or getattr(holder, "_cls", None)
            if origin is not None:
                break
        self.functions[fn_id] = origin if origin is not None else pickle.loads(make_blob())
        self.fns.add(fn_id)

    def put(self, value, site: str = ""):
        from miniray.refs import ObjectRef
        from miniray.store.serialization import serialize
        if isinstance(value, ObjectRef):
            raise TypeError("miniray.put() of an ObjectRef is not allowed: pass the ref itself to tasks, "
                            "or put the value it stands for.")
        oid = self.new_task_id() + "00"
        ref = ObjectRef(oid)
        self.put_serialized(oid, serialize(value), site)
        return ref

    def put_serialized(self, oid, ser, site):
        """A value as a worker would see it: a copy, made from its pickle."""
        value = pickle.loads(ser.meta, buffers=ser.buffers)
        self._store(oid, ("ok", value), ser.size, site, kind="put")

    def get(self, oids, timeout=None):
        out = []
        for oid in oids:
            entry = self.values.get(oid)
            if entry is None:
                raise exc.ObjectLostError(f"Object {oid} does not exist in this local-mode runtime: it was "
                                          "freed (no ObjectRef to it was alive) or never made.")
            if entry[0] == "error":
                raise entry[1]
            out.append(entry[1])
        return out

    def wait(self, oids, num_returns, timeout):
        return [o for o in oids if o in self.values]

    def resources(self):
        return dict(self.total), dict(self.total)

    def request(self, kind, *args, timeout=None):
        handler = getattr(self, "_req_" + kind, None)
        if handler is None:
            raise exc.RaySystemError(f"{kind!r} is not available in local mode.")
        return handler(*args)

    # -- calls ------------------------------------------------------------------------------------
    def submit(self, spec):
        self._submitted(spec)
        if spec.type == "actor_method":
            actor = self.actors.get(spec.actor_id)
            if actor is None or actor.instance is None:
                cause = actor.cause if actor is not None else "it is unknown to this runtime"
                self._fail_returns(spec, exc.ActorDiedError(f"The actor {spec.name.split('.')[0]} is dead: {cause}"))
                return
            self._run(spec, lambda a, k: actor.call(spec.fn_id, a, k))
        else:
            fn = self.functions[spec.fn_id]
            self._run(spec, lambda a, k: fn(*a, **k))

    def _req_create_actor(self, spec, ts):
        opts = spec.options
        key = (opts.get("namespace") or "default", opts.get("name"))
        if key[1] and key in self.names and self.actors[self.names[key]].instance is not None:
            if opts.get("get_if_exists"):
                return self.actors[self.names[key]].spec.options["handle"]
            raise ValueError(f"An actor named {key[1]!r} already exists in namespace {key[0]!r}. Pick "
                             "another name, fetch it with miniray.get_actor(name), or pass get_if_exists=True.")
        actor = self.actors[spec.actor_id] = _LocalActor(spec)
        if key[1]:
            self.names[key] = spec.actor_id
        self._submitted(spec)
        cls = self.functions[spec.fn_id]

        def construct(args, kwargs):
            actor.instance = cls(*args, **kwargs)

        self._run(spec, construct)
        if actor.instance is None:
            err = self.values.pop(spec.task_id + "00", (None, None))[1]
            actor.cause = f"its constructor {spec.name} raised:\n{err}"
        return opts["handle"]

    def _run(self, spec, call):
        """Run one call inline: arguments, call, values (or the exception), events."""
        self.events.emit("started", task_id=spec.task_id, worker_id="driver", pid=os.getpid(),
                         node_id=self.node_id, actor_id=spec.actor_id)
        self._stack.append(_Context(spec, self.node_id))
        error = None
        try:
            args, kwargs = self._arguments(spec)
            value = call(args, kwargs)
            del args, kwargs
            results = self._returns(spec, value)
        except exc.RayError as err:           # a failed argument, a dead actor: passed on as is
            error = err
        except Exception as err:              # the user's code raised: keep its real traceback
            error = self._task_error(spec, err)
        finally:
            self._stack.pop()
        if error is not None:
            self._fail_returns(spec, error, finished=True)
            return
        for oid, v in results:
            self._store(oid, ("ok", v), _SIZE_UNKNOWN, spec.call_site, task_id=spec.task_id)
        self._finished(spec, None)

    def _arguments(self, spec):
        from miniray.worker.executor import fill_args
        values = dict(zip(spec.deps, self.get(list(spec.deps))))     # raises a failed dependency
        return fill_args(spec, values)

    def _returns(self, spec, value) -> list:
        n = spec.num_returns
        if spec.type == "actor_creation":
            return []
        if n in ("streaming", "dynamic"):
            from miniray.generators import DynamicObjectRefGenerator, item_id
            from miniray.refs import ObjectRef
            if not (inspect.isgenerator(value) or isinstance(value, list)):
                raise TypeError(f"{spec.name} was called with num_returns={n!r} but returned "
                                f"{type(value).__name__}, not a generator. Use yield, or drop num_returns.")
            refs = []
            for item in value:
                oid = item_id(spec.task_id, len(refs))
                refs.append(ObjectRef(oid))
                self._store(oid, ("ok", item), _SIZE_UNKNOWN, spec.call_site, task_id=spec.task_id)
            return [(spec.returns[0], DynamicObjectRefGenerator(refs))]   # as the executor's _stream
        if n == 1:
            return [(spec.returns[0], value)]
        values = list(value) if value is not None else []
        if len(values) != n:
            raise ValueError(f"{spec.name} was declared with num_returns={n} but returned {len(values)} "
                             f"value(s). Return a tuple of exactly {n} values.")
        return list(zip(spec.returns, values))

    @staticmethod
    def _task_error(spec, err):
        """The user's exception as RayTaskError(TheirType), its traceback the real one."""
        exc_only = "".join(traceback.format_exception_only(type(err), err))
        task_err = exc.RayTaskError(spec.name, exc_only, err, os.getpid(), exc_only=exc_only)
        tb = err.__traceback__             # from the user's frame on: this module's are noise
        while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PKG):
            tb = tb.tb_next
        dual = task_err.as_instanceof_cause()
        return dual.with_traceback(tb or err.__traceback__)

    def _fail_returns(self, spec, err, finished=False):
        if not finished:
            self.events.emit("started", task_id=spec.task_id, worker_id="driver", pid=os.getpid(),
                             node_id=self.node_id, actor_id=spec.actor_id)
        for oid in spec.returns or (spec.task_id + "00",):
            self._store(oid, ("error", err), _SIZE_UNKNOWN, spec.call_site, task_id=spec.task_id)
        self._finished(spec, err)

    # -- events -------------------------------------------------------------------------------------
    def _submitted(self, spec):
        self.events.emit("submitted", task_id=spec.task_id, name=spec.name, type=spec.type,
                         actor_id=spec.actor_id, deps=tuple(spec.deps) + tuple(spec.nested),
                         returns=tuple(spec.returns), call_site=spec.call_site, resources=dict(spec.resources))

    def _finished(self, spec, err):
        state = "FAILED" if err is not None else "FINISHED"
        self.events.emit("finished", task_id=spec.task_id, state=state,
                         error=type(getattr(err, "cause", None) or err).__name__ if err is not None else None,
                         worker_id="driver", pid=os.getpid())

    def _store(self, oid, entry, size, site, kind="stored", task_id=""):
        with self._lock:
            self.values[oid] = entry
        fields = dict(object_id=oid, size=size, location="inline", call_site=site, pid=os.getpid(),
                      node_id=self.node_id)
        if kind == "stored":
            fields["task_id"] = task_id
        self.events.emit(kind, **fields)

    # -- requests -------------------------------------------------------------------------------------
    def _req_get_actor(self, name, namespace):
        aid = self.names.get((namespace or "default", name))
        if aid is None or self.actors[aid].instance is None:
            return None
        return self.actors[aid].spec.options["handle"]

    def _req_kill(self, actor_id, no_restart):
        actor = self.actors.get(actor_id)
        if actor is not None:
            actor.instance, actor.cause = None, "it was killed with miniray.kill()"

    def _req_cancel(self, oid, force):
        return None                        # every call has already run

    def _req_nodes(self):
        return [{"NodeID": self.node_id, "Alive": True, "NodeManagerAddress": "127.0.0.1",
                 "Resources": dict(self.total), "ObjectManagerPort": None, "ObjectStoreUsedMemory": 0,
                 "ObjectStoreMemory": 0}]

    def _req_list_objects(self):
        with self._lock:
            return [{"object_id": oid, "object_size": 0, "reference_type": "LOCAL_REFERENCE",
                     "location": "inline", "state": "FAILED" if e[0] == "error" else "READY",
                     "node_id": self.node_id, "copies": [], "call_site": "", "pid": os.getpid(),
                     "task_id": oid[:-2]} for oid, e in self.values.items()]

    def _req_summary(self):
        return {"node_id": self.node_id, "capacity": 0, "used": 0, "spilled": 0,
                "num_objects": len(self.values), "num_spilled": 0, "num_inline": len(self.values)}

    def _req_events(self, since):
        return self.events.since(since)

    def _req_events_len(self):
        return len(self.events)

    def _req_ping(self):
        return "pong"

