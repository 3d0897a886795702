"""``@remote`` on classes: ActorClass, ActorHandle and ActorMethod.

``Counter.remote(0)`` asks the node to create the actor (one synchronous request, so a taken name
fails right here) and returns an ActorHandle at once; the constructor runs in the actor's own worker
process.  ``handle.increment.remote(2)`` sends an actor-method TaskSpec; the node forwards calls to
that worker in arrival order.  Handles are plain data (actor id, class name, method table): they
pickle, travel into tasks and other actors, and work from any process.
"""
from __future__ import annotations

import inspect
import uuid

import cloudpickle

from miniray.refs import ObjectRef
from miniray.remote_function import (ACTOR_OPTIONS, check_options, fixed_arity, pack_args, resource_request,
                                     return_ids, submit_call)
from miniray.runtime import call_site, current_runtime
from miniray.store.serialization import dumps_code
from miniray.transport.messages import TaskSpec


def method(*, num_returns=1, concurrency_group=None, **_):
    """``@miniray.method(num_returns=k)`` on an actor method."""
    def mark(fn):
        fn.__miniray_num_returns__ = num_returns
        return fn
    return mark


def _method_table(cls) -> dict:
    table = {}
    for name, fn in inspect.getmembers(cls, lambda m: inspect.isfunction(m) or inspect.ismethod(m)):
        if name.startswith("__") and name != "__call__":
            continue
        try:
            sig = inspect.signature(fn)
            params = list(sig.parameters.values())
            if params and params[0].name in ("self", "cls") and not isinstance(inspect.getattr_static(cls, name), staticmethod):
                sig = sig.replace(parameters=params[1:])
        except (TypeError, ValueError):
            sig = None
        default = "streaming" if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn) else 1
        table[name] = {"num_returns": getattr(fn, "__miniray_num_returns__", default), "sig": sig}
    return table


class ActorClass:
    def __init__(self, cls, options=None):
        self._cls = cls
        self._options = check_options(dict(options or {}), ACTOR_OPTIONS, f"actor {cls.__name__}")
        self._class_id = f"{cls.__module__}.{cls.__qualname__}:{uuid.uuid4().hex[:12]}"
        self._blob = None
        self._methods = _method_table(cls)
        self.__name__, self.__qualname__, self.__doc__ = cls.__name__, cls.__qualname__, cls.__doc__
        self.__module__ = cls.__module__

    def __call__(self, *a, **k):
        name = self._cls.__name__
        raise TypeError(f"Actor class '{name}' cannot be instantiated directly. Use {name}.remote(...) "
                        f"to start an actor; it returns a handle whose methods you call with "
                        f"handle.method.remote(...).")

    def __reduce__(self):
        return (_rebuild_actor_class, (self._cls, self._options, self._class_id))

    def options(self, **opts):
        merged = check_options({**self._options, **opts}, ACTOR_OPTIONS, f"actor {self._cls.__name__}")
        return _BoundActor(self, merged)

    def remote(self, *args, **kwargs):
        return self._remote(args, kwargs, self._options)

    def _remote(self, args, kwargs, opts):
        rt = current_runtime()
        if self._blob is None or self._blob[0] != rt.address:
            self._blob = (rt.address, dumps_code(self._cls, ship_module=rt.address is not None))
        rt.ensure_function(self._class_id, lambda: self._blob[1])
        name = self._cls.__name__
        init = self._methods.get("__init__", {}).get("sig")
        try:
            init = inspect.signature(self._cls)
        except (TypeError, ValueError):
            init = None
        desc, deps, nested, keep = pack_args(rt, init, name, args, kwargs)
        tid = rt.new_task_id()
        actor_id = "a" + tid
        methods = {m: {"num_returns": v["num_returns"]} for m, v in self._methods.items()}
        handle_state = {"actor_id": actor_id, "class_name": name, "methods": methods,
                        "sigs": {m: v["sig"] for m, v in self._methods.items()},
                        "arity": {m: fixed_arity(v["sig"]) for m, v in self._methods.items()}}
        explicit = tuple(k for k, key in (("CPU", "num_cpus"), ("GPU", "num_gpus"), ("memory", "memory"))
                         if opts.get(key) is not None) + tuple((opts.get("resources") or {}).keys())
        env = (opts.get("runtime_env") or {}).get("env_vars")
        options = {"name": opts.get("name"), "namespace": opts.get("namespace") or rt.namespace,
                   "get_if_exists": bool(opts.get("get_if_exists")), "handle": handle_state,
                   "max_restarts": int(opts.get("max_restarts", 0)),
                   "max_task_retries": int(opts.get("max_task_retries", 0)),
                   "max_concurrency": opts.get("max_concurrency"), "explicit": explicit,
                   "env_vars": env, "lifetime": opts.get("lifetime"),
                   "strategy": "SPREAD" if opts.get("scheduling_strategy") == "SPREAD" else None}
        spec = TaskSpec(tid, f"{name}.__init__", "actor_creation", self._class_id, desc, deps, nested, (),
                        0, resource_request(opts, 0.0), 0, False, actor_id, options,
                        call_site(), rt.holder)
        import time
        state = rt.request("create_actor", spec, time.time())
        del keep
        return ActorHandle(state)

    def __repr__(self):
        return f"<miniray actor class {self._cls.__module__}.{self._cls.__qualname__}>"


def _rebuild_actor_class(cls, options, class_id):
    ac = ActorClass(cls, options)
    ac._class_id = class_id
    return ac


class _BoundActor:
    def __init__(self, ac, opts):
        self._ac, self._opts = ac, opts

    def remote(self, *args, **kwargs):
        return self._ac._remote(args, kwargs, self._opts)


def handle_ref_id(actor_id: str) -> str:
    """The id of the pseudo-object every handle of an actor holds a ref to: when no handle (and no
    pending call) is left anywhere, the store tells the node, which ends the actor, as Ray does."""
    return actor_id + "ah"


class ActorHandle:
    def __init__(self, state: dict, _ref=None):
        self._state = state
        self._actor_id = state["actor_id"]
        self._ref = _ref if _ref is not None else ObjectRef(handle_ref_id(self._actor_id))

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        methods = self._state["methods"]
        if name not in methods:
            raise AttributeError(f"Actor {self._state['class_name']} has no method {name!r}. "
                                 f"Its methods are: {sorted(m for m in methods if not m.startswith('_'))}.")
        return ActorMethod(self, name, methods[name]["num_returns"])

    def __reduce__(self):
        return (ActorHandle, (self._state, self._ref))   # the ref travels: counted as captured

    def __repr__(self):
        return f"Actor({self._state['class_name']}, {self._actor_id})"   # ids of a session share a head

    def __eq__(self, other):
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __hash__(self):
        return hash(self._actor_id)


class ActorMethod:
    def __init__(self, handle, name, num_returns):
        self._handle, self._name, self._num_returns = handle, name, num_returns

    def __call__(self, *a, **k):
        raise TypeError(f"Actor methods cannot be called directly. Use "
                        f"handle.{self._name}.remote(...), then miniray.get() the ref it returns.")

    def options(self, num_returns=None, **_):
        return ActorMethod(self._handle, self._name, self._num_returns if num_returns is None else num_returns)

    def remote(self, *args, **kwargs):
        rt = current_runtime()
        st = self._handle._state
        qual = f"{st['class_name']}.{self._name}"
        desc, deps, nested, keep = pack_args(rt, st.get("sigs", {}).get(self._name), qual, args, kwargs,
                                             st.get("arity", {}).get(self._name, -1))
        n = self._num_returns
        tid = rt.new_task_id()
        returns = return_ids(tid, n)
        nested = nested + (self._handle._ref._id,)      # a pending call keeps its actor alive
        spec = TaskSpec(tid, qual, "actor_method", self._name, desc, deps, nested, returns, n, {}, 0,
                        False, self._handle._actor_id, {}, call_site(), rt.holder)
        return submit_call(rt, spec, keep)
