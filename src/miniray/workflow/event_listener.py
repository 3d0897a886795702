"""``ray.workflow.event_listener``'s names: EventListener and TimerListener."""
from miniray.workflow.events import EventListener, TimerListener

__all__ = ["EventListener", "TimerListener"]
