"""``ray.tune.search``: the basic variant generator, the Searcher base class and its wrappers."""
from miniray.tune.search.basic_variant import BasicVariantGenerator
from miniray.tune.search.sample import (Categorical, Domain, Float, Function, Integer, choice,
                                        grid_search, lograndint, loguniform, qlograndint,
                                        qloguniform, qrandint, qrandn, quniform, randint, randn,
                                        sample_from, uniform)
from miniray.tune.search.searcher import ConcurrencyLimiter, SearchAlgorithm, Searcher

__all__ = ["BasicVariantGenerator", "ConcurrencyLimiter", "SearchAlgorithm", "Searcher",
           "Domain", "Float", "Integer", "Categorical", "Function", "choice", "grid_search",
           "lograndint", "loguniform", "qlograndint", "qloguniform", "qrandint", "qrandn",
           "quniform", "randint", "randn", "sample_from", "uniform"]
