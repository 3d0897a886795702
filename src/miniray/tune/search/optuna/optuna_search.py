"""``OptunaSearch``: each Tune trial is an Optuna trial asked of one study (ask-and-tell).

    suggest(trial_id) ──study.ask(distributions)──► params ──► the trial's config
    on_trial_result   ──ot_trial.report(value, step)            (intermediate values)
    on_trial_complete ──study.tell(ot_trial, value | FAIL)──► the sampler learns

The space is Tune's own (uniform, loguniform, randint, choice, quantised forms), converted to
Optuna distributions; nested dicts travel as "a/b" names.  optuna is imported only here.
"""
from __future__ import annotations

from miniray.tune.search.basic_variant import walk
from miniray.tune.search.sample import Categorical, Domain, Float, Integer, is_grid
from miniray.tune.search.searcher import Searcher


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ImportError("OptunaSearch needs optuna: pip install optuna") from None
    return optuna


def to_distributions(space: dict) -> dict:
    """{"a/b": optuna distribution} for every Domain in a (nested) Tune space."""
    optuna = _optuna()
    dists = optuna.distributions
    out = {}
    for path, leaf in walk(space):
        name = "/".join(map(str, path))
        if is_grid(leaf):
            raise ValueError(f"OptunaSearch cannot take grid_search ({name!r}): use "
                             "tune.choice([...]) for Optuna to pick among the values")
        if isinstance(leaf, Float):
            if leaf.kind == "normal":
                raise ValueError(f"OptunaSearch has no normal distribution ({name!r}): use "
                                 "tune.uniform or tune.loguniform")
            out[name] = dists.FloatDistribution(leaf.lower, leaf.upper,
                                                log=leaf.kind == "loguniform",
                                                step=None if leaf.kind == "loguniform" else leaf.q)
        elif isinstance(leaf, Integer):
            high = leaf.upper if leaf.q is not None else leaf.upper - 1
            out[name] = dists.IntDistribution(leaf.lower, high, log=leaf.kind == "loguniform",
                                              step=1 if leaf.kind == "loguniform" else (leaf.q or 1))
        elif isinstance(leaf, Categorical):
            out[name] = dists.CategoricalDistribution(leaf.categories)
        elif isinstance(leaf, Domain):
            raise ValueError(f"OptunaSearch cannot sample {leaf!r} ({name!r})")
    return out


class OptunaSearch(Searcher):
    def __init__(self, space: dict | None = None, metric: str | None = None,
                 mode: str | None = None, points_to_evaluate: list | None = None, sampler=None,
                 seed: int | None = None, evaluated_rewards: list | None = None, **_):
        super().__init__(metric, mode)
        _optuna()
        self._space = space
        self._points = list(points_to_evaluate or [])
        self._sampler, self._seed = sampler, seed
        self._study = None
        self._live: dict = {}

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        super().set_search_properties(metric, mode, config)
        if self._space is None:
            self._space = config
        return True

    def _setup(self):
        optuna = _optuna()
        if not self._metric or not self._mode:
            raise ValueError("OptunaSearch needs metric= and mode= (here or in tune.TuneConfig)")
        sampler = self._sampler or optuna.samplers.TPESampler(seed=self._seed)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._study = optuna.create_study(sampler=sampler, direction="maximize"
                                          if self._mode == "max" else "minimize")
        self._dists = to_distributions(self._space)
        for point in self._points:
            self._study.enqueue_trial(point)

    def suggest(self, trial_id: str):
        if self._study is None:
            self._setup()
        ot_trial = self._study.ask(fixed_distributions=self._dists)
        self._live[trial_id] = ot_trial
        config: dict = {}
        for name, value in ot_trial.params.items():
            parts = name.split("/")
            node = config
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        ot_trial = self._live.get(trial_id)
        if ot_trial is not None and self._metric in result:
            ot_trial.report(result[self._metric], result.get("training_iteration", 0))

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        ot_trial = self._live.pop(trial_id, None)
        if ot_trial is None:
            return
        optuna = _optuna()
        if error or not result or self._metric not in result:
            self._study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
        else:
            self._study.tell(ot_trial, result[self._metric])

    @property
    def study(self):
        return self._study


__all__ = ["OptunaSearch", "to_distributions"]
