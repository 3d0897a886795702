"""Utilities on top of tasks and actors: ActorPool, Queue, state listing, arrays built in the store."""
from miniray.util import state
from miniray.util.actor_pool import ActorPool


def list_named_actors(all_namespaces: bool = False) -> list:
    """Names of the live named actors in this job's namespace; with ``all_namespaces=True``, a
    ``{"name": ..., "namespace": ...}`` dict for each in every namespace (as Ray)."""
    from miniray.api import current_runtime
    rt = current_runtime()
    return rt.request("named_actors", rt.namespace, bool(all_namespaces))


def empty(shape, dtype="float64"):
    """A writable array built directly in the shared-memory store; ``put`` seals it without a copy."""
    from miniray.util.arrays import empty as _empty
    return _empty(shape, dtype)


__all__ = ["ActorPool", "empty", "list_named_actors", "state"]
