"""``miniray workflow list|status|output|resume|cancel|delete``: the storage, from a shell.

Reads the same directory as the library ($MINIRAY_WORKFLOW_STORAGE, or --storage DIR).  Only
``resume`` starts a runtime (a local one, unless --address is given).
"""
from __future__ import annotations

import argparse
import json
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="miniray workflow", description="Look at and manage durable workflows.")
    p.add_argument("--storage", help="the workflow storage directory (default: $MINIRAY_WORKFLOW_STORAGE "
                                     "or $TMPDIR/miniray-workflows-<uid>)")
    sub = p.add_subparsers(dest="verb", required=True)
    ls = sub.add_parser("list", help="every workflow and its status")
    ls.add_argument("--status", action="append", help="only this status (repeatable): RUNNING, FAILED, ...")
    for verb, text in (("status", "a workflow's status and times"), ("cancel", "stop a workflow for good"),
                       ("delete", "remove a workflow and its saved outputs")):
        sub.add_parser(verb, help=text).add_argument("workflow_id")
    out = sub.add_parser("output", help="print a workflow's output (or one task's)")
    out.add_argument("workflow_id")
    out.add_argument("--task-id", help="the output of this task instead")
    res = sub.add_parser("resume", help="finish a RESUMABLE or FAILED workflow here; print its output")
    res.add_argument("workflow_id")
    res.add_argument("--address", help="join this cluster instead of starting a local runtime")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from miniray import workflow
    if args.storage:
        workflow.init(storage=args.storage)
    try:
        return _run(workflow, args)
    except workflow.WorkflowError as err:
        print(f"miniray workflow {args.verb}: {err}", file=sys.stderr)
        return 1


def _run(workflow, args) -> int:
    if args.verb == "list":
        rows = workflow.list_all(set(s.upper() for s in args.status) if args.status else None)
        width = max([len(w) for w, _ in rows] + [11])
        print(f"{'WORKFLOW_ID':<{width}}  STATUS")
        for wid, status in rows:
            print(f"{wid:<{width}}  {status.value}")
    elif args.verb == "status":
        meta = workflow.get_metadata(args.workflow_id)
        print(meta["status"])
        print(json.dumps({k: meta.get(k) for k in ("output_task_id", "num_steps", "stats", "error",
                                                    "user_metadata")}, indent=1, default=str))
    elif args.verb == "output":
        try:
            print(repr(workflow.get_output(args.workflow_id, task_id=args.task_id)))
        except workflow.WorkflowError:
            raise
        except Exception as err:       # the workflow failed: its step's own error
            print(f"miniray workflow output: workflow {args.workflow_id!r} failed: {err}", file=sys.stderr)
            return 1
    elif args.verb == "resume":
        import miniray
        miniray.init(address=args.address)
        try:
            print(repr(workflow.resume(args.workflow_id)))
        finally:
            miniray.shutdown()
    elif args.verb == "cancel":
        workflow.cancel(args.workflow_id)
        print(f"{args.workflow_id}: {workflow.get_status(args.workflow_id).value}")
    elif args.verb == "delete":
        workflow.delete(args.workflow_id)
        print(f"deleted {args.workflow_id}")
    return 0
