"""``ray.tune.search.concurrency_limiter``."""
from miniray.tune.search.searcher import ConcurrencyLimiter

__all__ = ["ConcurrencyLimiter"]
