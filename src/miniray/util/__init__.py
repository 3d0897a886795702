"""Utilities on top of tasks and actors: ActorPool, Queue, state listing, arrays built in the store."""
from miniray.util.actor_pool import ActorPool
from miniray.util.arrays import empty

__all__ = ["ActorPool", "empty"]
