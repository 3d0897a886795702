"""RLlib's algorithms: ``ppo`` (PPOConfig, PPO) and ``pg`` (PGConfig, PG)."""
from miniray.rllib.algorithms.algorithm import Algorithm
from miniray.rllib.algorithms.algorithm_config import AlgorithmConfig

__all__ = ["Algorithm", "AlgorithmConfig"]
