"""``@remote`` on classes: ActorClass, ActorHandle and ActorMethod.

``Counter.remote(0)`` asks the node to create the actor (one synchronous request, so a taken name
fails right here) and returns an ActorHandle at once; the constructor runs in the actor's own worker
process.  ``handle.increment.remote(2)`` sends an actor-method TaskSpec; the node forwards calls to
that worker in arrival order.  Handles are plain data (actor id, class name, method table): they
pickle, travel into tasks and other actors, and work from any process.

The ActorClass stands for the user's class too: its class attributes, classmethods and
staticmethods read through (``Counter.LIMIT``), ``dir()`` lists them, and subclassing it is refused
(derive from the plain class instead, as in Ray).  Every actor also answers two built-in methods:
``__ray_ready__`` (True once the constructor ran) and ``__ray_terminate__`` (exit once the calls
before it are done).  ``exit_actor()`` ends the actor from inside (worker/executor.py).
"""
from __future__ import annotations

import inspect
import uuid

import cloudpickle

from miniray import exceptions as exc
from miniray.options import ACTOR_OPTIONS, check_method_options, check_options
from miniray.refs import ObjectRef
from miniray.remote_function import fixed_arity, pack_args, resource_request, return_ids, submit_call
from miniray.api import current_runtime
from miniray.runtime import call_site
from miniray.store.serialization import dumps_code
from miniray.transport.messages import TaskSpec


BUILTINS = ("__ray_ready__", "__ray_terminate__")
NO_RESOURCES: dict = {}     # an actor call's resources and options: one shared, never-written dict
NO_OPTIONS: dict = {}       # each (not two new ones per call, while it is queued)


class ActorClassInheritanceException(TypeError):
    """Raised when a class derives from an actor class (derive from the plain class instead)."""


def method(*args, **options):
    """``@miniray.method(num_returns=k)`` on an actor method."""
    if args:
        raise TypeError("@miniray.method takes keyword options only, e.g. @miniray.method(num_returns=2).")
    check_method_options(options)

    def mark(fn):
        if options.get("num_returns") is not None:
            fn.__miniray_num_returns__ = options["num_returns"]
        return fn
    return mark


def exit_actor():
    """End the current actor from inside one of its methods (or its constructor), as Ray's
    ``ray.actor.exit_actor()``: the call's ref and the calls queued behind it raise ActorDiedError,
    the actor is not restarted, and its ``__ray_shutdown__`` and atexit handlers run first."""
    ctx = current_runtime().context_of()
    if ctx is None or not ctx.actor_id:
        raise TypeError("exit_actor() was called outside an actor. Call it inside an actor method "
                        "(or its __init__) to end that actor; to stop an actor from outside, use "
                        "miniray.kill(handle).")
    raise exc.ActorExit("exit_actor() was called")


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
        decorator = getattr(fn, "__ray_invocation_decorator__", None)
        if decorator is not None:        # Ray's hook: it wraps the caller's .remote(args, kwargs)
            table[name]["decorator"] = cloudpickle.dumps(decorator)
    for name in BUILTINS:
        table[name] = {"num_returns": 1, "sig": inspect.Signature()}
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

    def __getattr__(self, name):
        """The user's class attributes, classmethods and staticmethods, as on the plain class."""
        if name.startswith("__") or "_cls" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self._cls, name)

    def __dir__(self):
        return sorted(set(dir(self._cls)) | set(super().__dir__()))

    def __mro_entries__(self, bases):
        raise ActorClassInheritanceException(
            f"Inheriting from actor classes is not supported: {self._cls.__name__} is an actor class. "
            f"Derive from the plain class (define it without @remote), then decorate the subclass.")

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

    def bind(self, *args, **kwargs):
        from miniray.dag import ClassNode
        return ClassNode(self, args, kwargs, {})

    def _remote(self, args, kwargs, opts):
        if opts.get("get_if_exists") and not opts.get("name"):
            raise ValueError(f"{self._cls.__name__}.options(get_if_exists=True) needs a name=: the actor "
                             "to reuse is found by its name.")
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
        methods = {m: {k: v[k] for k in ("num_returns", "decorator") if k in v} for m, v in self._methods.items()}
        handle_state = {"actor_id": actor_id, "class_name": name, "methods": methods,
                        "sigs": {m: v["sig"] for m, v in self._methods.items()},
                        "arity": {m: fixed_arity(v["sig"]) for m, v in self._methods.items()}}
        explicit = tuple(k for k, key in (("CPU", "num_cpus"), ("GPU", "num_gpus"), ("memory", "memory"))
                         if opts.get(key) is not None) + tuple((opts.get("resources") or {}).keys())
        env = {**rt.job_env, **((opts.get("runtime_env") or {}).get("env_vars") or {})} or None
        options = {"name": opts.get("name"), "namespace": opts.get("namespace") or rt.namespace,
                   "get_if_exists": bool(opts.get("get_if_exists")), "handle": handle_state,
                   "max_restarts": int(opts.get("max_restarts") or 0),
                   "max_task_retries": int(opts.get("max_task_retries") or 0), "job_ns": rt.namespace,
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

    def options(self, **opts):
        return self._ac.options(**{**self._opts, **opts})

    def bind(self, *args, **kwargs):
        from miniray.dag import ClassNode
        return ClassNode(self._ac, args, kwargs, self._opts)


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
        if name in ("_state", "_actor_id", "_ref") or (name.startswith("__") and name not in BUILTINS):
            raise AttributeError(name)
        methods = self._state["methods"]
        if name in BUILTINS and name not in methods:      # a handle from before they were listed
            return ActorMethod(self, name, 1)
        if name not in methods:
            raise AttributeError(f"Actor {self._state['class_name']} has no method {name!r}. "
                                 f"Its methods are: {sorted(m for m in methods if not m.startswith('_'))}.")
        return ActorMethod(self, name, methods[name]["num_returns"], methods[name].get("decorator"))

    def __reduce__(self):
        return (ActorHandle, (self._state, self._ref))   # the ref travels: counted as captured

    def __repr__(self):
        return f"Actor({self._state['class_name']}, {self._actor_id})"   # ids of a session share a head

    def __eq__(self, other):
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __hash__(self):
        return hash(self._actor_id)


class ActorMethod:
    def __init__(self, handle, name, num_returns, decorator=None):
        self._handle, self._name, self._num_returns = handle, name, num_returns
        self._decorator = decorator

    def __call__(self, *a, **k):
        raise TypeError(f"Actor methods cannot be called directly. Use "
                        f"handle.{self._name}.remote(...), then miniray.get() the ref it returns.")

    def options(self, **opts):
        check_method_options(opts)
        n = opts.get("num_returns")
        return ActorMethod(self._handle, self._name, self._num_returns if n is None else n, self._decorator)

    def bind(self, *args, **kwargs):
        from miniray.dag import ClassMethodNode
        return ClassMethodNode(self._handle, self._name, args, kwargs, {})

    def remote(self, *args, **kwargs):
        if self._decorator is not None:
            decorate = cloudpickle.loads(self._decorator)
            return decorate(lambda a, k: self._remote(tuple(a), dict(k)))(args, kwargs)
        return self._remote(args, kwargs)

    def _remote(self, args, kwargs):
        rt = current_runtime()
        st = self._handle._state
        qual = f"{st['class_name']}.{self._name}"
        desc, deps, nested, keep = pack_args(rt, st.get("sigs", {}).get(self._name), qual, args, kwargs,
                                             st.get("arity", {}).get(self._name, -1))
        n = self._num_returns
        tid = rt.new_task_id()
        returns = return_ids(tid, n)
        nested = nested + (self._handle._ref._id,)      # a pending call keeps its actor alive
        spec = TaskSpec(tid, qual, "actor_method", self._name, desc, deps, nested, returns, n, NO_RESOURCES,
                        0, False, self._handle._actor_id, NO_OPTIONS, call_site(), rt.holder)
        return submit_call(rt, spec, keep)
