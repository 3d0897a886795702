"""Workflow errors, named as ``ray.workflow.exceptions`` names them."""
from __future__ import annotations


class WorkflowError(Exception):
    """Base of the workflow errors."""


class WorkflowExecutionError(WorkflowError):
    """A workflow failed; the step's own error is raised as a subclass of its type where possible."""

    def __init__(self, workflow_id: str = "", message: str = ""):
        self.workflow_id = workflow_id
        super().__init__(message or f"Workflow[id={workflow_id}] failed during execution.")


class WorkflowCancellationError(WorkflowError):
    def __init__(self, workflow_id: str = ""):
        self.workflow_id = workflow_id
        super().__init__(f"Workflow[id={workflow_id}] is cancelled during execution.")


class WorkflowNotResumableError(WorkflowError):
    def __init__(self, workflow_id: str = "", why: str = ""):
        self.workflow_id = workflow_id
        super().__init__(f"Workflow[id={workflow_id}] is not resumable{': ' + why if why else '.'}")


class WorkflowNotFoundError(WorkflowError, ValueError):
    """No workflow (or no task of it) with that id in the storage."""


class WorkflowRunningError(WorkflowError):
    """Another live process runs this workflow now."""


__all__ = ["WorkflowError", "WorkflowExecutionError", "WorkflowCancellationError",
           "WorkflowNotResumableError", "WorkflowNotFoundError", "WorkflowRunningError"]
