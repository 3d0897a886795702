"""``@remote`` on functions: RemoteFunction, ``.remote()`` and ``.options()``.

``.remote(*args)`` checks the arguments against the function's signature (a TypeError here, as a
local call would raise), pickles them (an unpicklable argument is named in the error), turns each
top-level ObjectRef argument into a dependency, and sends one TaskSpec to the node.  It returns the
ObjectRef(s) of the values to come.  Nothing waits for the task: in the driver the node takes the
spec on the caller's thread when it is free (Node.offer), and calls for busy workers go out in batches.
"""
from __future__ import annotations

import functools
import inspect
import os
import pickle
import uuid

import cloudpickle

from miniray.options import TASK_OPTIONS, check_options
from miniray.refs import ArgRef, ObjectRef
from miniray.api import current_runtime
from miniray.runtime import call_site
from miniray.store.serialization import SCALARS, dumps_code, serialize
from miniray.transport.messages import TaskSpec

def resource_request(opts: dict, default_cpus: float) -> dict:
    need = {"CPU": float(opts.get("num_cpus", default_cpus) if opts.get("num_cpus") is not None else default_cpus)}
    if opts.get("num_gpus"):
        need["GPU"] = float(opts["num_gpus"])
    if opts.get("memory"):
        need["memory"] = float(opts["memory"])
    for k, v in (opts.get("resources") or {}).items():
        need[k] = float(v)
    strategy = opts.get("scheduling_strategy")
    node_id = getattr(strategy, "node_id", None)
    if node_id and not getattr(strategy, "soft", False):
        need[f"node_id:{node_id}"] = 0.001
    return {k: v for k, v in need.items() if v}


def fixed_arity(sig) -> int:
    """How many positional arguments a call must pass when the signature has only plain positional
    parameters (no defaults, no *args, **kwargs or keyword-only): such a call needs no bind()."""
    if sig is None:
        return -1
    plain = all(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
                for p in sig.parameters.values())
    return len(sig.parameters) if plain else -1


def pack_args(rt, sig, name, args, kwargs, arity=-1):
    """(args descriptor, deps, nested refs) for a call; raises TypeError like a local call would.
    ``arity`` (from ``fixed_arity``) lets a plain call skip the signature check."""
    if sig is not None and (kwargs or len(args) != arity):
        try:
            sig.bind(*args, **kwargs)
        except TypeError as err:
            raise TypeError(f"{name}.remote(): {err}") from None
    if SCALARS.issuperset(map(type, args)) and (not kwargs or SCALARS.issuperset(map(type, kwargs.values()))):
        meta = pickle.dumps((args, kwargs), protocol=5)     # the usual call: numbers and strings
        if len(meta) <= rt.inline_max:
            return meta, (), (), None      # bare bytes: a descriptor tuple would add 64 bytes a call
    deps = []

    def mark(v):
        if type(v) is ObjectRef:
            deps.append(v._id)
            return ArgRef(v._id)
        return v

    packed = (tuple(mark(a) for a in args), {k: mark(v) for k, v in kwargs.items()})
    try:
        ser = serialize(packed)
    except Exception as err:
        culprit = _unpicklable(args, kwargs)
        raise TypeError(f"{name}.remote(): argument {culprit} cannot be pickled ({type(err).__name__}: "
                        f"{err}). Tasks receive copies of their arguments: pass plain data, or create "
                        "the object inside the task.") from err
    if ser.size <= rt.inline_max:
        return ser.inline(), tuple(deps), tuple(ser.contained), None
    oid = rt.new_task_id() + "00"
    keep = ObjectRef(oid)
    rt.put_serialized(oid, ser, call_site())
    return ("ref", oid), tuple(deps) + (oid,), tuple(ser.contained), keep


def _unpicklable(args, kwargs) -> str:
    for i, a in enumerate(args):
        try:
            cloudpickle.dumps(a)
        except Exception:
            return f"#{i} ({type(a).__name__})"
    for k, v in kwargs.items():
        try:
            cloudpickle.dumps(v)
        except Exception:
            return f"{k}= ({type(v).__name__})"
    return "?"


def return_ids(tid: str, n) -> tuple:
    if n == 1 or n in ("streaming", "dynamic"):
        return (tid + "00",)
    return tuple(f"{tid}{i:02x}" for i in range(n))


def submit_call(rt, spec, keep=None):
    """Send a task or actor call; returns what ``.remote()`` returns.  Its refs are counted
    before the call goes out, and ``keep`` (the ref of arguments too big to inline) until then."""
    ctx = rt.context_of()
    if ctx is not None and spec.type == "task":     # a task inside a call: cancel(recursive) finds it
        spec.options = {**spec.options, "parent": ctx.task_id}   # a copy: the dict is shared
    if spec.num_returns == 1:       # the usual call
        ref = ObjectRef(spec.returns[0])
        rt.submit(spec)
        return ref
    refs = [ObjectRef(oid) for oid in spec.returns]
    rt.submit(spec)
    del keep
    return wrap_returns(spec.task_id, spec.num_returns, refs)


def wrap_returns(tid: str, n, refs):
    """What ``.remote()`` returns: one ref, a list of refs, None, or a streaming generator."""
    if n == "streaming":
        from miniray.generators import ObjectRefGenerator
        return ObjectRefGenerator(tid, refs[0])
    if n == 1 or n == "dynamic":
        return refs[0]
    return refs if n else None


class RemoteFunction:
    def __init__(self, fn, options: dict | None = None):
        if not callable(fn):
            raise TypeError(f"@remote needs a function or a class, got {type(fn).__name__}.")
        if inspect.iscoroutinefunction(fn):
            raise ValueError(f"@remote on 'async def {fn.__name__}' is not allowed: a task is a plain "
                             "function. Call asyncio.run(...) inside a plain function, or make it a "
                             "method of an actor class (async actors run their methods on an event loop).")
        self._function = fn
        self._options = check_options(dict(options or {}), TASK_OPTIONS, f"task {fn.__name__}")
        self._fn_id = f"{fn.__module__}.{fn.__qualname__}:{uuid.uuid4().hex[:12]}"
        self._blob = None
        self._derived, self._for, self._ns = None, None, None   # _derive(options), cached per dict
        try:
            self._sig = inspect.signature(fn)
        except (TypeError, ValueError):
            self._sig = None
        self._arity = fixed_arity(self._sig)
        self._default_returns = "streaming" if inspect.isgeneratorfunction(fn) else 1
        functools.update_wrapper(self, fn, updated=())

    def __call__(self, *args, **kwargs):
        name = self._function.__name__
        raise TypeError(f"Remote function '{name}' cannot be called directly. Use {name}.remote(...) to "
                        f"run it as a task; it returns an ObjectRef, and miniray.get(ref) gives the value. "
                        f"To run it locally, call {name}._function(...).")

    def __reduce__(self):
        return (_rebuild_remote_function, (self._function, self._options, self._fn_id))

    def options(self, **opts):
        merged = check_options({**self._options, **opts}, TASK_OPTIONS, f"task {self._function.__name__}")
        return _Bound(self, merged)

    def remote(self, *args, **kwargs):
        return self._remote(args, kwargs, self._options)

    def bind(self, *args, **kwargs):
        """A lazy call: a DAG node that runs at ``.execute()`` (see miniray.dag)."""
        from miniray.dag import FunctionNode
        return FunctionNode(self, args, kwargs, {})

    def _remote(self, args, kwargs, opts):
        rt = current_runtime()
        if self._blob is None or self._blob[0] != rt.address:
            self._blob = (rt.address, dumps_code(self._function, ship_module=rt.address is not None))
        if self._fn_id not in rt.fns:
            rt.ensure_function(self._fn_id, lambda: self._blob[1])
        if opts is not self._for or self._ns != rt.namespace:   # worked out once per options dict
            self._derived, self._for, self._ns = self._derive(opts, rt.namespace, rt.job_env), opts, rt.namespace
        name, n, res, max_retries, retry, extra = self._derived
        desc, deps, nested, keep = pack_args(rt, self._sig, name, args, kwargs, self._arity)
        tid = rt.new_task_id()
        returns = return_ids(tid, n)
        spec = TaskSpec(tid, name, "task", self._fn_id, desc, deps, nested, returns, n, res,   # shared,
                        max_retries, retry, options=extra, call_site=call_site(), owner=rt.holder)  # read-only
        return submit_call(rt, spec, keep)

    def _derive(self, opts, namespace="default", job_env=None) -> tuple:
        name = opts.get("name") or self._function.__name__
        n = opts.get("num_returns")
        n = self._default_returns if n is None else n
        retry = opts.get("retry_exceptions", False)
        if isinstance(retry, (list, tuple)):    # by value: classes of __main__ load in the worker too
            retry = cloudpickle.dumps(tuple(retry))
        env = {**(job_env or {}), **((opts.get("runtime_env") or {}).get("env_vars") or {})}
        extra = {"env_vars": env} if env else {}
        if opts.get("scheduling_strategy") == "SPREAD":
            extra["strategy"] = "SPREAD"
        if namespace != "default":          # the job's namespace: get_actor inside the task finds its actors
            extra["job_ns"] = namespace
        retries = opts.get("max_retries")
        retries = 3 if retries is None else (10**9 if retries == -1 else retries)   # -1: for ever
        return name, n, resource_request(opts, 1.0), retries, retry, extra

    def __repr__(self):
        return f"<miniray remote function {self._function.__module__}.{self._function.__qualname__}>"


def _rebuild_remote_function(fn, options, fn_id):
    rf = RemoteFunction(fn, options)
    rf._fn_id = fn_id
    return rf


class _Bound:
    """``f.options(...)``: the same function with other options, for one or more calls."""

    def __init__(self, rf, opts):
        self._rf, self._opts = rf, opts

    def remote(self, *args, **kwargs):
        return self._rf._remote(args, kwargs, self._opts)

    def options(self, **opts):
        return self._rf.options(**{**self._opts, **opts})

    def bind(self, *args, **kwargs):
        from miniray.dag import FunctionNode
        return FunctionNode(self._rf, args, kwargs, self._opts)

    def __call__(self, *a, **k):
        return self._rf(*a, **k)


_ = os
