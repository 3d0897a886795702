"""RLlib's algorithms: ``ppo`` (PPOConfig, PPO) and ``pg`` (PGConfig, PG)."""
from miniray.rllib.algorithms.algorithm import Algorithm
from miniray.rllib.algorithms.algorithm_config import AlgorithmConfig
from miniray.rllib.algorithms import pg, ppo  # noqa: E402  (after Algorithm: they subclass it)
from miniray.rllib.algorithms.pg import PG, PGConfig
from miniray.rllib.algorithms.ppo import PPO, PPOConfig

__all__ = ["Algorithm", "AlgorithmConfig", "PPO", "PPOConfig", "PG", "PGConfig", "ppo", "pg"]
