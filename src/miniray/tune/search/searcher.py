"""What a search algorithm answers: "give me the next config" and "here is how it went".

    controller ──suggest(trial_id)──► SearchAlgorithm ──► config | None (not now) | FINISHED
               ──on_trial_result / on_trial_complete──►  (model-based searchers learn from these)

``SearchAlgorithm`` is the interface the controller drives.  ``Searcher`` is Ray's base class for
model-based searchers (Optuna, or a user's): it knows only the dimensions it samples; the
``SearcherAdapter`` counts ``num_samples`` for it and merges its values into the constants of the
param_space.  ``ConcurrencyLimiter`` caps how many of a searcher's trials are live at once.
"""
from __future__ import annotations

from miniray.tune.tune_config import MetricMode

FINISHED = "FINISHED"


class SearchAlgorithm:
    """The controller's view of any search."""

    FINISHED = FINISHED

    def set_search_properties(self, metric, mode, config, num_samples: int = 1, **spec) -> bool:
        return True

    def suggest(self, trial_id: str):
        raise NotImplementedError

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        pass

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        pass

    def is_finished(self) -> bool:
        return False

    @property
    def total_samples(self) -> int | None:
        return None


class Searcher(MetricMode, SearchAlgorithm):
    """Base class for searchers that propose configs one at a time (``ray.tune.search.Searcher``)."""


class SearcherAdapter(SearchAlgorithm):
    """Runs a ``Searcher`` for ``num_samples`` trials, keeping the space's constants."""

    def __init__(self, searcher: Searcher):
        self.searcher = searcher
        self._num_samples = 1
        self._counter = 0
        self._space: dict = {}
        self._finished = False

    def set_search_properties(self, metric, mode, config, num_samples: int = 1, **spec) -> bool:
        self._space, self._num_samples = config, num_samples
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    @property
    def total_samples(self):
        return self._num_samples if self._num_samples >= 0 else None

    def suggest(self, trial_id):
        if self._finished or (self._num_samples >= 0 and self._counter >= self._num_samples):
            return FINISHED
        suggestion = self.searcher.suggest(trial_id)
        if suggestion == FINISHED:
            self._finished = True
            return FINISHED
        if suggestion is None:
            return None
        self._counter += 1
        from miniray.tune.search.basic_variant import _merge, resolve
        from miniray.tune.search.sample import PyRandom

        base = resolve(_constants(self._space), {}, PyRandom(self._counter))
        return _merge(base, suggestion)

    def on_trial_result(self, trial_id, result):
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.searcher.on_trial_complete(trial_id, result=result, error=error)

    def is_finished(self):
        return self._finished or (self._num_samples >= 0 and self._counter >= self._num_samples)


def _constants(space):
    from miniray.tune.search.sample import Domain, is_grid

    if isinstance(space, dict) and not is_grid(space):
        return {k: _constants(v) for k, v in space.items()
                if not (isinstance(v, Domain) or is_grid(v))}
    return space


class ConcurrencyLimiter(Searcher):
    """At most ``max_concurrent`` of the wrapped searcher's trials run at once."""

    def __init__(self, searcher: Searcher, max_concurrent: int, batch: bool = False):
        if not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise ValueError(f"ConcurrencyLimiter(max_concurrent={max_concurrent!r}): give a "
                             "positive whole number of trials")
        super().__init__(getattr(searcher, "metric", None), getattr(searcher, "mode", None))
        self.searcher, self.max_concurrent, self.batch = searcher, max_concurrent, batch
        self.live: set[str] = set()
        self._waiting: set[str] = set()

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        super().set_search_properties(metric, mode, config)
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id):
        if len(self.live) >= self.max_concurrent or (self.batch and self._waiting):
            return None
        suggestion = self.searcher.suggest(trial_id)
        if isinstance(suggestion, dict):
            self.live.add(trial_id)
            if self.batch and len(self.live) >= self.max_concurrent:
                self._waiting = set(self.live)
        return suggestion

    def on_trial_result(self, trial_id, result):
        if trial_id in self.live:
            self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id, result=None, error=False):
        if trial_id in self.live:
            self.live.discard(trial_id)
            self._waiting.discard(trial_id)
            self.searcher.on_trial_complete(trial_id, result=result, error=error)
