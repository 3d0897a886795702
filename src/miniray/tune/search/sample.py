"""Search-space primitives, as ``ray.tune.search.sample`` names them.

    {"lr": tune.loguniform(1e-4, 1e-1), "layers": tune.grid_search([1, 2]),
     "wd": tune.sample_from(lambda spec: spec.config.lr / 10)}

A Domain draws values with ``sample(spec=None, size=1, random_state=None)``; the search algorithms
call ``_draw(rng, spec)`` with a ``numpy.random.RandomState`` they own, so a seed makes a whole
search reproducible.  ``grid_search(values)`` is a plain dict ``{"grid_search": [...]}``, as in Ray.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence


class PyRandom:
    """numpy's RandomState calls (uniform, normal, randint with an exclusive top) on Python's
    ``random.Random``: drawing a config should not cost a numpy import."""

    def __init__(self, seed=None):
        import random

        self.rng = seed if isinstance(seed, random.Random) else random.Random(seed)

    def uniform(self, a, b):
        return self.rng.uniform(a, b)

    def normal(self, mean, sd):
        return self.rng.gauss(mean, sd)

    def randint(self, a, b=None):
        return self.rng.randrange(a) if b is None else self.rng.randrange(a, b)

    def random(self):
        return self.rng.random()

    def choice(self, seq):
        return self.rng.choice(seq)


def _rng(random_state):
    if random_state is None:
        import sys

        numpy = sys.modules.get("numpy")
        return numpy.random.mtrand._rand if numpy else PyRandom()
    if isinstance(random_state, int):
        return PyRandom(random_state)
    return random_state


class Domain:
    """One dimension of a search space."""

    def _draw(self, rng, spec=None):
        raise NotImplementedError

    def sample(self, spec=None, size: int = 1, random_state=None):
        rng = _rng(random_state)
        values = [self._draw(rng, spec) for _ in range(size)]
        return values[0] if size == 1 else values

    def is_grid(self) -> bool:
        return False

    def is_function(self) -> bool:
        return False


def _quantize(value: float, q):
    if q is None:
        return value
    return round(value / q) * q


class Float(Domain):
    def __init__(self, lower: float, upper: float, kind: str = "uniform", q=None, base: float = 10,
                 mean: float = 0.0, sd: float = 1.0):
        if kind != "normal":
            if lower is None or upper is None or not lower < upper:
                raise ValueError(f"tune.{kind}({lower}, {upper}): the lower bound must be below "
                                 "the upper bound")
            if kind == "loguniform" and lower <= 0:
                raise ValueError(f"tune.loguniform({lower}, {upper}): both bounds must be > 0 "
                                 "(use tune.uniform for ranges that reach 0)")
        self.lower, self.upper, self.kind, self.q, self.base = lower, upper, kind, q, base
        self.mean, self.sd = mean, sd

    def _draw(self, rng, spec=None):
        if self.kind == "uniform":
            value = rng.uniform(self.lower, self.upper)
        elif self.kind == "loguniform":
            lo, hi = math.log(self.lower, self.base), math.log(self.upper, self.base)
            value = self.base ** rng.uniform(lo, hi)
        else:
            value = rng.normal(self.mean, self.sd)
        value = _quantize(float(value), self.q)
        if self.q is not None and self.kind != "normal":
            value = min(max(value, self.lower), self.upper)
        return float(value)

    def __repr__(self):
        if self.kind == "normal":
            return f"randn({self.mean}, {self.sd})"
        return f"{'q' if self.q else ''}{self.kind}({self.lower}, {self.upper})"


class Integer(Domain):
    """Integers in [lower, upper) (``randint``, ``lograndint``) or [lower, upper] (the q forms)."""

    def __init__(self, lower: int, upper: int, kind: str = "uniform", q=None, base: float = 10):
        if not lower < upper:
            raise ValueError(f"tune.randint({lower}, {upper}): the lower bound must be below the "
                             "upper bound (the upper bound is excluded)")
        if kind == "loguniform" and lower <= 0:
            raise ValueError(f"tune.lograndint({lower}, {upper}): both bounds must be > 0")
        self.lower, self.upper, self.kind, self.q, self.base = int(lower), int(upper), kind, q, base

    def _draw(self, rng, spec=None):
        if self.kind == "loguniform":
            lo, hi = math.log(self.lower, self.base), math.log(self.upper, self.base)
            value = int(self.base ** rng.uniform(lo, hi))
            value = min(max(value, self.lower), self.upper - (0 if self.q else 1))
        elif self.q is not None:
            value = int(rng.randint(self.lower, self.upper + 1))
        else:
            value = int(rng.randint(self.lower, self.upper))
        if self.q is not None:
            value = int(min(max(_quantize(value, self.q), self.lower), self.upper))
        return value

    def __repr__(self):
        return f"{'q' if self.q else ''}{'log' if self.kind == 'loguniform' else ''}randint(" \
               f"{self.lower}, {self.upper})"


class Categorical(Domain):
    def __init__(self, categories: Sequence):
        categories = list(categories)
        if not categories:
            raise ValueError("tune.choice([]) needs at least one value to choose from")
        self.categories = categories

    def _draw(self, rng, spec=None):
        return self.categories[int(rng.randint(len(self.categories)))]

    def __repr__(self):
        return f"choice({self.categories!r})"


class Function(Domain):
    """``sample_from(fn)``: ``fn(spec)`` sees the rest of the trial's config as ``spec.config``."""

    def __init__(self, func: Callable):
        if not callable(func):
            raise TypeError(f"tune.sample_from needs a function spec -> value, got {func!r}")
        self.func = func

    def is_function(self) -> bool:
        return True

    def _draw(self, rng, spec=None):
        try:
            return self.func(spec)
        except TypeError:
            import inspect

            if not inspect.signature(self.func).parameters:
                return self.func()
            raise

    def __repr__(self):
        return f"sample_from({getattr(self.func, '__name__', self.func)!r})"


def uniform(lower: float, upper: float) -> Float:
    return Float(lower, upper)


def quniform(lower: float, upper: float, q: float) -> Float:
    return Float(lower, upper, q=q)


def loguniform(lower: float, upper: float, base: float = 10) -> Float:
    return Float(lower, upper, "loguniform", base=base)


def qloguniform(lower: float, upper: float, q: float, base: float = 10) -> Float:
    return Float(lower, upper, "loguniform", q=q, base=base)


def randn(mean: float = 0.0, sd: float = 1.0) -> Float:
    return Float(None, None, "normal", mean=mean, sd=sd)


def qrandn(mean: float, sd: float, q: float) -> Float:
    return Float(None, None, "normal", q=q, mean=mean, sd=sd)


def randint(lower: int, upper: int) -> Integer:
    return Integer(lower, upper)


def qrandint(lower: int, upper: int, q: int = 1) -> Integer:
    return Integer(lower, upper, q=q)


def lograndint(lower: int, upper: int, base: float = 10) -> Integer:
    return Integer(lower, upper, "loguniform", base=base)


def qlograndint(lower: int, upper: int, q: int, base: float = 10) -> Integer:
    return Integer(lower, upper, "loguniform", q=q, base=base)


def choice(categories: Sequence) -> Categorical:
    return Categorical(categories)


def sample_from(func: Callable) -> Function:
    return Function(func)


def grid_search(values: Sequence) -> dict[str, list]:
    """Try every value: each grid point multiplies the number of trials."""
    values = list(values)
    if not values:
        raise ValueError("tune.grid_search([]) needs at least one value")
    return {"grid_search": values}


def is_grid(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "grid_search" in value
