"""Environments: ``EnvContext`` (what a creator receives) and the ``EnvRunner`` actors."""
from miniray.rllib.env.env_context import EnvContext

__all__ = ["EnvContext"]
