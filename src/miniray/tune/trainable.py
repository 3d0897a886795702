"""The class API (``tune.Trainable``) and the trainable wrappers ``with_parameters`` / ``with_resources``.

    class MyTrainable(tune.Trainable):
        def setup(self, config): ...            once, in the trial's actor
        def step(self): return {"loss": ...}    one training_iteration
        def save_checkpoint(self, dir): ...     write files into dir (or return a dict)
        def load_checkpoint(self, dir_or_dict): ...

The runner (runner.py) drives any class of this shape, so RLlib's algorithms run unchanged.
``with_parameters(fn, data=big)`` puts ``big`` in the object store once, in the driver; every
trial's actor gets it from there (once per actor).  ``with_resources(fn, {"cpu": 2})`` sets what each
trial's actor asks for.
"""
from __future__ import annotations

import functools
import time

import miniray


class Trainable:
    """Base class for class trainables (see the module docstring)."""

    def __init__(self, config: dict | None = None, logger_creator=None, storage=None, **_):
        self.config = dict(config or {})
        self._iteration = 0
        self._time_total = 0.0
        self._trial_info = None
        self.setup(dict(self.config))

    def _set_trial_info(self, session) -> None:
        self._trial_info = session
        self._iteration = session.iteration

    # -- what subclasses override
    def setup(self, config: dict) -> None:
        pass

    def step(self) -> dict:
        raise NotImplementedError(f"{type(self).__name__}.step() must be written: run one "
                                  "training iteration and return a dict of metrics")

    def save_checkpoint(self, checkpoint_dir: str):
        return None

    def load_checkpoint(self, checkpoint) -> None:
        pass

    def reset_config(self, new_config: dict) -> bool:
        return False

    def cleanup(self) -> None:
        pass

    # -- what Tune calls
    def train(self) -> dict:
        start = time.time()
        result = self.step()
        if not isinstance(result, dict):
            raise TypeError(f"{type(self).__name__}.step() must return a dict, got "
                            f"{type(result).__name__}")
        self._iteration += 1
        elapsed = time.time() - start
        self._time_total += elapsed
        result = dict(result)
        result.setdefault("training_iteration", self._iteration)
        result.setdefault("time_this_iter_s", elapsed)
        result.setdefault("time_total_s", self._time_total)
        return result

    def save(self, checkpoint_dir: str | None = None) -> str:
        import tempfile

        from miniray.tune.runner import save_class_checkpoint

        checkpoint_dir = checkpoint_dir or tempfile.mkdtemp(prefix="checkpoint_")
        save_class_checkpoint(self, checkpoint_dir)
        return checkpoint_dir

    def restore(self, checkpoint_path) -> None:
        from miniray.tune.runner import load_class_checkpoint

        load_class_checkpoint(self, getattr(checkpoint_path, "path", checkpoint_path))

    def stop(self) -> None:
        self.cleanup()

    @property
    def iteration(self) -> int:
        return self._iteration

    training_iteration = iteration

    @property
    def trial_id(self) -> str:
        return self._trial_info.trial_id if self._trial_info else "default"

    @property
    def trial_name(self) -> str:
        return self._trial_info.trial_name if self._trial_info else "default"

    @property
    def logdir(self) -> str:
        return self._trial_info.trial_dir if self._trial_info else ""

    trial_dir = logdir

    @classmethod
    def default_resource_request(cls, config):
        return None


def _fetch_params(refs: dict) -> dict:
    """The with_parameters objects, fetched from the store once per process."""
    cache = _fetch_params.cache
    out = {}
    for name, ref in refs.items():
        key = ref.hex() if hasattr(ref, "hex") else id(ref)
        if key not in cache:
            cache[key] = miniray.get(ref)
        out[name] = cache[key]
    return out


_fetch_params.cache = {}


def with_parameters(trainable, **kwargs):
    """``trainable`` with extra keyword arguments put in the object store once, not once per trial.

    Function trainables are called as ``fn(config, **kwargs)``; class trainables get the values as
    ``setup(config, **kwargs)``."""
    if not callable(trainable):
        raise TypeError(f"with_parameters needs a function or a Trainable class, got {trainable!r}")
    refs = {name: miniray.put(value) for name, value in kwargs.items()}
    if isinstance(trainable, type):
        base = trainable

        class _WithParameters(base):
            _tune_param_refs = refs

            def setup(self, config, **_):
                return base.setup(self, config, **_fetch_params(type(self)._tune_param_refs))

        _WithParameters.__name__ = base.__name__
        _WithParameters.__qualname__ = base.__qualname__
        return _WithParameters

    @functools.wraps(trainable)
    def wrapped(config):
        return trainable(config, **_fetch_params(refs))

    wrapped._tune_param_refs = refs
    wrapped._tune_resources = getattr(trainable, "_tune_resources", None)
    return wrapped


class PlacementGroupFactory:
    """Bundles of resources for one trial, as Ray's: the trial's actor holds the first bundle; the
    others are kept free for the actors and tasks the trial starts (an RLlib algorithm's env
    runners).  Tune counts the sum against the cluster when it decides how many trials run."""

    def __init__(self, bundles: list[dict], strategy: str = "PACK"):
        if not bundles or not all(isinstance(b, dict) for b in bundles):
            raise ValueError("PlacementGroupFactory needs a list of resource dicts, e.g. "
                             "[{'CPU': 1}]")
        self.bundles, self.strategy = [dict(b) for b in bundles], strategy

    @property
    def required_resources(self) -> dict:
        return total_of(self.bundles)

    @property
    def head_bundle_is_empty(self) -> bool:
        return not any(self.bundles[0].values())

    def __eq__(self, other):
        return isinstance(other, PlacementGroupFactory) and other.bundles == self.bundles

    def __repr__(self):
        return f"PlacementGroupFactory({self.bundles!r}, strategy={self.strategy!r})"


def normalize_bundles(resources) -> list[dict]:
    """A dict, a PlacementGroupFactory (ours or Ray's) -> normalized bundles, the trial's first."""
    bundles = getattr(resources, "bundles", None)
    if isinstance(bundles, (list, tuple)) and bundles and all(isinstance(b, dict) for b in bundles):
        first = normalize_resources(bundles[0])
        return [first] + [normalize_resources(b, default_cpu=0) for b in bundles[1:]]
    return [normalize_resources(resources)]


def normalize_resources(resources, default_cpu: float = 1) -> dict:
    """``{"cpu": 2, "gpu": 1, "custom": 1}`` or a PlacementGroupFactory -> ``{"CPU": 2, ...}``."""
    if isinstance(resources, PlacementGroupFactory) or hasattr(resources, "required_resources"):
        resources = dict(resources.required_resources)     # also another library's factory
    elif hasattr(resources, "bundles"):
        resources = PlacementGroupFactory(list(resources.bundles)).required_resources
    if not isinstance(resources, dict):
        raise TypeError("with_resources needs a dict like {'cpu': 2, 'gpu': 0}, a "
                        f"PlacementGroupFactory or a function config -> dict; got {resources!r}")
    out = {}
    for key, value in resources.items():
        name = {"cpu": "CPU", "gpu": "GPU"}.get(key.lower(), key) if isinstance(key, str) else key
        if not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"with_resources: {key}={value!r} must be a number >= 0")
        out[name] = value
    out.setdefault("CPU", default_cpu if not out else 0)
    return out


def with_resources(trainable, resources):
    """``trainable`` whose every trial's actor asks for ``resources`` (a dict, a
    PlacementGroupFactory, or a function ``config -> dict``)."""
    if not callable(resources) or isinstance(resources, (dict, PlacementGroupFactory)):
        normalize_resources(resources)      # bad input fails here, not in the middle of a run
    if isinstance(trainable, type):
        return type(trainable.__name__, (trainable,), {"_tune_resources": resources})

    @functools.wraps(trainable)
    def wrapped(config):
        return trainable(config)

    wrapped._tune_resources = resources
    wrapped._tune_param_refs = getattr(trainable, "_tune_param_refs", None)
    return wrapped


def resources_for(trainable, config: dict) -> list[dict]:
    """The bundles one trial of ``trainable`` with ``config`` asks for (default: ``[{"CPU": 1}]``):
    ``with_resources``, else the class's ``default_resource_request(config)`` (RLlib's algorithms
    ask for the main process plus one bundle per env runner)."""
    spec = getattr(trainable, "_tune_resources", None)
    if spec is None and isinstance(trainable, type) and hasattr(trainable, "default_resource_request"):
        try:
            spec = trainable.default_resource_request(config)
        except Exception:
            spec = None
    if spec is None:
        return [{"CPU": 1}]
    if callable(spec) and not isinstance(spec, (dict, PlacementGroupFactory)):
        spec = spec(config)
    return normalize_bundles(spec)


def total_of(bundles: list[dict]) -> dict:
    """The sum of ``bundles``, key by key."""
    total: dict = {}
    for bundle in bundles:
        for key, value in bundle.items():
            total[key] = total.get(key, 0) + value
    return total
