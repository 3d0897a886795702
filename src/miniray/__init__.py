"""miniray: a small, Ray-compatible runtime for teaching parallel and distributed Python.

    import miniray as ray
    @ray.remote
    def square(x):
        return x * x
    ray.get([square.remote(i) for i in range(4)])   # [0, 1, 4, 9]

The public names follow Ray's; see README.md for what is covered and what differs.
"""
from miniray import actor, events, exceptions, types, util
from miniray.actor import ActorClass, ActorHandle, method
from miniray.generators import DynamicObjectRefGenerator, ObjectRefGenerator
from miniray.api import (available_resources, cancel, cluster_resources, get, get_actor, get_gpu_ids,
                         get_runtime_context, init, is_initialized, kill, nodes, put, shutdown, timeline,
                         wait)
from miniray.job_config import JobConfig
from miniray.refs import ObjectRef
from miniray.remote_function import RemoteFunction

ObjectID = ObjectRef            # Ray's old name

__version__ = "0.1.0"


def remote(*args, **options):
    """``@remote``, ``@remote()`` or ``@remote(num_cpus=2, ...)`` on a function or a class."""
    if len(args) == 1 and not options and callable(args[0]):
        return _make(args[0], {})
    if args:
        raise TypeError("@remote takes keyword options only, e.g. @remote(num_cpus=2).")
    return lambda fn: _make(fn, options)


def _make(target, options):
    if isinstance(target, type):
        return ActorClass(target, options)
    return RemoteFunction(target, options)


def load_ipython_extension(ipython):
    """``%load_ext miniray`` loads the notebook magics (same as ``%load_ext miniray_magics``)."""
    import miniray_magics
    miniray_magics.load_ipython_extension(ipython)


__all__ = ["init", "shutdown", "is_initialized", "remote", "get", "put", "wait", "cancel", "kill",
           "get_actor", "nodes", "cluster_resources", "available_resources", "get_runtime_context",
           "get_gpu_ids", "timeline", "method", "ObjectRef", "ActorHandle", "ActorClass",
           "RemoteFunction", "exceptions", "ObjectID", "ObjectRefGenerator", "DynamicObjectRefGenerator",
           "JobConfig", "actor", "types"]


_LAZY = ("dag", "workflow", "data", "tune", "train", "rllib")


def __getattr__(name):
    """``miniray.data``, ``tune``, ``train``, ``rllib``, ``dag`` and ``workflow`` load on first use,
    as ``ray.data`` does after ``import ray``, keeping ``import miniray`` light."""
    if name in _LAZY:
        import importlib
        return importlib.import_module(f"miniray.{name}")
    raise AttributeError(f"module 'miniray' has no attribute {name!r}")
