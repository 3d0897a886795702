"""miniray.workflow: durable DAGs with Ray 2.47's Workflows API.

    from miniray import workflow
    dag = report.bind(*[clean.bind(load.bind(d)) for d in range(7)])
    workflow.run(dag, workflow_id="week-48")      # each step's output is saved as it finishes
    workflow.resume("week-48")                    # after a crash: only the unfinished steps run

See docs/workflow.md.  Storage: workflow.init(storage=...), miniray.init(storage=...),
$MINIRAY_WORKFLOW_STORAGE, or $TMPDIR/miniray-workflows-<uid>.
"""
from miniray.workflow import exceptions
from miniray.workflow.api import (cancel, continuation, delete, get_metadata, get_output, get_output_async,
                                  get_status, init, list_all, resume, resume_all, resume_async, run, run_async)
from miniray.workflow.common import Event, WorkflowStatus, options
from miniray.workflow.events import EventListener, TimerListener, sleep, wait_for_event
from miniray.workflow.exceptions import (WorkflowCancellationError, WorkflowError, WorkflowExecutionError,
                                         WorkflowNotFoundError, WorkflowNotResumableError, WorkflowRunningError)

RUNNING, PENDING, SUCCESSFUL = WorkflowStatus.RUNNING, WorkflowStatus.PENDING, WorkflowStatus.SUCCESSFUL
FAILED, RESUMABLE, CANCELED = WorkflowStatus.FAILED, WorkflowStatus.RESUMABLE, WorkflowStatus.CANCELED

__all__ = ["run", "run_async", "resume", "resume_async", "resume_all", "get_output", "get_output_async",
           "get_status", "list_all", "get_metadata", "cancel", "delete", "options", "continuation", "sleep",
           "wait_for_event", "init", "EventListener", "TimerListener", "Event", "WorkflowStatus",
           "WorkflowError", "WorkflowExecutionError", "WorkflowCancellationError", "WorkflowNotFoundError",
           "WorkflowNotResumableError", "WorkflowRunningError", "exceptions"]
