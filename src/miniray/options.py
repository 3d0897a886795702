"""Checking ``@remote(...)`` and ``.options(...)`` values when they are given, as Ray does.

Each option has the types it accepts (a TypeError names the type it got) and, for numbers, the
range it accepts (a ValueError says which).  ``check_options`` runs at decoration and at every
``.options()`` call, so a bad value fails on the line that wrote it, not when the task runs.
Nothing here keeps state; the tables are constants.
"""
from __future__ import annotations

NUMBER = (int, float)
_NONE = type(None)

COMMON = {"num_cpus", "num_gpus", "resources", "memory", "name", "scheduling_strategy", "runtime_env",
          "accelerator_type", "label_selector", "placement_group", "placement_group_bundle_index",
          "placement_group_capture_child_tasks", "object_store_memory", "fallback_strategy",
          "enable_task_events", "_metadata"}
TASK_OPTIONS = COMMON | {"num_returns", "max_retries", "retry_exceptions", "max_calls"}
ACTOR_OPTIONS = COMMON | {"max_restarts", "max_task_retries", "max_concurrency", "namespace",
                          "get_if_exists", "lifetime", "concurrency_groups", "max_pending_calls"}
METHOD_OPTIONS = {"num_returns", "name", "concurrency_group", "max_task_retries", "retry_exceptions",
                  "enable_task_events", "tensor_transport", "_generator_backpressure_num_objects"}

# option -> the types it accepts
TYPES = {"num_cpus": NUMBER + (_NONE,), "num_gpus": NUMBER + (_NONE,), "memory": NUMBER + (_NONE,),
         "object_store_memory": NUMBER + (_NONE,), "resources": (dict, _NONE), "name": (str, _NONE),
         "runtime_env": (dict, _NONE), "num_returns": (int, str, _NONE), "max_retries": (int, _NONE),
         "retry_exceptions": (bool, list, tuple), "max_calls": (int, _NONE), "max_restarts": (int, _NONE),
         "max_task_retries": (int, _NONE), "max_concurrency": (int, _NONE), "namespace": (str, _NONE),
         "get_if_exists": (bool,), "lifetime": (str, _NONE), "max_pending_calls": (int, _NONE),
         "accelerator_type": (str, _NONE)}
# option -> (lowest value accepted, what the error says)
LOWEST = {"max_retries": (-1, "None, 0, -1 or a positive integer, where -1 means retry for ever"),
          "max_restarts": (-1, "None, 0, -1 or a positive integer, where -1 means restart for ever"),
          "max_task_retries": (-1, "None, 0, -1 or a positive integer, where -1 means retry for ever"),
          "max_calls": (0, "None, 0 or a positive integer"),
          "max_concurrency": (0, "None or a positive integer"),
          "max_pending_calls": (-1, "-1 (no limit) or a positive integer")}
RETURN_MODES = ("streaming", "dynamic")


def check_options(opts: dict, allowed: set, what: str) -> dict:
    """``opts`` if every option is known and its value fits; else a ValueError/TypeError saying why."""
    bad = sorted(set(opts) - allowed)
    if bad:
        raise ValueError(f"Unknown option(s) {bad} for {what}. Valid options are: {sorted(allowed)}.")
    for key, value in opts.items():
        types = TYPES.get(key)
        if types is not None and not isinstance(value, types):
            names = ", ".join(t.__name__ for t in types)
            raise TypeError(f"{what}: option {key}= takes {names}, got {type(value).__name__} {value!r}.")
    for key in ("num_cpus", "num_gpus", "memory", "object_store_memory"):
        if (opts.get(key) or 0) < 0:
            raise ValueError(f"{what}: {key}={opts[key]!r}: the quantity of a resource cannot be negative.")
    for key, (low, says) in LOWEST.items():
        if opts.get(key) is not None and opts[key] < low:
            raise ValueError(f"{what}: {key}={opts[key]!r}: {key} takes {says}.")
    _check_resources(opts.get("resources") or {}, what)
    _check_num_returns(opts.get("num_returns"), what)
    _check_retry(opts.get("retry_exceptions", False), what)
    _check_strategy(opts.get("scheduling_strategy"), what)
    if opts.get("lifetime") not in (None, "detached", "non_detached"):
        raise ValueError(f"{what}: lifetime={opts['lifetime']!r}: use 'detached', 'non_detached' or None.")
    if opts.get("name") == "" and "namespace" in allowed:
        raise ValueError(f"{what}: an actor name cannot be an empty string; give a name or leave it out.")
    unknown_env = set(opts.get("runtime_env") or {}) - {"env_vars"}
    if unknown_env:
        raise ValueError(f"runtime_env keys {sorted(unknown_env)} are not supported by miniray; only "
                         "'env_vars' is. Install packages into the environment the workers share instead.")
    return opts


def _check_resources(res: dict, what: str) -> None:
    for key in ("CPU", "GPU", "memory"):
        if key in res:
            option = {"CPU": "num_cpus", "GPU": "num_gpus"}.get(key, "memory")
            raise ValueError(f"{what}: use the {option} option instead of resources={{'{key}': ...}}.")
    for key, v in res.items():
        if not isinstance(v, NUMBER) or isinstance(v, bool):
            raise TypeError(f"{what}: resources[{key!r}] must be a number, got {type(v).__name__} {v!r}.")
        if v < 0:
            raise ValueError(f"{what}: resources[{key!r}]={v!r}: the quantity of a resource cannot be negative.")


def _check_num_returns(n, what: str) -> None:
    if n is None or n in RETURN_MODES:
        return
    if isinstance(n, str) or n < 0:
        raise ValueError(f"{what}: num_returns={n!r}: give None, an int >= 0, 'streaming' (for "
                         "generators) or 'dynamic'.")


def _check_retry(retry, what: str) -> None:
    if isinstance(retry, (list, tuple)) and not all(isinstance(e, type) and issubclass(e, BaseException)
                                                    for e in retry):
        raise ValueError(f"{what}: retry_exceptions takes True/False or a list of exception classes, "
                         f"such as [ValueError], got {retry!r}.")


def _check_strategy(strategy, what: str) -> None:
    if strategy is None or strategy in ("DEFAULT", "SPREAD"):
        return
    if isinstance(strategy, str):
        raise ValueError(f"{what}: scheduling_strategy={strategy!r}: use 'DEFAULT', 'SPREAD' or a "
                         "NodeAffinitySchedulingStrategy.")
    if not hasattr(strategy, "node_id"):
        raise TypeError(f"{what}: scheduling_strategy takes None, 'DEFAULT', 'SPREAD' or a "
                        f"NodeAffinitySchedulingStrategy, got {type(strategy).__name__}.")


def check_method_options(opts: dict) -> None:
    """``@miniray.method(...)``: known keywords and a valid num_returns."""
    bad = sorted(set(opts) - METHOD_OPTIONS)
    if bad:
        raise ValueError(f"Unknown option(s) {bad} for @miniray.method. Valid options are: "
                         f"{sorted(METHOD_OPTIONS)}.")
    n = opts.get("num_returns")
    if n is not None and not isinstance(n, (int, str)):
        raise TypeError(f"@miniray.method: num_returns takes an int or a string, got {type(n).__name__}.")
    _check_num_returns(n, "@miniray.method")
