"""Nested results, as Ray Tune reads them: ``{"env_runners": {"episode_return_mean": 9.0}}`` is
known by the key ``"env_runners/episode_return_mean"`` to ``RunConfig(stop=...)``, ``TuneConfig(
metric=...)``, schedulers, searchers, ``get_best_result``, checkpoint scores and the dataframes.

A trial's ``Result.metrics`` (and what a ``Stopper`` or a ``Callback`` sees) stays nested.
"""
from __future__ import annotations


def flatten_dict(d: dict, delimiter: str = "/", prevent_delimiter: bool = False) -> dict:
    """``{"a": {"b": 1}, "c": 2}`` -> ``{"a/b": 1, "c": 2}`` (a copy; empty dicts are kept)."""
    out: dict = {}
    for key, value in d.items():
        if prevent_delimiter and delimiter in str(key):
            raise ValueError(f"Found delimiter {delimiter!r} in key {key!r}: rename the key")
        if isinstance(value, dict) and value:
            for sub, inner in flatten_dict(value, delimiter, prevent_delimiter).items():
                out[f"{key}{delimiter}{sub}"] = inner
        else:
            out[key] = value
    return out


def flat(result: dict) -> dict:
    """``result`` itself when nothing in it is nested (the common, fast case), else flattened."""
    for value in result.values():
        if isinstance(value, dict):
            return flatten_dict(result)
    return result


def flat_metrics(result: dict) -> dict:
    """A report's metrics flattened, leaving its ``config`` out (dataframes add ``config/...``)."""
    return flat({k: v for k, v in result.items() if k != "config"})
