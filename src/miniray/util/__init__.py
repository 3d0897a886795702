"""Utilities on top of tasks and actors: ActorPool, Queue, state listing, arrays built in the store."""
from miniray.util import state
from miniray.util.actor_pool import ActorPool


def empty(shape, dtype="float64"):
    """A writable array built directly in the shared-memory store; ``put`` seals it without a copy."""
    from miniray.util.arrays import empty as _empty
    return _empty(shape, dtype)


__all__ = ["ActorPool", "empty", "state"]
