"""``miniray.train``: the names Ray 2.x keeps in ``ray.train`` that Tune trainables use.

RunConfig, CheckpointConfig, FailureConfig, Checkpoint, Result, report, get_checkpoint and
get_context are the very same objects as in ``miniray.tune`` (one implementation, two spellings).
Distributed data-parallel training (``TorchTrainer``, ``ScalingConfig``) is not provided.
"""
from miniray.tune.checkpoint import Checkpoint
from miniray.tune.result_grid import Result
from miniray.tune.run_config import CheckpointConfig, FailureConfig, RunConfig
from miniray.tune.session import get_checkpoint, get_context, report

__all__ = ["Checkpoint", "CheckpointConfig", "FailureConfig", "Result", "RunConfig",
           "get_checkpoint", "get_context", "report"]
