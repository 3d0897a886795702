from miniray.rllib.algorithms.ppo.ppo import PPO, PPOConfig, ppo_loss

__all__ = ["PPO", "PPOConfig", "ppo_loss"]
