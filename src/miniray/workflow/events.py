"""Waiting for the world durably: event listeners, ``wait_for_event`` and ``sleep``.

    wait_for_event(L, *args) ─► poll_for_event step (L().poll_for_event(*args), saved)
                                 └─► event_checkpointed step (L().event_checkpointed(event))

An event is a step's output like any other: once received it is saved, so a resumed workflow does
not wait for it again, and ``event_checkpointed`` (to acknowledge the event at its source) runs only
after it is safe on disk.  ``sleep(d)`` saves its end time first, so a resumed sleep ends when the
first one would have.  The listener runs in a worker (a task), created fresh for each call.
"""
from __future__ import annotations

import asyncio
import inspect
import time

import miniray


class EventListener:
    """Subclass it: ``async def poll_for_event(self, *args, **kwargs)`` returns the event when it
    comes; ``async def event_checkpointed(self, event)`` is told once the event is saved."""

    def __init__(self):
        pass

    async def poll_for_event(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define async poll_for_event().")

    async def event_checkpointed(self, event) -> None:
        pass


class TimerListener(EventListener):
    """The event is the time itself: ``poll_for_event(timestamp)`` returns at that time (time.time())."""

    async def poll_for_event(self, timestamp):
        await asyncio.sleep(max(0.0, timestamp - time.time()))
        return timestamp


def _await(value):
    return asyncio.run(value) if inspect.isawaitable(value) else value


@miniray.remote
def poll_for_event(listener_type, *args, **kwargs):
    return _await(listener_type().poll_for_event(*args, **kwargs))


@miniray.remote
def event_checkpointed(listener_type, event):
    _await(listener_type().event_checkpointed(event))
    return event


@miniray.remote
def sleep_until(duration):
    return time.time() + duration


def wait_for_event(event_listener_type, *args, **kwargs):
    """A DAG node whose value is the next event from ``event_listener_type(...)`` (an EventListener
    subclass); ``args``/``kwargs`` go to its ``poll_for_event``."""
    if not (isinstance(event_listener_type, type) and issubclass(event_listener_type, EventListener)):
        raise TypeError(f"wait_for_event() takes an EventListener subclass, got {event_listener_type!r}. "
                        "Define class MyListener(workflow.EventListener) with async poll_for_event().")
    return event_checkpointed.bind(event_listener_type,
                                   poll_for_event.bind(event_listener_type, *args, **kwargs))


def sleep(duration: float):
    """A DAG node that finishes ``duration`` seconds after it first starts, even across a resume."""
    if not isinstance(duration, (int, float)) or duration < 0:
        raise ValueError(f"workflow.sleep({duration!r}): give a number of seconds >= 0.")
    return wait_for_event(TimerListener, sleep_until.bind(duration))


def step_event_hook(wid: str):
    """For the pictures: each step that ran or was read back from storage becomes a
    ``workflow_step`` event in miniray's event log (where a log exists: in a driver)."""
    from miniray import events

    def hook(task_id, step, how, task=None):
        events.emit("workflow_step", workflow_id=wid, step=task_id, name=step.name, how=how, task=task,
                    deps=tuple(step.deps))
    return hook
