"""``JobConfig``, as ``ray.job_config.JobConfig``, for ``init(job_config=...)``.

Only what miniray has a meaning for is used: ``runtime_env`` (its ``env_vars`` reach every task
and actor of the job unless an option overrides them), ``metadata`` (kept, shown by nothing) and
``ray_namespace`` (the job's namespace, as ``init(namespace=...)``).  The other fields of Ray's
class are accepted and ignored, so configs written for Ray load.
"""
from __future__ import annotations


class JobConfig:
    def __init__(self, jvm_options=None, code_search_path=None, runtime_env=None, client_job=False,
                 metadata=None, ray_namespace=None, default_actor_lifetime="non_detached",
                 _py_driver_sys_path=None):
        if runtime_env is not None and not isinstance(runtime_env, dict):
            raise TypeError(f"JobConfig(runtime_env=...) takes a dict, got {type(runtime_env).__name__}.")
        unknown = set(runtime_env or {}) - {"env_vars"}
        if unknown:
            raise ValueError(f"JobConfig runtime_env keys {sorted(unknown)} are not supported by miniray; "
                             "only 'env_vars' is.")
        if default_actor_lifetime not in ("detached", "non_detached"):
            raise ValueError("JobConfig(default_actor_lifetime=...) takes 'detached' or 'non_detached'.")
        self.runtime_env = dict(runtime_env or {})
        self.metadata = dict(metadata or {})
        self.ray_namespace = ray_namespace
        self.default_actor_lifetime = default_actor_lifetime
        self.jvm_options, self.code_search_path = list(jvm_options or []), list(code_search_path or [])
        self.client_job = client_job

    def set_runtime_env(self, runtime_env, validate=False):
        self.runtime_env = dict(runtime_env or {})

    def set_ray_namespace(self, ray_namespace):
        self.ray_namespace = ray_namespace

    def set_metadata(self, key, value):
        self.metadata[key] = value

    def set_default_actor_lifetime(self, lifetime):
        self.default_actor_lifetime = lifetime

    def __repr__(self):
        return f"JobConfig(runtime_env={self.runtime_env}, namespace={self.ray_namespace!r})"
