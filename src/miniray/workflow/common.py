"""Names shared by the workflow modules: WorkflowStatus, step options, the Event type."""
from __future__ import annotations

from enum import Enum
from typing import Any

from miniray.workflow.exceptions import (WorkflowCancellationError, WorkflowError,  # noqa: F401
                                         WorkflowExecutionError, WorkflowNotFoundError,
                                         WorkflowNotResumableError, WorkflowRunningError)

OPTIONS_KEY = "workflow.io/options"     # where workflow.options(...) live in a task's _metadata
STEP_OPTIONS = ("task_id", "metadata", "catch_exceptions", "checkpoint", "max_retries", "retry_exceptions")

Event = Any     # what an EventListener's poll_for_event returns


class WorkflowStatus(str, Enum):
    """Where a workflow stands.  RESUMABLE: stopped by a system failure (its driver or a worker
    died); FAILED: a step raised; both resume from their saved steps."""
    RUNNING = "RUNNING"
    PENDING = "PENDING"
    SUCCESSFUL = "SUCCESSFUL"
    FAILED = "FAILED"
    RESUMABLE = "RESUMABLE"
    CANCELED = "CANCELED"
    NONE = "NONE"

    def __str__(self):
        return self.value


def options(*, task_id: str | None = None, metadata: dict | None = None, catch_exceptions: bool | None = None,
            checkpoint: bool | None = None, max_retries: int | None = None, retry_exceptions=None,
            **unknown) -> dict:
    """Workflow options for one step, as task options: ``f.options(**workflow.options(...)).bind(...)``.

    ``task_id`` names the step in storage (default: the function's name, then ``name_1``...);
    ``checkpoint=False`` does not save its output (it runs again on resume if needed);
    ``catch_exceptions=True`` makes the step return ``(result, None)`` or ``(None, error)``;
    ``max_retries`` and ``retry_exceptions`` retry it (crashes always count; exceptions when
    ``retry_exceptions`` is True or lists their types); ``metadata``: your own JSON-able dict."""
    if unknown:
        raise ValueError(f"workflow.options() got unknown option(s) {sorted(unknown)}; valid ones are "
                         f"{list(STEP_OPTIONS)}. Task options such as num_cpus go to .options() directly.")
    if task_id is not None and (not isinstance(task_id, str) or not task_id or "/" in task_id):
        raise ValueError(f"workflow.options(task_id={task_id!r}): give a non-empty string without '/'.")
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError("workflow.options(metadata=...) takes a dict.")
    if max_retries is not None and (not isinstance(max_retries, int) or max_retries < -1):
        raise ValueError(f"workflow.options(max_retries={max_retries!r}): give an int >= 0 (or -1: for ever).")
    given = {"task_id": task_id, "metadata": metadata, "catch_exceptions": catch_exceptions,
             "checkpoint": checkpoint, "max_retries": max_retries, "retry_exceptions": retry_exceptions}
    return {"_metadata": {OPTIONS_KEY: {k: v for k, v in given.items() if v is not None}}}


__all__ = ["WorkflowStatus", "options", "Event", "OPTIONS_KEY", "WorkflowError", "WorkflowExecutionError",
           "WorkflowCancellationError", "WorkflowNotFoundError", "WorkflowNotResumableError",
           "WorkflowRunningError"]
