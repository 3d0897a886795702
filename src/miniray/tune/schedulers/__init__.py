"""``ray.tune.schedulers``: when to stop, pause or perturb trials."""
from miniray.tune.schedulers.async_hyperband import ASHAScheduler, AsyncHyperBandScheduler
from miniray.tune.schedulers.hyperband import HyperBandScheduler
from miniray.tune.schedulers.median_stopping_rule import MedianStoppingRule
from miniray.tune.schedulers.pbt import PopulationBasedTraining
from miniray.tune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler

__all__ = ["ASHAScheduler", "AsyncHyperBandScheduler", "FIFOScheduler", "HyperBandScheduler",
           "MedianStoppingRule", "PopulationBasedTraining", "TrialScheduler"]
