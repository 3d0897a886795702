"""Names for trainables and environments, as ``ray.tune.registry`` has them.

    register_trainable("my_fn", fn)      Tuner("my_fn", ...) finds it
    register_env("corridor", creator)    PPOConfig().environment("corridor") finds it

State: two dicts in the process that registered the names.  Trials and env runners live in other
processes, so whoever starts them takes a ``snapshot()`` here and calls ``install(snapshot)`` there
(both are plain dicts of cloudpickled-by-value callables).  String trainables that nobody registered
are looked up among miniray.rllib's algorithms ("PPO", "PG"), imported only then.
"""
from __future__ import annotations

_TRAINABLES: dict[str, object] = {}
_ENVS: dict[str, object] = {}


def _check(verb: str, name, value, wanted: str) -> None:
    if not isinstance(name, str) or not name:
        raise TypeError(f"{verb} needs a non-empty string name, got {name!r}")
    if not callable(value):
        raise TypeError(f"{verb}({name!r}, ...) needs {wanted}, got {type(value).__name__}")


def register_trainable(name: str, trainable) -> None:
    """Make ``trainable`` (a function or a Trainable class) known to Tune by ``name``."""
    _check("register_trainable", name, trainable, "a function or a class")
    _TRAINABLES[name] = trainable


def register_env(name: str, env_creator) -> None:
    """Make ``env_creator(env_config) -> env`` known by ``name`` to RLlib's ``.environment(name)``."""
    _check("register_env", name, env_creator, "a function env_config -> env")
    _ENVS[name] = env_creator


def get_env_creator(name: str):
    """The creator registered under ``name``, or None (then it may be a gymnasium id)."""
    return _ENVS.get(name)


def get_trainable_cls(name: str):
    """The trainable registered under ``name``, else an RLlib algorithm class of that name."""
    if name in _TRAINABLES:
        return _TRAINABLES[name]
    try:
        from miniray.rllib.algorithms.registry import get_algorithm_class
    except ImportError:
        get_algorithm_class = None
    if get_algorithm_class is not None:
        cls = get_algorithm_class(name)
        if cls is not None:
            return cls
    known = sorted(_TRAINABLES) + ["PPO", "PG"]
    raise ValueError(f"Unknown trainable {name!r}: register it first with "
                     f"miniray.tune.register_trainable({name!r}, fn). Known: {known}")


def snapshot() -> dict:
    """Both registries as plain dicts, to send to the process that runs a trial or an env."""
    return {"trainables": dict(_TRAINABLES), "envs": dict(_ENVS)}


def install(snap: dict) -> None:
    """Register what ``snapshot()`` took in another process (names already here are kept)."""
    for name, fn in snap.get("trainables", {}).items():
        _TRAINABLES.setdefault(name, fn)
    for name, fn in snap.get("envs", {}).items():
        _ENVS.setdefault(name, fn)
