"""``get_runtime_context()``: what the current code runs as (Ray's ``ray.runtime_context``).

State: none of its own.  A RuntimeContext reads the process's Runtime (job, node, worker, namespace)
and, inside a task or actor call, the call's context (worker/executor.py CallContext: its spec,
GPU ids, cancel flag, and the Executor that runs it, which knows the actor's creation spec).
"""
from __future__ import annotations


class RuntimeContext:
    """What ``get_runtime_context()`` returns: ids of the current job, node, task and actor, the
    resources given to the current call, and the actor's own handle.  In the driver the task and
    actor entries are None."""

    def __init__(self, rt):
        self._rt = rt
        self._ctx = rt.context_of()

    # -- ids, as methods (strings) and as attributes (with .hex(), as Ray's ID objects) -------------
    def get_job_id(self):
        return self._rt.job_id

    def get_node_id(self):
        return self._rt.node_id

    def get_task_id(self):
        return self._ctx.task_id if self._ctx else None

    def get_actor_id(self):
        return self._ctx.actor_id or None if self._ctx else None

    def get_worker_id(self):
        return self._rt.holder

    def _id(self, which):
        import warnings
        warnings.warn(f"Use get_{which}() instead (a string); the {which} attribute is Ray's older API.",
                      DeprecationWarning, stacklevel=3)
        return _Id.of(getattr(self, f"get_{which}")())

    job_id = property(lambda self: self._id("job_id"))
    node_id = property(lambda self: self._id("node_id"))
    task_id = property(lambda self: self._id("task_id"))
    actor_id = property(lambda self: self._id("actor_id"))

    def get_placement_group_id(self):
        return None           # miniray has no placement groups

    def get_dashboard_url(self) -> str:
        return ""             # no web dashboard: the notebook magics (%dashboard) stand in for it

    @property
    def namespace(self):
        return self._rt.namespace

    # -- the current call -------------------------------------------------------------------------
    def get_task_name(self):
        return self._ctx.name if self._ctx else None

    def get_task_function_name(self):
        if not self._ctx:
            return None
        spec = self._ctx.spec
        if spec.type == "task":
            return spec.fn_id.split(":")[0]
        instance = self._ctx.executor.instance if self._ctx.executor is not None else None
        return f"{type(instance).__module__}.{spec.name}" if instance is not None else spec.name

    def get_assigned_resources(self) -> dict:
        """The resources the current task (or actor, for its lifetime) holds: {"CPU": 1.0, ...}."""
        if not self._ctx:
            return {}
        spec = self._ctx.spec
        if spec.type == "actor_method" and self._ctx.executor is not None:
            creation = self._ctx.executor.actor_spec
            keep = creation.options.get("explicit", ()) if creation else ()
            res = {k: v for k, v in creation.resources.items() if k in keep} if creation else {}
        else:
            res = spec.resources
        return {k: float(v) for k, v in res.items() if not k.startswith("node_id:")}

    def get_accelerator_ids(self) -> dict:
        ids = self._ctx.gpu_ids if self._ctx else []
        return {"GPU": [str(i) for i in ids]}

    def is_canceled(self) -> bool:
        return bool(self._ctx and self._ctx.cancelled)

    # -- the current actor ------------------------------------------------------------------------
    def _actor_spec(self):
        ex = self._ctx.executor if self._ctx else None
        return ex.actor_spec if ex is not None and self.get_actor_id() else None

    def get_actor_name(self):
        """The actor's name; "" in an unnamed actor, None outside actors (as Ray)."""
        spec = self._actor_spec()
        return (spec.options.get("name") or "") if spec else None

    @property
    def current_actor(self):
        """The handle of the actor this code runs in (RuntimeError outside an actor, as Ray)."""
        spec = self._actor_spec()
        if spec is None:
            raise RuntimeError("current_actor is only available inside an actor's methods.")
        from miniray.actor import ActorHandle
        return ActorHandle(spec.options["handle"])

    @property
    def was_current_actor_reconstructed(self) -> bool:
        """True in an actor restarted after its worker died (max_restarts)."""
        ex = self._ctx.executor if self._ctx else None
        return bool(ex is not None and ex.restarted)

    def get(self):
        out = {"job_id": _Id(self.get_job_id()), "node_id": _Id(self.get_node_id()), "namespace": self.namespace}
        if self.get_task_id():
            out["task_id"] = _Id(self.get_task_id())
        if self.get_actor_id():
            out["actor_id"] = _Id(self.get_actor_id())
        return out


class _Id(str):
    """An id string with Ray's ID methods (``.hex()``, ``.binary()``)."""

    @classmethod
    def of(cls, value):
        return None if value is None else cls(value)

    def hex(self) -> str:
        return str(self)

    def binary(self) -> bytes:
        return str(self).encode()
