"""The default search: every grid point, ``num_samples`` times, random dimensions drawn afresh.

    param_space ──► split into constants, grid axes, random domains, sample_from functions
                    for sample in range(num_samples):
                        for point in product(grid axes):   ──► suggest() hands out one config
                            draw domains, then functions (which see the config as spec.config)

State: a counter (which sample, which grid point) and a random generator; both pickle,
so an experiment restored after a crash goes on with the configs it would have made.  A seed
(``random_state=``, or ``numpy.random.seed`` before the search starts) makes a search repeatable.
"""
from __future__ import annotations

import copy
import itertools
import random
import sys
from typing import Any

from miniray.tune.search.sample import Domain, PyRandom, is_grid
from miniray.tune.search.searcher import FINISHED, SearchAlgorithm


class _Spec(dict):
    """What ``sample_from`` functions get: ``spec.config.lr`` and ``spec["config"]["lr"]``."""

    def __getattr__(self, name):
        try:
            value = self[name]
        except KeyError:
            raise AttributeError(f"the trial config has no key {name!r} (yet): sample_from "
                                 "functions see constants, grid values and drawn values") from None
        return _Spec(value) if isinstance(value, dict) and not isinstance(value, _Spec) else value


def walk(space: Any, path: tuple = ()):
    """Yield ``(path, leaf)`` for every Domain and grid_search in a nested dict/list space."""
    if is_grid(space) or isinstance(space, Domain):
        yield path, space
    elif isinstance(space, dict):
        for key, value in space.items():
            yield from walk(value, path + (key,))
    elif isinstance(space, (list, tuple)):
        for i, value in enumerate(space):
            yield from walk(value, path + (i,))


def set_path(config: Any, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        config = config[key]
    config[path[-1]] = value


def get_path(config: Any, path: tuple) -> Any:
    for key in path:
        config = config[key]
    return config


def _plain(space):
    """A copy of the space where tuples become lists (so leaves can be set in place)."""
    if isinstance(space, dict):
        return {k: _plain(v) for k, v in space.items()}
    if isinstance(space, (list, tuple)):
        return [_plain(v) for v in space]
    return space


def grid_points(space: dict) -> list[dict[tuple, Any]]:
    """Every combination of the grid axes, the first axis changing fastest (as Ray orders them)."""
    axes = [(path, leaf["grid_search"]) for path, leaf in walk(space) if is_grid(leaf)]
    if not axes:
        return [{}]
    combos = itertools.product(*[values for _, values in reversed(axes)])
    return [{path: value for (path, _), value in zip(reversed(axes), combo)} for combo in combos]


def resolve(space: dict, grid_point: dict, rng, preset: dict | None = None) -> dict:
    """One concrete config: constants copied, grid values set, domains drawn, functions last."""
    config = _plain(copy.deepcopy(space)) if not preset else _merge(_plain(copy.deepcopy(space)),
                                                                     copy.deepcopy(preset))
    leaves = list(walk(config))
    for path, leaf in leaves:
        if is_grid(leaf):
            set_path(config, path, grid_point[path])
    functions = []
    for path, leaf in leaves:
        if isinstance(leaf, Domain):
            if leaf.is_function():
                functions.append((path, leaf))
            else:
                set_path(config, path, leaf._draw(rng))
    for _ in range(len(functions) + 1):        # functions may read each other's values
        left = []
        for path, leaf in functions:
            try:
                set_path(config, path, leaf._draw(rng, _Spec(config=_Spec(config))))
            except AttributeError:
                left.append((path, leaf))
        if not left:
            break
        if len(left) == len(functions):
            path, leaf = left[0]
            leaf._draw(rng, _Spec(config=_Spec(config)))   # raise the user's own error
        functions = left
    return config


def _merge(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and not is_grid(base[key]):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


class BasicVariantGenerator(SearchAlgorithm):
    """Grid search times random search: ``num_samples`` passes over the grid."""

    def __init__(self, points_to_evaluate: list[dict] | None = None, max_concurrent: int = 0,
                 random_state=None, constant_grid_search: bool = False):
        self.points_to_evaluate = list(points_to_evaluate or [])
        self.max_concurrent = max_concurrent
        self.random_state = random_state
        self.constant_grid_search = constant_grid_search
        self._space: dict | None = None
        self._num_samples = 1
        self._counter = 0
        self._grid: list = [{}]
        self._rng = None
        self._live: set = set()

    def set_search_properties(self, metric, mode, config, num_samples: int = 1, **_) -> bool:
        self._space = config
        self._num_samples = num_samples
        self._grid = grid_points(config)
        state = self.random_state
        if state is not None and not isinstance(state, int):
            self._rng = state                   # a numpy RandomState or Generator-like
        elif state is not None:
            self._rng = PyRandom(int(state))
        else:   # follow numpy's global seed (as Ray does) when numpy is in use, else random's
            numpy = sys.modules.get("numpy")
            self._rng = PyRandom(int(numpy.random.randint(0, 2**31 - 1)) if numpy
                                 else random.getrandbits(31))
        return True

    @property
    def total_samples(self) -> int | None:
        if self._num_samples < 0:
            return None
        return self._num_samples * len(self._grid)

    def suggest(self, trial_id: str):
        if self.max_concurrent and len(self._live) >= self.max_concurrent:
            return None
        total = self.total_samples
        if total is not None and self._counter >= total:
            return FINISHED
        point = self._grid[self._counter % len(self._grid)]
        sample = self._counter // len(self._grid)
        preset = self.points_to_evaluate[sample] if sample < len(self.points_to_evaluate) else None
        self._counter += 1
        self._live.add(trial_id)
        return resolve(self._space, point, self._rng, preset)

    def on_trial_complete(self, trial_id, result=None, error=False):
        self._live.discard(trial_id)

    def is_finished(self) -> bool:
        total = self.total_samples
        return total is not None and self._counter >= total
